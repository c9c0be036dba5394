import Foundation
import DLoRALFormats

/// An ONNX export of the UNet: initializers mapped back to canonical module names by the graph.
enum ONNXCheckpointReader {
    static func read(path: String) throws -> LoadedCheckpoint {
        let model = try ONNXModel(path: path)
        var result = LoadedCheckpoint(path: path, format: .onnx, dialect: .onnx)
        result.files = [path] + model.externalDataFiles.map(\.path)
        let mapped = try ONNXCanonicalNames.map(model)
        result.tensors = mapped.tensors
        result.unrecognized = mapped.unmatched.map { (name: $0.0, reason: $0.1) }
        result.notes["opset"] = .int(model.opsetVersion)
        result.notes["producer"] = .string("\(model.producerName) \(model.producerVersion)".trimmingCharacters(in: .whitespaces))
        result.notes["graph_nodes"] = .int(model.nodes.count)
        SafetensorsClassifier.inferConfigs(&result)
        return result
    }
}
