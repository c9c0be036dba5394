/// A restricted pickle reader: it understands every opcode plain data needs (protocols 0–5) and
/// calls nothing. Globals resolve only against `AllowedGlobal.table`; anything else stops the
/// read at the opcode that names it.
public enum Unpickler {
    /// The qualified global names a pickle may mention.
    public static var allowedGlobals: [String] { AllowedGlobal.allowedNames }

    /// Unpickles plain data (no tensors: a persistent id is an error).
    /// - Parameters:
    ///   - file: the file named in errors; `entry` says where in it the pickle is.
    public static func unpickle(_ bytes: [UInt8], file: String, entry: String = "pickle") throws -> PickleValue {
        try bytes.withUnsafeBytes { try unpickle($0, file: file, entry: entry, persistentLoad: nil) }
    }

    static func unpickle(
        _ bytes: UnsafeRawBufferPointer, file: String, entry: String,
        persistentLoad: ((PickleItem) throws -> PickleItem)?
    ) throws -> PickleValue {
        let machine = PickleMachine(bytes: bytes, file: file, entry: entry, persistentLoad: persistentLoad)
        defer { machine.tearDown() }
        let result = try machine.run()
        return try machine.finish(result)
    }
}

/// The pickle virtual machine (one use).
final class PickleMachine {
    let bytes: UnsafeRawBufferPointer
    let file: String
    let entry: String
    let persistentLoad: ((PickleItem) throws -> PickleItem)?

    var position = 0
    /// Offset of the opcode being executed (for messages).
    var opStart = 0
    var stack: [PickleItem] = []
    var metastack: [[PickleItem]] = []
    var memo: [Int: PickleItem] = [:]
    /// Every container made, so `tearDown` can release them without deep recursion.
    var boxes: [PickleBox] = []

    static let maxMarkDepth = 10_000
    /// Deepest container nesting accepted in the finished tree.
    static let maxDepth = 200
    /// Most values the finished tree may expand to (shared references counted at each use).
    static let maxExpandedValues = 20_000_000

    init(bytes: UnsafeRawBufferPointer, file: String, entry: String, persistentLoad: ((PickleItem) throws -> PickleItem)?) {
        self.bytes = bytes
        self.file = file
        self.entry = entry
        self.persistentLoad = persistentLoad
    }

    /// Empties every container so releasing them never recurses through a deep chain.
    func tearDown() {
        stack = []
        metastack = []
        memo = [:]
        for box in boxes {
            box.items = []
            box.keys = []
            box.index = [:]
        }
        boxes = []
    }

    func malformed(_ message: String) -> FormatError {
        FormatError(.malformed, file: file, "\(entry) byte \(opStart): \(message)")
    }

    func makeBox(_ kind: PickleBox.Kind, items: [PickleItem] = []) -> PickleBox {
        let box = PickleBox(kind, items: items)
        boxes.append(box)
        return box
    }

    // MARK: Reading

    private func need(_ count: Int) throws {
        guard count >= 0, count <= bytes.count - position else {
            throw malformed("\(opcodeName(bytes[opStart])) needs \(count) more bytes but the pickle ends (truncated?)")
        }
    }

    private func readByte() throws -> UInt8 {
        try need(1)
        defer { position += 1 }
        return bytes[position]
    }

