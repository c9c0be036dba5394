import CONNX

/// One operator of an ONNX graph, as far as naming and inspection need it.
public struct ONNXNode: Sendable, Equatable {
    /// The node name; PyTorch's exporter spells it as the module path plus the op,
    /// e.g. `/down_blocks.0/attentions.0/transformer_blocks.0/attn1/to_q/MatMul`.
    public let name: String
    public let opType: String
    /// Operator domain; empty for the default ONNX domain.
    public let domain: String
    /// Input value names in order (an empty string marks an omitted optional input).
    public let inputs: [String]
    public let outputs: [String]
    /// Scalar and list attributes by name (tensor, graph and type attributes are `.other`).
    public let attributes: [String: ONNXAttribute]

    public init(
        name: String, opType: String, domain: String = "", inputs: [String], outputs: [String],
        attributes: [String: ONNXAttribute] = [:]
    ) {
        self.name = name
        self.opType = opType
        self.domain = domain
        self.inputs = inputs
        self.outputs = outputs
        self.attributes = attributes
    }

    /// An integer attribute, or `nil` when absent or of another type.
    public func intAttribute(_ name: String) -> Int64? {
        if case let .int(value) = attributes[name] { return value }
        return nil
    }
}

/// The value of a node attribute.
public enum ONNXAttribute: Sendable, Equatable {
    case int(Int64)
    case float(Float)
    case string([UInt8])
    case ints([Int64])
    case floats([Float])
    /// A tensor, graph, type or sparse-tensor attribute, which this reader does not decode.
    case other(type: Int32)
}

/// An entry of a model's `opset_import`.
public struct ONNXOpset: Sendable, Equatable {
    /// Empty (or `ai.onnx`) for the default operator set.
    public let domain: String
    public let version: Int

    public init(domain: String, version: Int) {
        self.domain = domain
        self.version = version
    }
}

/// An ONNX model file: graph structure and initializers (weights), with external data mapped.
///
/// Initializers keep their raw ONNX names (`conv_in.weight`, `onnx::MatMul_1234`, …); mapping them
/// to canonical diffusers names needs the graph and lives in `DLoRALConvert`
/// (`ONNXCanonicalNames`). Weights stored in the model itself are copied out of the protobuf;
/// weights in external data files are zero-copy views of those files, each mapped once.
///
/// External data locations must be relative paths that stay inside the model's folder after
/// resolving `..` and symbolic links; anything else is refused as `.unsafe`.
public struct ONNXModel: Sendable {
    public let path: String
    public let irVersion: Int
    public let producerName: String
    public let producerVersion: String
    public let opsetImports: [ONNXOpset]
    /// Version of the default (`ai.onnx`) operator set, 0 if the model does not import it.
    public let opsetVersion: Int
    public let graphName: String
    public let nodes: [ONNXNode]
    /// Names of the graph inputs (IR < 4 models also list their initializers here).
    public let graphInputs: [String]
    public let graphOutputs: [String]
    /// Initializers under their raw ONNX names; `metadata` holds the model's `metadata_props`.
    public let initializers: TensorTable
    /// External data files in order of first use, each mapped once; views point into these.
    public let externalDataFiles: [MappedFile]

    /// A model assembled in memory (for tools and tests); `path` is only used in messages.
    public init(
        path: String, irVersion: Int = 8, producerName: String = "", producerVersion: String = "",
        opsetImports: [ONNXOpset] = [ONNXOpset(domain: "", version: 17)], graphName: String = "",
        nodes: [ONNXNode], graphInputs: [String] = [], graphOutputs: [String] = [],
        initializers: TensorTable, externalDataFiles: [MappedFile] = []
    ) {
        self.path = path
        self.irVersion = irVersion
        self.producerName = producerName
        self.producerVersion = producerVersion
        self.opsetImports = opsetImports
        opsetVersion = ONNXModel.defaultOpsetVersion(opsetImports)
        self.graphName = graphName
        self.nodes = nodes
        self.graphInputs = graphInputs
        self.graphOutputs = graphOutputs
        self.initializers = initializers
        self.externalDataFiles = externalDataFiles
    }

    static func defaultOpsetVersion(_ imports: [ONNXOpset]) -> Int {
        imports.first { $0.domain.isEmpty || $0.domain == "ai.onnx" }?.version ?? 0
    }

    /// Reads and validates `path`.
    /// - Throws: `FormatError` naming the file (and the initializer, where one is concerned).
    public init(path: String) throws {
        let file = try MappedFile(path: path)
        try self.init(file: file)
    }

