/// The globals a checkpoint's pickle may name, and our own Swift reading of each.
///
/// A pickle normally calls whatever `module.name` it mentions; that is how a checkpoint runs
/// `os.system`. We never call anything: a name on this list maps to a Swift reconstruction, a
/// known-but-unsupported torch name is `.unsupported`, and every other name is refused as
/// `.unsafe` at the GLOBAL / STACK_GLOBAL / INST opcode that mentions it.
struct AllowedGlobal {
    enum Kind: Equatable {
        case rebuildTensor, rebuildTensorV2, rebuildTensorV3
        case rebuildParameter, rebuildParameterWithState, rebuildFromTypeV2
        case storageClass(DType)
        case dtype(DType)
        case tensorClass
        case orderedDict, torchSize, set, frozenset, codecsEncode, bytearray, device

        var isTensorRebuild: Bool {
            switch self {
            case .rebuildTensor, .rebuildTensorV2, .rebuildTensorV3, .rebuildParameter,
                .rebuildParameterWithState:
                return true
            default: return false
            }
        }
    }

    let name: String
    let kind: Kind

    static let table: [String: Kind] = {
        var t: [String: Kind] = [
            "torch._utils._rebuild_tensor": .rebuildTensor,
            "torch._utils._rebuild_tensor_v2": .rebuildTensorV2,
            "torch._utils._rebuild_tensor_v3": .rebuildTensorV3,
            "torch._utils._rebuild_parameter": .rebuildParameter,
            "torch._utils._rebuild_parameter_with_state": .rebuildParameterWithState,
            "torch._tensor._rebuild_from_type_v2": .rebuildFromTypeV2,
            "torch.Tensor": .tensorClass,
            "torch._tensor.Tensor": .tensorClass,
            "torch.nn.parameter.Parameter": .tensorClass,
            "collections.OrderedDict": .orderedDict,
            "torch.Size": .torchSize,
            "builtins.set": .set, "__builtin__.set": .set,
            "builtins.frozenset": .frozenset, "__builtin__.frozenset": .frozenset,
            "builtins.bytearray": .bytearray, "__builtin__.bytearray": .bytearray,
            "_codecs.encode": .codecsEncode,
            "torch.device": .device,
            "torch.UntypedStorage": .storageClass(.uint8),
            "torch.storage.UntypedStorage": .storageClass(.uint8),
        ]
        let storages: [(String, DType)] = [
            ("Double", .float64), ("Float", .float32), ("Half", .float16), ("BFloat16", .bfloat16),
            ("Long", .int64), ("Int", .int32), ("Short", .int16), ("Char", .int8), ("Byte", .uint8),
            ("Bool", .bool),
        ]
        for (prefix, dtype) in storages {
            t["torch.\(prefix)Storage"] = .storageClass(dtype)
            t["torch.cuda.\(prefix)Storage"] = .storageClass(dtype)
        }
        let dtypes: [(String, DType)] = [
            ("float64", .float64), ("double", .float64), ("float32", .float32), ("float", .float32),
            ("float16", .float16), ("half", .float16), ("bfloat16", .bfloat16), ("int64", .int64),
            ("long", .int64), ("int32", .int32), ("int", .int32), ("int16", .int16), ("short", .int16),
            ("int8", .int8), ("uint8", .uint8), ("bool", .bool),
        ]
        for (name, dtype) in dtypes { t["torch.\(name)"] = .dtype(dtype) }
        return t
    }()

    /// Every allowed qualified name, sorted (for documentation and `inspect`).
    static var allowedNames: [String] { table.keys.sorted() }

    /// Torch names that are safe but describe data we do not read.
    static func unsupportedReason(_ name: String) -> String? {
        if name.hasPrefix("torch._utils._rebuild_") || name == "torch._tensor._rebuild_from_type" {
            return "'\(name)' rebuilds a tensor kind this toolchain does not read (quantized, sparse, nested, meta or device-specific); only dense tensors are supported"
        }
        let storagePrefixes = ["torch.", "torch.cuda."]
        for prefix in storagePrefixes where name.hasPrefix(prefix) && name.hasSuffix("Storage") {
            let inner = name.dropFirst(prefix.count)
            if !inner.contains(".") {
                return "storage type '\(name)' has an element type this toolchain does not read (supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)"
            }
        }
        let otherDtypes = [
            "complex32", "complex64", "complex128", "cfloat", "cdouble", "chalf", "uint16", "uint32",
            "uint64", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
            "float8_e8m0fnu", "float4_e2m1fn_x2", "qint8", "quint8", "qint32", "quint4x2", "quint2x4",
            "bits8", "bits16", "bits1x8", "bits2x4", "bits4x2",
        ]
        if name.hasPrefix("torch."), otherDtypes.contains(String(name.dropFirst(6))) {
            return "dtype '\(name)' is not supported (supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)"
        }
        if ["torch.per_tensor_affine", "torch.per_channel_affine", "torch.per_tensor_symmetric",
            "torch.per_channel_symmetric", "torch.per_channel_affine_float_qparams",
            "torch.serialization._get_layout", "torch.sparse_coo", "torch.sparse_csr"].contains(name)
        {
            return "'\(name)' belongs to quantized or sparse tensors, which this toolchain does not read"
        }
        return nil
    }
}

