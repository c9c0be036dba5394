import DLoRALFormats

/// The weights and configs of a `.dlrt`, as fp32 tables per component, ready for the modules.
///
/// Every tensor is checked against its SHA-256 as it is loaded (`DLRTFile.tensor`), so nothing
/// runs on corrupted bytes. fp32 tensors are used in place from the mapping; fp16 are widened
/// when a module converts them; int8 weights are dequantized to fp32 (q · scale) here, so the
/// fp32 engine runs an int8 file with int8 weights and fp32 activations.
public struct RuntimeModel: Sendable {
    public let path: String
    /// Storage scheme of the file's weights: "fp32", "fp16" or "int8".
    public let weights: String
    public let unet: TensorTable
    public let vae: TensorTable
    /// Empty when the file has no CFR (the pipeline then runs without frame alignment).
    public let cfr: TensorTable
    public let configs: [String: JSONValue]
    public let defaultPromptEmbeds: Tensor?

    public init(file: DLRTFile) throws {
        path = file.path
        weights = file.metadata["quantization"]?["weights"]?.stringValue ?? "fp32"
        var tables: [String: TensorTable] = ["unet": TensorTable(), "vae": TensorTable(), "cfr": TensorTable()]
        var prompt: Tensor?
        for entry in file.entries {
            // Check the digest now, dropping the pages hashing touched; the modules copy each
            // tensor once and drop its pages again (`Tensor.init(_:)`), so the file is never
            // resident next to the copies.
            try file.verify(entry.name, releasePages: true)
            let view: TensorView
            if entry.layout == .rowsK32 {
                let values = try file.dequantized(entry.name)
                view = TensorView(dtype: .float32, shape: entry.shape, storage: .copying(values, origin: "\(file.path):\(entry.name)"))
            } else {
                view = try file.tensor(entry.name)
            }
            if entry.name == "prompt_embeds" {
                prompt = Tensor(view)
                continue
            }
            guard let dot = entry.name.firstIndex(of: "."), tables[String(entry.name[..<dot])] != nil else { continue }
            let component = String(entry.name[..<dot])
            tables[component]!.set(String(entry.name[entry.name.index(after: dot)...]), view)
        }
        for (component, table) in tables where table.count == 0 && component != "cfr" {
            throw FormatError(.invalidModel, file: file.path, "has no \(component) tensors; a .dlrt for dloral-verify needs unet, vae and cfr (quantize a folder written by dloral-convert merge)")
        }
        unet = tables["unet"]!
        vae = tables["vae"]!
        cfr = tables["cfr"]!
        var configs: [String: JSONValue] = [:]
        for (key, value) in file.metadata["configs"]?.objectValue ?? [] { configs[key] = value }
        for component in ["unet", "vae"] where configs[component] == nil {
            throw FormatError(.invalidModel, file: file.path, "metadata has no \(component) config")
        }
        self.configs = configs
        defaultPromptEmbeds = prompt
    }
}