    public init(file: MappedFile) throws {
        let path = file.path
        self.path = path
        guard file.count > 0, let base = file.bytes.baseAddress else {
            throw FormatError(.malformed, file: path, "not a valid ONNX protobuf: the file is empty")
        }
        guard
            let model = onnx_subset__model_proto__unpack(
                nil, file.count, base.assumingMemoryBound(to: UInt8.self))
        else {
            throw FormatError(
                .malformed, file: path,
                "not a valid ONNX protobuf (\(file.count) bytes could not be decoded as a ModelProto; truncated or not an .onnx file?)")
        }
        defer { onnx_subset__model_proto__free_unpacked(model, nil) }
        let m = model.pointee

        irVersion = m.has_ir_version != 0 ? Int(m.ir_version) : 0
        producerName = ONNXModel.string(m.producer_name)
        producerVersion = ONNXModel.string(m.producer_version)
        var opsets: [ONNXOpset] = []
        for i in 0..<m.n_opset_import {
            guard let entry = m.opset_import[i]?.pointee else { continue }
            opsets.append(
                ONNXOpset(domain: ONNXModel.string(entry.domain), version: entry.has_version != 0 ? Int(entry.version) : 0))
        }
        opsetImports = opsets
        opsetVersion = ONNXModel.defaultOpsetVersion(opsets)

        guard let graphPointer = m.graph else {
            throw FormatError(
                .malformed, file: path,
                "not a valid ONNX protobuf: the ModelProto has no graph (not an ONNX model?)")
        }
        // A file that decodes by accident (protobuf is permissive) has no IR version or opsets.
        guard m.has_ir_version != 0, m.ir_version > 0 else {
            throw FormatError(
                .malformed, file: path, "not a valid ONNX protobuf: ir_version is missing (not an ONNX model?)")
        }
        let graph = graphPointer.pointee
        graphName = ONNXModel.string(graph.name)

        if graph.n_sparse_initializer > 0 {
            throw FormatError(
                .unsupported, file: path,
                "the graph has \(graph.n_sparse_initializer) sparse initializer(s); sparse weights are not supported")
        }

        var nodes: [ONNXNode] = []
        nodes.reserveCapacity(graph.n_node)
        for i in 0..<graph.n_node {
            guard let node = graph.node[i]?.pointee else { continue }
            nodes.append(ONNXModel.node(node))
        }
        self.nodes = nodes
        graphInputs = (0..<graph.n_input).map { ONNXModel.string(graph.input[$0]?.pointee.name) }
        graphOutputs = (0..<graph.n_output).map { ONNXModel.string(graph.output[$0]?.pointee.name) }

        var table = TensorTable()
        for i in 0..<m.n_metadata_props {
            guard let entry = m.metadata_props[i]?.pointee else { continue }
            table.metadata[String(decoding: ONNXModel.bytes(entry.key), as: UTF8.self)] = String(decoding: ONNXModel.bytes(entry.value), as: UTF8.self)
        }
        var external = ExternalDataResolver(modelPath: path)
        for i in 0..<graph.n_initializer {
            guard let tensor = graph.initializer[i] else { continue }
            let (name, view) = try ONNXModel.initializer(tensor.pointee, index: i, path: path, external: &external)
            try table.insert(name, view, file: path)
        }
        initializers = table
        externalDataFiles = external.files
    }

    // MARK: - Decoding helpers

