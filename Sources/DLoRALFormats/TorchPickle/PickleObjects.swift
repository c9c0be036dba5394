/// The unpickler's working objects. Containers are reference boxes because pickle's memo shares
/// them and later opcodes mutate them; they become `PickleValue`s (checked, acyclic, depth-limited)
/// once the pickle has stopped.

/// A mutable container on the pickle stack or in the memo.
final class PickleBox {
    enum Kind: String {
        case list, tuple, dict, set, frozenset
    }

    let kind: Kind
    /// Elements (list, tuple, set) or values (dict).
    var items: [PickleItem] = []
    /// Dict keys, parallel to `items`.
    var keys: [PickleItem] = []
    /// Position of each key (dict) or element (set), for Python's replace/dedupe semantics.
    var index: [PickleKey: Int] = [:]

    init(_ kind: Kind, items: [PickleItem] = []) {
        self.kind = kind
        self.items = items
    }
}

/// A storage (`('storage', type, key, location, numel)` persistent id) resolved to its zip entry.
final class StorageRef {
    let key: String
    let dtype: DType
    /// Elements of `dtype` the pickle says the storage holds.
    let numel: Int
    /// The entry's bytes, zero-copy.
    let storage: TensorStorage

    init(key: String, dtype: DType, numel: Int, storage: TensorStorage) {
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.storage = storage
    }

    /// Bytes the pickle says the storage holds (checked against the entry when it was made).
    var byteCount: Int { numel * dtype.byteSize }
}

/// A tensor as `_rebuild_tensor_v2` describes it; bounds are checked when the tree is built,
/// where the tensor's key path is known.
final class TensorSpec {
    let storage: StorageRef
    let dtype: DType
    /// In elements of `dtype`.
    let offset: Int
    let shape: [Int]
    let strides: [Int]

    init(storage: StorageRef, dtype: DType, offset: Int, shape: [Int], strides: [Int]) {
        self.storage = storage
        self.dtype = dtype
        self.offset = offset
        self.shape = shape
        self.strides = strides
    }
}

/// One value on the pickle stack.
enum PickleItem {
    /// None, bool, int, float, str, bytes (never a container or a tensor).
    case value(PickleValue)
    case box(PickleBox)
    case global(AllowedGlobal)
    case storage(StorageRef)
    case tensor(TensorSpec)

    var kindName: String {
        switch self {
        case let .value(v): return v.kindName
        case let .box(b): return b.kind.rawValue
        case let .global(g): return "global '\(g.name)'"
        case .storage: return "storage"
        case .tensor: return "tensor"
        }
    }

    var string: String? {
        if case let .value(.string(s)) = self { return s }
        return nil
    }

    var int: Int? {
        switch self {
        case let .value(.int(i)): return i
        case let .value(.bool(b)): return b ? 1 : 0
        default: return nil
        }
    }

    /// The elements of a tuple or list box.
    var sequence: [PickleItem]? {
        if case let .box(b) = self, b.kind == .tuple || b.kind == .list { return b.items }
        return nil
    }

    var isNone: Bool {
        if case .value(.none) = self { return true }
        return false
    }
}

/// Python's notion of equal hashable keys, for dict keys and set elements.
indirect enum PickleKey: Hashable {
    case none
    case int(Int)
    case bigInt(String)
    case float(UInt64)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleKey])
    case identity(ObjectIdentifier)
    case name(String)
}