extension PickleMachine {
    /// Resolves `module.name` against the allow-list, or refuses it.
    func resolveGlobal(module: String, name: String) throws -> PickleItem {
        let qualified = "\(module).\(name)"
        if let kind = AllowedGlobal.table[qualified] {
            return .global(AllowedGlobal(name: qualified, kind: kind))
        }
        if let reason = AllowedGlobal.unsupportedReason(qualified) {
            throw FormatError(.unsupported, file: file, "\(entry) byte \(opStart): \(reason)")
        }
        throw FormatError(
            .unsafe, file: file,
            "pickle refers to global '\(qualified)' (\(entry) byte \(opStart)), which is not allowed; this checkpoint could execute code. Only tensors, dicts, lists, tuples, sets, strings, bytes, numbers and torch's own tensor-rebuild functions are read")
    }

    /// REDUCE / INST / OBJ: our reconstruction of calling `callable(*args)`.
    func call(_ callable: PickleItem, _ args: [PickleItem]) throws -> PickleItem {
        guard case let .global(g) = callable else {
            throw malformed("REDUCE on a \(callable.kindName), which is not callable")
        }
        func need(_ counts: ClosedRange<Int>) throws {
            guard counts.contains(args.count) else {
                let expected = counts.count == 1 ? "\(counts.lowerBound)" : "\(counts.lowerBound)–\(counts.upperBound)"
                throw malformed("\(g.name) called with \(args.count) arguments; expected \(expected)")
            }
        }
        switch g.kind {
        case .rebuildTensor:
            try need(4...4)
            return try makeTensor(g.name, args[0], args[1], args[2], args[3], dtype: nil, metadata: nil)
        case .rebuildTensorV2:
            try need(6...7)
            return try makeTensor(g.name, args[0], args[1], args[2], args[3], dtype: nil, metadata: args.count > 6 ? args[6] : nil)
        case .rebuildTensorV3:
            try need(7...8)
            guard case let .global(d) = args[6], case let .dtype(dtype) = d.kind else {
                throw malformed("\(g.name): argument 7 must be a torch dtype, found \(args[6].kindName)")
            }
            return try makeTensor(g.name, args[0], args[1], args[2], args[3], dtype: dtype, metadata: args.count > 7 ? args[7] : nil)
        case .rebuildParameter, .rebuildParameterWithState:
            try need(g.kind == .rebuildParameter ? 3...3 : 4...4)
            guard case .tensor = args[0] else {
                throw malformed("\(g.name): argument 1 must be a tensor, found \(args[0].kindName)")
            }
            return args[0]
        case .rebuildFromTypeV2:
            try need(4...4)
            guard case let .global(function) = args[0], function.kind.isTensorRebuild else {
                throw malformed("\(g.name): argument 1 must be a torch tensor-rebuild function, found \(args[0].kindName)")
            }
            guard case let .global(type) = args[1], type.kind == .tensorClass else {
                throw malformed("\(g.name): argument 2 must be torch.Tensor or torch.nn.Parameter, found \(args[1].kindName)")
            }
            guard let inner = args[2].sequence else {
                throw malformed("\(g.name): argument 3 must be a tuple of arguments, found \(args[2].kindName)")
            }
            return try call(args[0], inner)
        case .orderedDict:
            try need(0...1)
            let dict = makeBox(.dict)
            if let source = args.first {
                if case let .box(b) = source, b.kind == .dict {
                    for (k, v) in zip(b.keys, b.items) { try setItem(dict, k, v) }
                } else if let pairs = source.sequence {
                    for pair in pairs {
                        guard let kv = pair.sequence, kv.count == 2 else {
                            throw malformed("OrderedDict(...) items must be (key, value) pairs, found \(pair.kindName)")
                        }
                        try setItem(dict, kv[0], kv[1])
                    }
                } else {
                    throw malformed("OrderedDict(...) argument must be a dict or a list of pairs, found \(source.kindName)")
                }
            }
            return .box(dict)
        case .torchSize:
            try need(0...1)
            let items = try args.first.map { arg -> [PickleItem] in
                guard let dims = arg.sequence, dims.allSatisfy({ $0.int != nil }) else {
                    throw malformed("torch.Size(...) argument must be a tuple of ints, found \(arg.kindName)")
                }
                return dims
            } ?? []
            return .box(makeBox(.tuple, items: items))
        case .set, .frozenset:
            try need(0...1)
            let box = makeBox(g.kind == .set ? .set : .frozenset)
            if let source = args.first {
                guard case let .box(b) = source, b.kind != .dict else {
                    throw malformed("\(g.name)(...) argument must be a list, tuple or set, found \(source.kindName)")
                }
                for item in b.items { try addToSet(box, item) }
            }
            return .box(box)
        case .codecsEncode, .bytearray:
            if g.kind == .bytearray, args.isEmpty { return .value(.bytes([])) }
            if g.kind == .bytearray, args.count == 1, case let .value(.bytes(b)) = args[0] { return .value(.bytes(b)) }
            try need(2...2)
            guard let text = args[0].string, let encoding = args[1].string,
                ["latin1", "latin-1", "iso-8859-1", "iso8859-1"].contains(encoding.lowercased())
            else {
                throw malformed("\(g.name)(...) is only read as (str, 'latin1'), the form pickle uses for bytes")
            }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(text.unicodeScalars.count)
            for scalar in text.unicodeScalars {
                guard scalar.value < 256 else {
                    throw malformed("\(g.name)(...): character U+\(String(scalar.value, radix: 16)) is not latin-1")
                }
                bytes.append(UInt8(scalar.value))
            }
            return .value(.bytes(bytes))
        case .device:
            try need(1...2)
            guard let type = args[0].string else {
                throw malformed("torch.device(...) argument must be a string, found \(args[0].kindName)")
            }
            if args.count == 2, let index = args[1].int { return .value(.string("\(type):\(index)")) }
            return .value(.string(type))
        case .storageClass, .dtype, .tensorClass:
            throw malformed("'\(g.name)' is not callable in a checkpoint")
        }
    }

