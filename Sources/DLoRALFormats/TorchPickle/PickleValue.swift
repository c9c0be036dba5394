/// The object tree a PyTorch checkpoint's pickle describes, rebuilt as plain data.
///
/// Nothing in it was produced by running code from the file: containers and scalars come straight
/// from pickle opcodes, tensors from our own reading of `torch._utils._rebuild_tensor_v2` and
/// friends (see `TorchGlobal`), and every other global is refused while unpickling.
public indirect enum PickleValue: Sendable {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer that does not fit in 64 bits, as decimal text (e.g. "-1180591620717411303424").
    case bigInt(String)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case list([PickleValue])
    /// Tuples, including `torch.Size`.
    case tuple([PickleValue])
    /// Key/value pairs in insertion order (`dict` and `collections.OrderedDict`).
    case dict([(PickleValue, PickleValue)])
    /// `set` and `frozenset`, in pickle order.
    case set([PickleValue])
    /// A tensor, as a zero-copy view into the checkpoint's mapped storage entry.
    case tensor(TensorView)
    /// A dtype object such as `torch.float16`.
    case dtype(DType)
    /// An allowed global that was referenced but not called (e.g. a storage class), by its
    /// qualified name. It is a name only.
    case global(String)

    /// The value under `key` in a dict with string keys.
    public subscript(key: String) -> PickleValue? {
        guard case let .dict(pairs) = self else { return nil }
        for (k, v) in pairs {
            if case let .string(s) = k, s == key { return v }
        }
        return nil
    }

    /// The element at `index` of a list or tuple.
    public subscript(index: Int) -> PickleValue? {
        guard let items = arrayValue, items.indices.contains(index) else { return nil }
        return items[index]
    }

    public var stringValue: String? {
        if case let .string(s) = self { return s }
        return nil
    }

    /// The integer value of an int (or a bool, as Python treats it).
    public var intValue: Int? {
        switch self {
        case let .int(i): return i
        case let .bool(b): return b ? 1 : 0
        default: return nil
        }
    }

    /// The value of a float or an int.
    public var doubleValue: Double? {
        switch self {
        case let .float(d): return d
        case let .int(i): return Double(i)
        default: return nil
        }
    }

    public var boolValue: Bool? {
        if case let .bool(b) = self { return b }
        return nil
    }

    /// The items of a list or a tuple.
    public var arrayValue: [PickleValue]? {
        switch self {
        case let .list(items), let .tuple(items): return items
        default: return nil
        }
    }

    /// The pairs of a dict.
    public var dictValue: [(PickleValue, PickleValue)]? {
        if case let .dict(pairs) = self { return pairs }
        return nil
    }

    /// The string keys of a dict, in order (non-string keys are skipped).
    public var dictKeys: [String] {
        dictValue?.compactMap { $0.0.stringValue } ?? []
    }

    public var tensorValue: TensorView? {
        if case let .tensor(t) = self { return t }
        return nil
    }

    /// A list or tuple of strings, as a Swift array.
    public var stringArrayValue: [String]? {
        guard let items = arrayValue else { return nil }
        var out: [String] = []
        out.reserveCapacity(items.count)
        for item in items {
            guard let s = item.stringValue else { return nil }
            out.append(s)
        }
        return out
    }

    /// A short name for the kind of value, for messages ("dict", "tensor", …).
    public var kindName: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int, .bigInt: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .list: return "list"
        case .tuple: return "tuple"
        case .dict: return "dict"
        case .set: return "set"
        case .tensor: return "tensor"
        case .dtype: return "dtype"
        case .global: return "global"
        }
    }

    /// How a dict key or list index reads in a dotted name.
    var pathComponent: String {
        switch self {
        case let .string(s): return s
        case let .int(i): return String(i)
        case let .bigInt(s): return s
        case let .bool(b): return b ? "True" : "False"
        case let .float(d): return String(d)
        case .none: return "None"
        default: return "<\(kindName)>"
        }
    }
}

extension PickleValue: CustomStringConvertible {
    /// A Python-like rendering; tensors show dtype and shape, long containers are elided.
    public var description: String {
        var out = ""
        render(into: &out, depth: 0)
        return out
    }

    private func render(into out: inout String, depth: Int) {
        if depth > 8 {
            out += "…"
            return
        }
        func items(_ values: [PickleValue], _ open: String, _ close: String) {
            out += open
            for (i, v) in values.prefix(20).enumerated() {
                if i > 0 { out += ", " }
                v.render(into: &out, depth: depth + 1)
            }
            if values.count > 20 { out += ", … (\(values.count) items)" }
            if values.count == 1, open == "(" { out += "," }
            out += close
        }
        switch self {
        case .none: out += "None"
        case let .bool(b): out += b ? "True" : "False"
        case let .int(i): out += String(i)
        case let .bigInt(s): out += s
        case let .float(d): out += String(d)
        case let .string(s): out += "'" + s + "'"
        case let .bytes(b): out += "b<\(b.count) bytes>"
        case let .list(v): items(v, "[", "]")
        case let .tuple(v): items(v, "(", ")")
        case let .set(v): items(v, "{", "}")
        case let .dict(pairs):
            out += "{"
            for (i, (k, v)) in pairs.prefix(20).enumerated() {
                if i > 0 { out += ", " }
                k.render(into: &out, depth: depth + 1)
                out += ": "
                v.render(into: &out, depth: depth + 1)
            }
            if pairs.count > 20 { out += ", … (\(pairs.count) items)" }
            out += "}"
        case let .tensor(t): out += "tensor(\(t.dtype.rawValue), \(t.shape))"
        case let .dtype(d): out += "dtype(\(d.rawValue))"
        case let .global(name): out += name
        }
    }
}