    static func bytes(_ data: ProtobufCBinaryData) -> UnsafeRawBufferPointer {
        guard let base = data.data, data.len > 0 else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base, count: data.len)
    }

    /// A `bytes` field that must be text: UTF-8 without NUL (nil otherwise).
    static func text(_ data: ProtobufCBinaryData) -> String? {
        let raw = bytes(data)
        guard !raw.contains(0) else { return nil }
        var text = ""
        guard transcode(raw.makeIterator(), from: UTF8.self, to: UTF32.self, stoppingOnError: true, into: {
            text.unicodeScalars.append(Unicode.Scalar($0)!)
        }) == false else { return nil }
        return text
    }

    static func string(_ pointer: UnsafeMutablePointer<CChar>?) -> String {
        guard let pointer else { return "" }
        return String(cString: pointer)
    }

    private static func node(_ node: OnnxSubset__NodeProto) -> ONNXNode {
        let inputs = (0..<node.n_input).map { string(node.input[$0]) }
        let outputs = (0..<node.n_output).map { string(node.output[$0]) }
        var attributes: [String: ONNXAttribute] = [:]
        for i in 0..<node.n_attribute {
            guard let a = node.attribute[i]?.pointee else { continue }
            attributes[string(a.name)] = attribute(a)
        }
        return ONNXNode(
            name: string(node.name), opType: string(node.op_type), domain: string(node.domain),
            inputs: inputs, outputs: outputs, attributes: attributes)
    }

    private static func attribute(_ a: OnnxSubset__AttributeProto) -> ONNXAttribute {
        // AttributeType: FLOAT 1, INT 2, STRING 3, FLOATS 6, INTS 7; older writers omit `type`.
        let type: Int32
        if a.has_type != 0 {
            type = a.type
        } else if a.has_i != 0 {
            type = 2
        } else if a.has_f != 0 {
            type = 1
        } else if a.has_s != 0 {
            type = 3
        } else if a.n_ints > 0 {
            type = 7
        } else if a.n_floats > 0 {
            type = 6
        } else {
            type = 0
        }
        switch type {
        case 1: return .float(a.f)
        case 2: return .int(a.i)
        case 3:
            let bytes = a.s.len > 0 && a.s.data != nil
                ? [UInt8](UnsafeBufferPointer(start: a.s.data, count: a.s.len)) : []
            return .string(bytes)
        case 6: return .floats(a.n_floats > 0 ? [Float](UnsafeBufferPointer(start: a.floats, count: a.n_floats)) : [])
        case 7: return .ints(a.n_ints > 0 ? [Int64](UnsafeBufferPointer(start: a.ints, count: a.n_ints)) : [])
        default: return .other(type: type)
        }
    }

    /// ONNX `TensorProto.DataType` codes by name, for messages.
    static let dataTypeNames: [Int32: String] = [
        0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32",
        7: "INT64", 8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64",
        14: "COMPLEX64", 15: "COMPLEX128", 16: "BFLOAT16", 17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ",
        19: "FLOAT8E5M2", 20: "FLOAT8E5M2FNUZ", 21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1",
        24: "FLOAT8E8M0", 25: "UINT2", 26: "INT2", 27: "FLOAT6E2M3", 28: "FLOAT6E3M2",
    ]

    /// Our element type for an ONNX data type code, or `nil` for the ones we do not read.
    public static func dtype(forONNXDataType code: Int32) -> DType? {
        switch code {
        case 1: return .float32
        case 2: return .uint8
        case 3: return .int8
        case 5: return .int16
        case 6: return .int32
        case 7: return .int64
        case 9: return .bool
        case 10: return .float16
        case 11: return .float64
        case 16: return .bfloat16
        default: return nil
        }
    }

    /// The ONNX data type code for one of our element types.
    public static func onnxDataType(for dtype: DType) -> Int32 {
        switch dtype {
        case .float32: return 1
        case .uint8: return 2
        case .int8: return 3
        case .int16: return 5
        case .int32: return 6
        case .int64: return 7
        case .bool: return 9
        case .float16: return 10
        case .float64: return 11
        case .bfloat16: return 16
        }
    }

    private static func initializer(
        _ t: OnnxSubset__TensorProto, index: Int, path: String, external: inout ExternalDataResolver
    ) throws -> (String, TensorView) {
        let name = string(t.name)
        guard !name.isEmpty else {
            throw FormatError(.malformed, file: path, "initializer #\(index) has no name")
        }
        func fail(_ kind: FormatError.Kind, _ message: String) -> FormatError {
            FormatError(kind, file: path, tensor: name, message)
        }

        // Element type.
        let code = t.has_data_type != 0 ? t.data_type : 0
        guard code != 0 else {
            throw fail(.malformed, "data_type is missing (UNDEFINED)")
        }
        guard let dtype = dtype(forONNXDataType: code) else {
            let typeName = dataTypeNames[code].map { "\($0) (\(code))" } ?? "unknown code \(code)"
            throw fail(
                .unsupported,
                "ONNX data type \(typeName) is not supported (expected FLOAT, FLOAT16, BFLOAT16, DOUBLE, INT64, INT32, INT16, INT8, UINT8 or BOOL)")
        }

        // Shape.
        var shape: [Int] = []
        shape.reserveCapacity(t.n_dims)
        for i in 0..<t.n_dims {
            let d = t.dims[i]
            guard d >= 0 else { throw fail(.malformed, "dimension \(i) is negative (\(d))") }
            shape.append(Int(d))
        }
        guard let elements = checkedElementCount(shape), let byteCount = checkedByteCount(shape, dtype) else {
            throw fail(.malformed, "shape \(shape) × \(dtype.rawValue) overflows 64-bit size")
        }
        if t.segment != nil {
            throw fail(.unsupported, "segmented tensors (TensorProto.segment) are not supported")
        }

        let typed: [(String, Int)] = [
            ("float_data", t.n_float_data), ("int32_data", t.n_int32_data), ("string_data", t.n_string_data),
            ("int64_data", t.n_int64_data), ("double_data", t.n_double_data), ("uint64_data", t.n_uint64_data),
        ].filter { $0.1 > 0 }

        // External data.
        let isExternal = (t.has_data_location != 0) && t.data_location == ONNX_SUBSET__TENSOR_PROTO__DATA_LOCATION__EXTERNAL
        if (t.has_data_location != 0) && !isExternal
            && t.data_location != ONNX_SUBSET__TENSOR_PROTO__DATA_LOCATION__DEFAULT
        {
            throw fail(.malformed, "data_location \(t.data_location.rawValue) is neither DEFAULT (0) nor EXTERNAL (1)")
        }
        if isExternal {
            if (t.has_raw_data != 0) || !typed.isEmpty {
                let field = t.has_raw_data != 0 ? "raw_data" : typed[0].0
                throw fail(.malformed, "data_location is EXTERNAL but the tensor also has \(field)")
            }
            var entries: [(String, String)] = []
            for i in 0..<t.n_external_data {
                guard let entry = t.external_data[i]?.pointee else { continue }
                guard let key = text(entry.key), let value = text(entry.value) else {
                    let shown = String(decoding: bytes(entry.key), as: UTF8.self)
                    throw fail(.malformed, "external_data entry '\(shown)' holds a NUL byte or invalid UTF-8; a location must be a plain relative path")
                }
                entries.append((key, value))
            }
            let storage = try external.storage(
                for: name, entries: entries, expectedBytes: byteCount, shape: shape, dtype: dtype)
            return (name, TensorView(dtype: dtype, shape: shape, storage: storage))
        }

        let origin = "\(path)#\(name)"
        if t.has_raw_data != 0 {
            if let other = typed.first {
                throw fail(.malformed, "has both raw_data and \(other.0); a tensor stores its data in one of them")
            }
            guard t.raw_data.len == byteCount else {
                throw fail(
                    .malformed,
                    "raw_data has \(t.raw_data.len) bytes but shape \(shape) × \(dtype.rawValue) needs \(byteCount)")
            }
            let bytes = UnsafeRawBufferPointer(start: t.raw_data.data, count: t.raw_data.len)
            return (name, TensorView(dtype: dtype, shape: shape, storage: TensorStorage(copying: bytes, origin: origin)))
        }

        // Typed fields, per the rules in onnx.proto.
        let expectedField: String
        switch dtype {
        case .float32: expectedField = "float_data"
        case .float64: expectedField = "double_data"
        case .int64: expectedField = "int64_data"
        default: expectedField = "int32_data"
        }
        if let other = typed.first(where: { $0.0 != expectedField }) {
            throw fail(
                .malformed,
                "\(dataTypeNames[code] ?? "") tensor carries \(other.0); expected raw_data or \(expectedField)")
        }
        let count = typed.first?.1 ?? 0
        if count == 0 && elements > 0 {
            throw fail(.malformed, "has no data (no raw_data, \(expectedField) or external data) for shape \(shape)")
        }
        guard count == elements else {
            throw fail(
                .malformed, "\(expectedField) has \(count) values but shape \(shape) has \(elements) elements")
        }
        let storage: TensorStorage
        switch dtype {
        case .float32:
            storage = TensorStorage(
                copying: UnsafeRawBufferPointer(start: t.float_data, count: count * 4), origin: origin)
        case .float64:
            storage = TensorStorage(
                copying: UnsafeRawBufferPointer(start: t.double_data, count: count * 8), origin: origin)
        case .int64:
            storage = TensorStorage(
                copying: UnsafeRawBufferPointer(start: t.int64_data, count: count * 8), origin: origin)
        case .int32:
            storage = TensorStorage(
                copying: UnsafeRawBufferPointer(start: t.int32_data, count: count * 4), origin: origin)
        case .int16, .float16, .bfloat16:
            // 16-bit floats are stored as their bit pattern; accept it written signed or unsigned.
            let range: ClosedRange<Int32> = dtype == .int16 ? -32768...32767 : -32768...65535
            var out = [UInt16](repeating: 0, count: count)
            for i in 0..<count {
                let v = t.int32_data[i]
                guard range.contains(v) else {
                    throw fail(.malformed, "int32_data[\(i)] = \(v) does not fit a \(dtype.rawValue) element")
                }
                out[i] = UInt16(truncatingIfNeeded: v)
            }
            storage = TensorStorage.copying(out, origin: origin)
        case .int8, .uint8, .bool:
            let range: ClosedRange<Int32> = dtype == .int8 ? -128...127 : (dtype == .uint8 ? 0...255 : 0...1)
            var out = [UInt8](repeating: 0, count: count)
            for i in 0..<count {
                let v = t.int32_data[i]
                guard range.contains(v) else {
                    throw fail(.malformed, "int32_data[\(i)] = \(v) does not fit a \(dtype.rawValue) element")
                }
                out[i] = UInt8(truncatingIfNeeded: v)
            }
            storage = TensorStorage.copying(out, origin: origin)
        }
        return (name, TensorView(dtype: dtype, shape: shape, storage: storage))
    }
}