    /// NEWOBJ / NEWOBJ_EX: `cls.__new__(cls, *args)` for the few classes we know.
    func newObject(_ cls: PickleItem, _ args: [PickleItem]) throws -> PickleItem {
        guard case let .global(g) = cls else {
            throw malformed("NEWOBJ on a \(cls.kindName), which is not a class")
        }
        switch g.kind {
        case .orderedDict: return .box(makeBox(.dict))
        case .set: return .box(makeBox(.set))
        case .frozenset, .torchSize, .bytearray: return try call(cls, args)
        default: throw malformed("NEWOBJ on '\(g.name)', which is not a class this reader constructs")
        }
    }

    private func makeTensor(
        _ function: String, _ storage: PickleItem, _ offset: PickleItem, _ size: PickleItem,
        _ stride: PickleItem, dtype: DType?, metadata: PickleItem?
    ) throws -> PickleItem {
        guard case let .storage(ref) = storage else {
            throw malformed("\(function): argument 1 must be a storage (persistent id), found \(storage.kindName)")
        }
        guard let offset = offset.int, offset >= 0 else {
            throw malformed("\(function): storage offset must be a non-negative int, found \(offset.kindName)")
        }
        func ints(_ item: PickleItem, _ what: String) throws -> [Int] {
            guard let items = item.sequence else {
                throw malformed("\(function): \(what) must be a tuple of ints, found \(item.kindName)")
            }
            guard items.count <= 64 else {
                throw malformed("\(function): \(items.count) dimensions is more than the 64 supported")
            }
            return try items.map {
                guard let v = $0.int, v >= 0 else {
                    throw malformed("\(function): \(what) must hold non-negative ints, found \($0.kindName) \($0.int.map(String.init) ?? "")")
                }
                return v
            }
        }
        let shape = try ints(size, "size")
        let strides = try ints(stride, "stride")
        guard shape.count == strides.count else {
            throw malformed("\(function): size has \(shape.count) dimensions but stride has \(strides.count)")
        }
        if let metadata, case let .box(b) = metadata, b.kind == .dict {
            for (k, v) in zip(b.keys, b.items) where v.int.map({ $0 != 0 }) ?? false {
                throw FormatError(
                    .unsupported, file: file,
                    "\(entry) byte \(opStart): a tensor has the lazy '\(k.string ?? "?")' bit set; re-save it after resolve_conj()/resolve_neg()")
            }
        }
        return .tensor(TensorSpec(storage: ref, dtype: dtype ?? ref.dtype, offset: offset, shape: shape, strides: strides))
    }
}
