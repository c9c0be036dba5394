extension DLRTFile {
    /// The configs in the metadata must describe the tensors (Formats/dlrt.md: `configs` holds
    /// the UNet, VAE and CFR configs the engine builds the model from), so that a forged or
    /// buggy file fails when opened, naming the key, rather than allocating or crashing later.
    /// Components whose tensors use a scheme this build does not read are checked by value only.
    static func validateConfigs(_ metadata: JSONValue, entries: [DLRTTensorEntry], unsupported: [String: String], againstTensors: Bool = true, file: String) throws {
        let configs = metadata["configs"]
        for component in ["unet", "vae", "cfr"] {
            let prefix = component + "."
            var shapes: ModelConfigValidation.Shapes = [:]
            for entry in entries where entry.name.hasPrefix(prefix) {
                shapes[String(entry.name.dropFirst(prefix.count))] = entry.shape
            }
            let complete = !unsupported.keys.contains { $0.hasPrefix(prefix) }
            guard let config = configs?[component] else {
                guard shapes.isEmpty && complete else {
                    throw FormatError(.malformed, file: file, "metadata configs has no \"\(component)\" config for the \(component) tensors")
                }
                continue
            }
            try ModelConfigValidation.validate(
                component: component, config: config, file: "\(file) (metadata configs.\(component))",
                against: againstTensors && complete && !shapes.isEmpty ? shapes : nil, tensorFile: file)
        }
    }
}