extension PickleValue {
    /// Two's-complement little-endian bytes (LONG1/LONG4) as an int or a decimal big int.
    static func integer(littleEndian bytes: [UInt8]) -> PickleValue {
        guard let last = bytes.last else { return .int(0) }
        let negative = last & 0x80 != 0
        let fill: UInt8 = negative ? 0xFF : 0
        var n = bytes.count
        while n > 1, bytes[n - 1] == fill, (bytes[n - 2] & 0x80) == (fill & 0x80) { n -= 1 }
        if n <= 8 {
            var v: UInt64 = negative ? ~0 : 0
            for i in 0..<n {
                v &= ~(UInt64(0xFF) << (8 * UInt64(i)))
                v |= UInt64(bytes[i]) << (8 * UInt64(i))
            }
            return .int(Int(bitPattern: UInt(v)))
        }
        var magnitude = Array(bytes[0..<n])
        if negative {
            var carry = 1
            for i in magnitude.indices {
                let sum = Int(~magnitude[i]) + carry
                magnitude[i] = UInt8(sum & 0xFF)
                carry = sum >> 8
            }
        }
        // Repeated division by 10 000 over base-256 digits (most significant first).
        var digits = Array(magnitude.reversed())
        var chunks: [Int] = []
        while digits.contains(where: { $0 != 0 }) {
            var remainder = 0
            for i in digits.indices {
                let current = remainder * 256 + Int(digits[i])
                digits[i] = UInt8(current / 10_000)
                remainder = current % 10_000
            }
            chunks.append(remainder)
            while let first = digits.first, first == 0 { digits.removeFirst() }
        }
        var text = negative ? "-" : ""
        for (i, chunk) in chunks.reversed().enumerated() {
            let s = String(chunk)
            text += i == 0 ? s : String(repeating: "0", count: 4 - s.count) + s
        }
        return .bigInt(text)
    }

    /// A decimal literal (protocol 0 INT/LONG) as an int or a big int.
    static func integer(decimal text: Substring) -> PickleValue? {
        var body = text
        if body.hasSuffix("L") { body = body.dropLast() }
        if let v = Int(body) { return .int(v) }
        var digits = body
        let negative = digits.first == "-"
        if negative || digits.first == "+" { digits = digits.dropFirst() }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        let trimmed = digits.drop { $0 == "0" }
        return .bigInt((negative ? "-" : "") + (trimmed.isEmpty ? "0" : String(trimmed)))
    }
}

/// Python's dict and set semantics on boxes: equal hashable keys replace or dedupe.
extension PickleMachine {
    /// Python's hash key of `item`. Tuples nest, so the work is bounded (a tuple of shared tuples
    /// could otherwise stand for exponentially many elements).
    func key(_ item: PickleItem) throws -> PickleKey {
        var budget = 100_000
        return try key(item, depth: 0, budget: &budget)
    }

    private func key(_ item: PickleItem, depth: Int, budget: inout Int) throws -> PickleKey {
        budget -= 1
        guard depth < PickleMachine.maxDepth, budget >= 0 else {
            throw malformed("a dict key or set element is too large or too deeply nested")
        }
        switch item {
        case let .value(v):
            switch v {
            case .none: return .none
            case let .bool(b): return .int(b ? 1 : 0)
            case let .int(i): return .int(i)
            case let .bigInt(s): return .bigInt(s)
            case let .float(d):
                if d == d.rounded(), abs(d) < 9.2e18 { return .int(Int(d)) }
                return .float(d.bitPattern)
            case let .string(s): return .string(s)
            case let .bytes(b): return .bytes(b)
            default: return .name(v.description)
            }
        case let .box(b):
            switch b.kind {
            case .tuple:
                var parts: [PickleKey] = []
                parts.reserveCapacity(b.items.count)
                for element in b.items { parts.append(try key(element, depth: depth + 1, budget: &budget)) }
                return .tuple(parts)
            case .frozenset: return .identity(ObjectIdentifier(b))
            default: throw malformed("a \(b.kind.rawValue) is used as a dict key or set element, which Python cannot hash")
            }
        case let .global(g): return .name(g.name)
        case let .storage(s): return .identity(ObjectIdentifier(s))
        case let .tensor(t): return .identity(ObjectIdentifier(t))
        }
    }

    func setItem(_ dict: PickleBox, _ k: PickleItem, _ v: PickleItem) throws {
        let hashed = try key(k)
        if let existing = dict.index[hashed] {
            dict.items[existing] = v
        } else {
            dict.index[hashed] = dict.items.count
            dict.keys.append(k)
            dict.items.append(v)
        }
    }

    func addToSet(_ set: PickleBox, _ item: PickleItem) throws {
        let hashed = try key(item)
        if set.index[hashed] == nil {
            set.index[hashed] = set.items.count
            set.items.append(item)
        }
    }
}
