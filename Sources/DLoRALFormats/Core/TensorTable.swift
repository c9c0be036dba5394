import Collections

/// Named tensors in a stable order, with the metadata that came with them.
public struct TensorTable: Sendable {
    public private(set) var tensors: OrderedDictionary<String, TensorView> = [:]
    /// String metadata (safetensors `__metadata__`, ONNX metadata_props, …).
    public var metadata: OrderedDictionary<String, String> = [:]

    public init() {}

    public var names: [String] { Array(tensors.keys) }
    public var count: Int { tensors.count }

    public subscript(name: String) -> TensorView? { tensors[name] }

    /// Adds a tensor; a second tensor under the same name is an error naming `file`.
    public mutating func insert(_ name: String, _ view: TensorView, file: String) throws {
        guard tensors[name] == nil else {
            throw FormatError(.malformed, file: file, tensor: name, "the name appears twice")
        }
        tensors[name] = view
    }

    /// Replaces or adds without the duplicate check (for renaming passes that have checked).
    public mutating func set(_ name: String, _ view: TensorView) { tensors[name] = view }

    public mutating func remove(_ name: String) { tensors.removeValue(forKey: name) }

    public var totalBytes: Int { tensors.values.reduce(0) { $0 + $1.byteCount } }
}
