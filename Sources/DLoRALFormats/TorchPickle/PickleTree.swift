/// Turning the machine's boxes into a `PickleValue` tree (with tensor bounds checks), and the
/// protocol-0 text decoders.
extension PickleMachine {
    /// Converts the STOP value: rejects cycles and excessive depth, checks that every tensor's
    /// elements lie inside its storage (naming the tensor by its key path), and limits how far
    /// shared references may multiply the tree.
    func finish(_ root: PickleItem) throws -> PickleValue {
        var converter = TreeConverter(machine: self)
        return try converter.convert(root, path: [], depth: 0).value
    }

    /// Python `codecs.escape_decode` of a quoted protocol-0 STRING argument.
    func escapeDecode(_ line: Substring) throws -> [UInt8] {
        let raw = Array(line.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) })
        guard raw.count >= 2, raw.first == raw.last, raw.first == UInt8(ascii: "'") || raw.first == UInt8(ascii: "\"") else {
            throw malformed("STRING argument must be quoted")
        }
        let body = raw[1..<(raw.count - 1)]
        var out: [UInt8] = []
        var i = body.startIndex
        while i < body.endIndex {
            let c = body[i]
            i += 1
            guard c == UInt8(ascii: "\\"), i < body.endIndex else {
                out.append(c)
                continue
            }
            let e = body[i]
            i += 1
            switch e {
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "a"): out.append(0x07)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "v"): out.append(0x0B)
            case UInt8(ascii: "\n"): break
            case UInt8(ascii: "x"):
                guard i + 2 <= body.endIndex, let v = UInt8(PickleMachine.latin1(body[i..<(i + 2)]), radix: 16) else {
                    throw malformed("invalid \\x escape in STRING")
                }
                out.append(v)
                i += 2
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                var v = Int(e - UInt8(ascii: "0"))
                var digits = 1
                while digits < 3, i < body.endIndex, (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(body[i]) {
                    v = v * 8 + Int(body[i] - UInt8(ascii: "0"))
                    i += 1
                    digits += 1
                }
                out.append(UInt8(truncatingIfNeeded: v))
            default:
                if e == UInt8(ascii: "\\") || e == UInt8(ascii: "'") || e == UInt8(ascii: "\"") {
                    out.append(e)
                } else {
                    out.append(UInt8(ascii: "\\"))
                    out.append(e)
                }
            }
        }
        return out
    }

    /// Python's raw-unicode-escape decoding (protocol-0 UNICODE): latin-1 text in which an odd
    /// run of backslashes before `u`/`U` starts a hex escape.
    func rawUnicodeDecode(_ line: Substring) throws -> String {
        let raw = Array(line.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) })
        var scalars = String.UnicodeScalarView()
        var i = 0
        while i < raw.count {
            if raw[i] == UInt8(ascii: "\\") {
                var run = 0
                while i + run < raw.count, raw[i + run] == UInt8(ascii: "\\") { run += 1 }
                let after = i + run
                if run % 2 == 1, after < raw.count, raw[after] == UInt8(ascii: "u") || raw[after] == UInt8(ascii: "U") {
                    for _ in 0..<(run - 1) { scalars.append("\\") }
                    let width = raw[after] == UInt8(ascii: "u") ? 4 : 8
                    guard after + 1 + width <= raw.count,
                        let code = UInt32(PickleMachine.latin1(raw[(after + 1)..<(after + 1 + width)]), radix: 16),
                        let scalar = Unicode.Scalar(code)
                    else { throw malformed("invalid \\u escape in UNICODE") }
                    scalars.append(scalar)
                    i = after + 1 + width
                } else {
                    for _ in 0..<run { scalars.append("\\") }
                    i = after
                }
                continue
            }
            scalars.append(Unicode.Scalar(raw[i]))
            i += 1
        }
        return String(scalars)
    }

    func opcodeName(_ op: UInt8) -> String {
        let names: [UInt8: String] = [
            0x28: "MARK", 0x2E: "STOP", 0x30: "POP", 0x31: "POP_MARK", 0x32: "DUP", 0x46: "FLOAT",
            0x49: "INT", 0x4A: "BININT", 0x4B: "BININT1", 0x4C: "LONG", 0x4D: "BININT2", 0x4E: "NONE",
            0x50: "PERSID", 0x51: "BINPERSID", 0x52: "REDUCE", 0x53: "STRING", 0x54: "BINSTRING",
            0x55: "SHORT_BINSTRING", 0x56: "UNICODE", 0x58: "BINUNICODE", 0x61: "APPEND", 0x62: "BUILD",
            0x63: "GLOBAL", 0x64: "DICT", 0x7D: "EMPTY_DICT", 0x65: "APPENDS", 0x67: "GET", 0x68: "BINGET",
            0x69: "INST", 0x6A: "LONG_BINGET", 0x6C: "LIST", 0x5D: "EMPTY_LIST", 0x6F: "OBJ", 0x70: "PUT",
            0x71: "BINPUT", 0x72: "LONG_BINPUT", 0x73: "SETITEM", 0x74: "TUPLE", 0x29: "EMPTY_TUPLE",
            0x75: "SETITEMS", 0x47: "BINFLOAT", 0x80: "PROTO", 0x81: "NEWOBJ", 0x82: "EXT1", 0x83: "EXT2",
            0x84: "EXT4", 0x85: "TUPLE1", 0x86: "TUPLE2", 0x87: "TUPLE3", 0x88: "NEWTRUE", 0x89: "NEWFALSE",
            0x8A: "LONG1", 0x8B: "LONG4", 0x42: "BINBYTES", 0x43: "SHORT_BINBYTES",
            0x8C: "SHORT_BINUNICODE", 0x8D: "BINUNICODE8", 0x8E: "BINBYTES8", 0x8F: "EMPTY_SET",
            0x90: "ADDITEMS", 0x91: "FROZENSET", 0x92: "NEWOBJ_EX", 0x93: "STACK_GLOBAL", 0x94: "MEMOIZE",
            0x95: "FRAME", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
        ]
        return names[op] ?? "opcode 0x\(String(op, radix: 16))"
    }
}

