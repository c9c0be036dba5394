import DLoRALFormats

/// The weights and configs of a `.dlrt`, as fp32 tables per component, ready for the modules.
///
/// Every tensor is checked against its SHA-256 as it is loaded (`DLRTFile.tensor`), so nothing
/// runs on corrupted bytes. fp32 and fp16 conv / linear weights are used in place from the
/// mapping (`FloatWeight`; fp16 widened as the GEMM packs it); small tensors (biases, norms, the
/// CFR) are copied to fp32. int8 weights whose entry names an activation precision (1.1) run
/// on the integer path, their int8 rows used in place; other int8 weights are dequantized to fp32
/// (q · scale) when a module loads them, and run with fp32 activations.
public struct RuntimeModel: Sendable {
    public let path: String
    /// Storage scheme of the file's weights.
    public let weights: DLRTWeights
    /// For int8 files, the scales' granularity (nil otherwise).
    public let int8Granularity: DLRTGranularity?
    public let unet: TensorTable
    public let vae: TensorTable
    /// Empty when the file has no CFR (the pipeline then runs without frame alignment).
    public let cfr: TensorTable
    public let configs: [String: JSONValue]
    public let defaultPromptEmbeds: Tensor?

    /// Layers that run on the integer path, by full name (`unet.…weight`), with their precision.
    public let integerLayers: [String: DLRTActivations]
    /// For `--activations auto` files: the frames PSNR target calibration reached for.
    public let calibrationTarget: Double?

    /// The precisions the model's layers run their activations at, as a whole.
    public enum ActivationMix: String, Sendable {
        /// No integer layers.
        case fp32
        /// Every integer layer at int8 (W8A8) or every one at int16 (W8A16).
        case int8, int16
        /// Some at int8, some at int16 (`quantize --activations auto`).
        case mixed
    }

    public var activations: ActivationMix {
        let kinds = Set(integerLayers.values)
        if kinds.isEmpty { return .fp32 }
        if kinds.count == 2 { return .mixed }
        return kinds.first! == .int8 ? .int8 : .int16
    }

    /// An fp32 model from tables already in memory or mapped (a merged folder read by the
    /// convert tools): the in-process fp32 reference, e.g. for calibration.
    public init(path: String, unet: TensorTable, vae: TensorTable, cfr: TensorTable, configs: [String: JSONValue]) throws {
        for (component, table) in [("unet", unet), ("vae", vae)] where table.count == 0 {
            throw FormatError(.invalidModel, file: path, "has no \(component) tensors")
        }
        for component in ["unet", "vae"] where configs[component] == nil {
            throw FormatError(.invalidModel, file: path, "has no \(component) config")
        }
        _ = Allocator.tuned
        self.path = path
        weights = .fp32
        int8Granularity = nil
        self.unet = unet
        self.vae = vae
        self.cfr = cfr
        self.configs = configs
        defaultPromptEmbeds = nil
        integerLayers = [:]
        calibrationTarget = nil
    }

    /// - Parameter activations: overrides the file's per-layer activation precision (calibration
    ///   in `dloral-convert quantize`): called with each int8 `int8_channel` UNet/VAE weight's full
    ///   name and the file's choice, returns the precision to run it at (nil: fp32 activations).
    public init(
        file: DLRTFile,
        activations: ((String, DLRTActivations?) -> DLRTActivations?)? = nil
    ) throws {
        _ = Allocator.tuned
        path = file.path
        // The reader checked both against their enums (DLRTValidation).
        weights = file.metadata["quantization"]?["weights"]?.stringValue.flatMap(DLRTWeights.init(rawValue:)) ?? .fp32
        int8Granularity = weights == .int8
            ? file.metadata["quantization"]?["int8_granularity"]?.stringValue.flatMap(DLRTGranularity.init(rawValue:)) ?? .channel : nil
        var tables: [String: TensorTable] = ["unet": TensorTable(), "vae": TensorTable(), "cfr": TensorTable()]
        var prompt: Tensor?
        var integer: [String: DLRTActivations] = [:]
        // Every digest first, on all cores, dropping the pages hashing touched: the forward pass
        // reads the weights from the mapping again, so the file is never resident twice.
        try file.verifyAll()
        for entry in file.entries {
            let component = entry.name.firstIndex(of: ".").map { String(entry.name[..<$0]) } ?? ""
            let view: TensorView
            if entry.layout == .rowsK32 {
                if var rows = try file.int8RowsView(entry.name) {
                    var precision = entry.activations
                    // Calibration chooses among int8_channel layers; block scales keep the file's.
                    if let activations, rows.int8Rows?.block == 0 { precision = activations(entry.name, precision) }
                    // The CFR always runs in fp32 (its SpyNet and attention take fp32 weights).
                    if component == "cfr" { precision = nil }
                    rows.int8Rows?.activations = precision
                    if let precision { integer[entry.name] = precision }
                    view = rows
                } else {
                    let values = try file.dequantized(entry.name)
                    view = TensorView(dtype: .float32, shape: entry.shape, storage: .copying(values, origin: "\(file.path):\(entry.name)"))
                }
            } else {
                view = try file.tensor(entry.name)
            }
            if entry.name == "prompt_embeds" {
                prompt = Tensor(view)
                continue
            }
            guard tables[component] != nil else { continue }
            tables[component]!.set(String(entry.name.dropFirst(component.count + 1)), view)
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
        integerLayers = integer
        calibrationTarget = activations == nil ? file.metadata["quantization"]?["calibration"]?["target_psnr_db"]?.doubleValue : nil
    }
}