    private func readLE<T: FixedWidthInteger>(_: T.Type) throws -> T {
        try need(MemoryLayout<T>.size)
        defer { position += MemoryLayout<T>.size }
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: T.self))
    }

    private func readBytes(_ count: Int) throws -> UnsafeRawBufferPointer {
        try need(count)
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)])
    }

    private func readLength64() throws -> Int {
        let n = try readLE(UInt64.self)
        guard n <= UInt64(bytes.count - position) else {
            throw malformed("\(opcodeName(bytes[opStart])) declares \(n) bytes but only \(bytes.count - position) remain (truncated or corrupted)")
        }
        return Int(n)
    }

    /// A protocol-0 argument: bytes up to (not including) the next newline.
    private func readLine() throws -> Substring {
        var end = position
        while end < bytes.count, bytes[end] != 0x0A { end += 1 }
        guard end < bytes.count else {
            throw malformed("\(opcodeName(bytes[opStart])) argument has no terminating newline (truncated?)")
        }
        let line = UnsafeRawBufferPointer(rebasing: bytes[position..<end])
        position = end + 1
        return Substring(PickleMachine.latin1(line))
    }

    private func utf8(_ raw: UnsafeRawBufferPointer) throws -> String {
        guard let s = String(validating: raw, as: UTF8.self) else {
            throw malformed("string is not valid UTF-8")
        }
        return s
    }

    static func latin1<S: Sequence>(_ raw: S) -> String where S.Element == UInt8 {
        var scalars = String.UnicodeScalarView()
        for b in raw { scalars.append(Unicode.Scalar(b)) }
        return String(scalars)
    }

    // MARK: Stack

    func push(_ item: PickleItem) { stack.append(item) }

    func pop() throws -> PickleItem {
        guard let item = stack.popLast() else {
            throw malformed("\(opcodeName(bytes[opStart])) needs a value but the stack is empty (or only a MARK)")
        }
        return item
    }

    private func popMark() throws -> [PickleItem] {
        guard let below = metastack.popLast() else {
            throw malformed("\(opcodeName(bytes[opStart])) needs a MARK but there is none")
        }
        let items = stack
        stack = below
        return items
    }

    private func top(_ kinds: PickleBox.Kind...) throws -> PickleBox {
        guard let last = stack.last else {
            throw malformed("\(opcodeName(bytes[opStart])) needs a container but the stack is empty")
        }
        guard case let .box(box) = last, kinds.contains(box.kind) else {
            throw malformed("\(opcodeName(bytes[opStart])) applies to a \(kinds.map(\.rawValue).joined(separator: "/")), found \(last.kindName)")
        }
        return box
    }

    private func memoGet(_ index: Int) throws -> PickleItem {
        guard let item = memo[index] else {
            throw malformed("memo slot \(index) is read before anything was stored in it")
        }
        return item
    }

    private func memoPut(_ index: Int) throws {
        guard let last = stack.last else {
            throw malformed("\(opcodeName(bytes[opStart])) with an empty stack")
        }
        guard index >= 0 else { throw malformed("negative memo index \(index)") }
        memo[index] = last
    }

    private func persistent(_ pid: PickleItem) throws -> PickleItem {
        guard let persistentLoad else {
            throw malformed("persistent id (a reference to data outside the pickle) where none can be resolved")
        }
        return try persistentLoad(pid)
    }

    // MARK: The loop

    func run() throws -> PickleItem {
        while true {
            guard position < bytes.count else {
                throw malformed("the pickle ends without a STOP opcode (truncated?)")
            }
            opStart = position
            let op = bytes[position]
            position += 1
            switch op {
            case 0x80:  // PROTO
                let version = try readByte()
                guard version <= 5 else {
                    throw FormatError(.unsupported, file: file, "\(entry) byte \(opStart): pickle protocol \(version) is newer than 5, the highest this reader knows")
                }
            case 0x95:  // FRAME (advisory framing)
                _ = try readLength64()
            case 0x2E:  // STOP
                return try pop()
            case 0x28:  // MARK
                guard metastack.count < PickleMachine.maxMarkDepth else {
                    throw malformed("MARKs nested deeper than \(PickleMachine.maxMarkDepth)")
                }
                metastack.append(stack)
                stack = []
            case 0x30:  // POP
                if stack.isEmpty { _ = try popMark() } else { stack.removeLast() }
            case 0x31: _ = try popMark()  // POP_MARK
            case 0x32:  // DUP
                guard let last = stack.last else { throw malformed("DUP on an empty stack") }
                push(last)
            case 0x4E: push(.value(.none))
            case 0x88: push(.value(.bool(true)))
            case 0x89: push(.value(.bool(false)))
            case 0x49:  // INT
                let line = try readLine()
                if line == "00" { push(.value(.bool(false))) }
                else if line == "01" { push(.value(.bool(true))) }
                else if let v = PickleValue.integer(decimal: line) { push(.value(v)) }
                else { throw malformed("INT argument '\(line.prefix(40))' is not an integer") }
            case 0x4C:  // LONG
                let line = try readLine()
                guard let v = PickleValue.integer(decimal: line) else {
                    throw malformed("LONG argument '\(line.prefix(40))' is not an integer")
                }
                push(.value(v))
            case 0x4A: push(.value(.int(Int(try readLE(Int32.self)))))  // BININT
            case 0x4B: push(.value(.int(Int(try readByte()))))  // BININT1
            case 0x4D: push(.value(.int(Int(try readLE(UInt16.self)))))  // BININT2
            case 0x8A, 0x8B:  // LONG1, LONG4
                let n = op == 0x8A ? Int(try readByte()) : Int(try readLE(Int32.self))
                guard n >= 0 else { throw malformed("LONG4 with negative length \(n)") }
                guard n <= 4096 else { throw malformed("integer of \(n) bytes is larger than any checkpoint needs") }
                push(.value(PickleValue.integer(littleEndian: Array(try readBytes(n)))))
            case 0x46:  // FLOAT
                let line = try readLine()
                guard let d = Double(line) else { throw malformed("FLOAT argument '\(line.prefix(40))' is not a number") }
                push(.value(.float(d)))
            case 0x47:  // BINFLOAT (big-endian)
                push(.value(.float(Double(bitPattern: UInt64(bigEndian: try readLE(UInt64.self))))))
            case 0x53:  // STRING
                push(.value(.string(PickleMachine.latin1(try escapeDecode(try readLine())))))
            case 0x54, 0x55:  // BINSTRING, SHORT_BINSTRING (Python 2 str, read as latin-1)
                let n = op == 0x55 ? Int(try readByte()) : Int(try readLE(Int32.self))
                guard n >= 0 else { throw malformed("BINSTRING with negative length \(n)") }
                push(.value(.string(PickleMachine.latin1(try readBytes(n)))))
            case 0x56:  // UNICODE (raw-unicode-escape)
                push(.value(.string(try rawUnicodeDecode(try readLine()))))
            case 0x58: push(.value(.string(try utf8(try readBytes(Int(try readLE(UInt32.self)))))))  // BINUNICODE
            case 0x8C: push(.value(.string(try utf8(try readBytes(Int(try readByte()))))))  // SHORT_BINUNICODE
            case 0x8D: push(.value(.string(try utf8(try readBytes(try readLength64())))))  // BINUNICODE8
            case 0x42: push(.value(.bytes(Array(try readBytes(Int(try readLE(UInt32.self)))))))  // BINBYTES
            case 0x43: push(.value(.bytes(Array(try readBytes(Int(try readByte()))))))  // SHORT_BINBYTES
            case 0x8E, 0x96: push(.value(.bytes(Array(try readBytes(try readLength64())))))  // BINBYTES8, BYTEARRAY8
            case 0x97, 0x98:
                throw FormatError(.unsupported, file: file, "\(entry) byte \(opStart): out-of-band pickle buffers (protocol 5) are not supported")
            case 0x29: push(.box(makeBox(.tuple)))  // EMPTY_TUPLE
            case 0x74: push(.box(makeBox(.tuple, items: try popMark())))  // TUPLE
            case 0x85, 0x86, 0x87:  // TUPLE1-3
                let n = Int(op - 0x84)
                guard stack.count >= n else { throw malformed("\(opcodeName(op)) needs \(n) values, the stack holds \(stack.count)") }
                let items = Array(stack.suffix(n))
                stack.removeLast(n)
                push(.box(makeBox(.tuple, items: items)))
            case 0x5D: push(.box(makeBox(.list)))  // EMPTY_LIST
            case 0x6C: push(.box(makeBox(.list, items: try popMark())))  // LIST
            case 0x7D: push(.box(makeBox(.dict)))  // EMPTY_DICT
            case 0x64:  // DICT
                let items = try popMark()
                guard items.count % 2 == 0 else { throw malformed("DICT with an odd number of items (\(items.count))") }
                let dict = makeBox(.dict)
                for i in stride(from: 0, to: items.count, by: 2) { try setItem(dict, items[i], items[i + 1]) }
                push(.box(dict))
            case 0x8F: push(.box(makeBox(.set)))  // EMPTY_SET
            case 0x90:  // ADDITEMS
                let items = try popMark()
                let set = try top(.set)
                for item in items { try addToSet(set, item) }
            case 0x91:  // FROZENSET
                let items = try popMark()
                let set = makeBox(.frozenset)
                for item in items { try addToSet(set, item) }
                push(.box(set))
            case 0x61:  // APPEND
                let value = try pop()
                try top(.list).items.append(value)
            case 0x65:  // APPENDS
                let items = try popMark()
                try top(.list).items.append(contentsOf: items)
            case 0x73:  // SETITEM
                let value = try pop()
                let k = try pop()
                try setItem(try top(.dict), k, value)
            case 0x75:  // SETITEMS
                let items = try popMark()
                guard items.count % 2 == 0 else { throw malformed("SETITEMS with an odd number of items (\(items.count))") }
                let dict = try top(.dict)
                for i in stride(from: 0, to: items.count, by: 2) { try setItem(dict, items[i], items[i + 1]) }
            case 0x70:  // PUT
                let line = try readLine()
                guard let i = Int(line) else { throw malformed("PUT argument '\(line.prefix(40))' is not an integer") }
                try memoPut(i)
            case 0x71: try memoPut(Int(try readByte()))  // BINPUT
            case 0x72: try memoPut(Int(try readLE(UInt32.self)))  // LONG_BINPUT
            case 0x94: try memoPut(memo.count)  // MEMOIZE
            case 0x67:  // GET
                let line = try readLine()
                guard let i = Int(line) else { throw malformed("GET argument '\(line.prefix(40))' is not an integer") }
                push(try memoGet(i))
            case 0x68: push(try memoGet(Int(try readByte())))  // BINGET
            case 0x6A: push(try memoGet(Int(try readLE(UInt32.self))))  // LONG_BINGET
            case 0x63:  // GLOBAL
                let module = String(try readLine())
                let name = String(try readLine())
                push(try resolveGlobal(module: module, name: name))
            case 0x93:  // STACK_GLOBAL
                let name = try pop()
                let module = try pop()
                guard let n = name.string, let m = module.string else {
                    throw malformed("STACK_GLOBAL needs two strings, found \(module.kindName) and \(name.kindName)")
                }
                push(try resolveGlobal(module: m, name: n))
            case 0x69:  // INST
                let module = String(try readLine())
                let name = String(try readLine())
                let cls = try resolveGlobal(module: module, name: name)
                push(try call(cls, try popMark()))
            case 0x6F:  // OBJ
                var items = try popMark()
                guard !items.isEmpty else { throw malformed("OBJ without a class") }
                let cls = items.removeFirst()
                push(try call(cls, items))
            case 0x52:  // REDUCE
                let args = try pop()
                let callable = try pop()
                guard case let .box(b) = args, b.kind == .tuple else {
                    throw malformed("REDUCE arguments must be a tuple, found \(args.kindName)")
                }
                push(try call(callable, b.items))
            case 0x81, 0x92:  // NEWOBJ, NEWOBJ_EX
                if op == 0x92 {
                    let kwargs = try pop()
                    guard case let .box(k) = kwargs, k.kind == .dict, k.items.isEmpty else {
                        throw malformed("NEWOBJ_EX with keyword arguments is not supported")
                    }
                }
                let args = try pop()
                let cls = try pop()
                guard case let .box(b) = args, b.kind == .tuple else {
                    throw malformed("NEWOBJ arguments must be a tuple, found \(args.kindName)")
                }
                push(try newObject(cls, b.items))
            case 0x62:  // BUILD: attribute state on a dict or tensor is accepted and dropped
                let state = try pop()
                guard let target = stack.last else { throw malformed("BUILD with nothing to build") }
                switch target {
                case .box(let b) where b.kind == .dict: break
                case .tensor: break
                default: throw malformed("BUILD on a \(target.kindName), which this reader does not reconstruct")
                }
                switch state {
                case .value(.none): break
                case .box(let s) where s.kind == .dict || s.kind == .tuple: break
                default: throw malformed("BUILD state must be a dict, found \(state.kindName)")
                }
            case 0x50:  // PERSID
                push(try persistent(.value(.string(String(try readLine())))))
            case 0x51:  // BINPERSID
                push(try persistent(try pop()))
            case 0x82, 0x83, 0x84:  // EXT1/2/4
                throw FormatError(
                    .unsafe, file: file,
                    "\(entry) byte \(opStart): pickle uses the copyreg extension registry (\(opcodeName(op))), which can name any global; refused")
            default:
                throw malformed("unknown pickle opcode 0x\(String(op, radix: 16)); the pickle is corrupted or not a pickle")
            }
        }
    }
}