/// Box graph → value tree, memoized by identity so shared references stay cheap.
private struct TreeConverter {
    let machine: PickleMachine
    var done: [ObjectIdentifier: (value: PickleValue, expanded: Int)] = [:]
    var inProgress: Set<ObjectIdentifier> = []

    init(machine: PickleMachine) { self.machine = machine }

    private func fail(_ message: String) -> FormatError {
        FormatError(.malformed, file: machine.file, "\(machine.entry): \(message)")
    }

    static func name(_ path: [String]) -> String {
        path.isEmpty ? "<root>" : path.joined(separator: ".")
    }

    mutating func convert(_ item: PickleItem, path: [String], depth: Int) throws -> (value: PickleValue, expanded: Int) {
        guard depth <= PickleMachine.maxDepth else {
            throw fail("objects nested deeper than \(PickleMachine.maxDepth) levels at '\(TreeConverter.name(path.suffix(8)))'; refusing")
        }
        switch item {
        case let .value(v):
            return (v, 1)
        case let .global(g):
            if case let .dtype(d) = g.kind { return (.dtype(d), 1) }
            return (.global(g.name), 1)
        case let .storage(ref):
            let view = TensorView(dtype: ref.dtype, shape: [ref.numel], storage: ref.storage)
            return (.tensor(view), 1)
        case let .tensor(spec):
            let id = ObjectIdentifier(spec)
            if let cached = done[id] { return cached }
            let result = (PickleValue.tensor(try view(spec, path: path)), 1)
            done[id] = result
            return result
        case let .box(box):
            let id = ObjectIdentifier(box)
            if let cached = done[id] { return cached }
            guard !inProgress.contains(id) else {
                throw fail("the object graph contains a cycle at '\(TreeConverter.name(path))'; a checkpoint is a tree of data")
            }
            inProgress.insert(id)
            defer { inProgress.remove(id) }
            var expanded = 1
            func add(_ n: Int) throws {
                expanded += n
                guard expanded <= PickleMachine.maxExpandedValues else {
                    throw fail("shared references expand the object tree beyond \(PickleMachine.maxExpandedValues) values at '\(TreeConverter.name(path))'; refusing")
                }
            }
            let value: PickleValue
            if box.kind == .dict {
                var pairs: [(PickleValue, PickleValue)] = []
                pairs.reserveCapacity(box.items.count)
                for (k, v) in zip(box.keys, box.items) {
                    let key = try convert(k, path: path + ["<key>"], depth: depth + 1)
                    let val = try convert(v, path: path + [key.value.pathComponent], depth: depth + 1)
                    try add(key.expanded + val.expanded)
                    pairs.append((key.value, val.value))
                }
                value = .dict(pairs)
            } else {
                var items: [PickleValue] = []
                items.reserveCapacity(box.items.count)
                for (i, element) in box.items.enumerated() {
                    let converted = try convert(element, path: path + [String(i)], depth: depth + 1)
                    try add(converted.expanded)
                    items.append(converted.value)
                }
                switch box.kind {
                case .list: value = .list(items)
                case .tuple: value = .tuple(items)
                default: value = .set(items)
                }
            }
            done[id] = (value, expanded)
            return (value, expanded)
        }
    }

    /// The zero-copy view of a tensor, after checking every addressed element is in its storage.
    private func view(_ spec: TensorSpec, path: [String]) throws -> TensorView {
        let name = TreeConverter.name(path)
        let ref = spec.storage
        let size = spec.dtype.byteSize
        let storageBytes = ref.byteCount
        func outside(_ detail: String) -> FormatError {
            FormatError(
                .malformed, file: machine.file, tensor: name,
                "\(detail); storage '\(ref.key)' holds \(storageBytes) bytes (\(ref.numel) × \(ref.dtype.rawValue)), so the tensor reaches outside it")
        }
        guard let count = checkedElementCount(spec.shape) else {
            throw FormatError(.malformed, file: machine.file, tensor: name, "shape \(spec.shape) overflows 64-bit size")
        }
        let storageElements = storageBytes / size
        if count == 0 {
            guard spec.offset <= storageElements else {
                throw outside("storage offset \(spec.offset) × \(spec.dtype.rawValue)")
            }
            return TensorView(dtype: spec.dtype, shape: spec.shape, storage: ref.storage, byteOffset: 0, strides: spec.strides)
        }
        var last = spec.offset
        for (dim, stride) in zip(spec.shape, spec.strides) {
            let (span, o1) = (dim - 1).multipliedReportingOverflow(by: stride)
            let (sum, o2) = last.addingReportingOverflow(span)
            guard !o1, !o2 else { throw outside("shape \(spec.shape) with strides \(spec.strides) overflows") }
            last = sum
        }
        guard last < storageElements else {
            throw outside(
                "shape \(spec.shape), strides \(spec.strides), offset \(spec.offset) address element \(last) (\(spec.dtype.rawValue))")
        }
        return TensorView(
            dtype: spec.dtype, shape: spec.shape, storage: ref.storage, byteOffset: spec.offset * size,
            strides: spec.strides)
    }
}
