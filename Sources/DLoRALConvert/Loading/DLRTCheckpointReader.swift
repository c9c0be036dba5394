import DLoRALFormats

/// A `.dlrt` runtime file seen by `inspect`: configs, policy and tensor entries from its
/// (digest-checked) metadata; the payload is not read unless asked to verify it.
enum DLRTCheckpointReader {
    static func read(path: String) throws -> LoadedCheckpoint {
        let file = try DLRTFile(path: path)
        var result = LoadedCheckpoint(path: path, format: .dlrt, dialect: .diffusers)
        result.files = [path]
        result.dlrt = file
        if case let .object(configs)? = file.metadata["configs"] {
            for (key, value) in configs {
                if let component = ModelComponent(rawValue: key) { result.configs[component] = value }
            }
        }
        result.notes["version"] = .string("\(file.header.major).\(file.header.minor)")
        result.notes["quantization"] = file.metadata["quantization"] ?? .null
        result.notes["default_prompt_embeds"] = file.metadata["default_prompt_embeds"] ?? .null
        let compressed = file.entries.filter { $0.compression != .none }.count
        result.notes["compressed_tensors"] = .int(compressed)
        return result
    }
}
