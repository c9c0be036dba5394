import DLoRALFormats

/// What `dloral-convert merge` is asked to do.
public struct MergeOptions: Sendable {
    /// DLoRAL's two inference settings (docs/convert.md, `dloral-convert merge`).
    public enum Stage: String, Sendable, CaseIterable {
        /// All six adapters at weight 1.0 (the released setting).
        case full
        /// Only the three consistency (C-LoRA) adapters.
        case consistency
    }

    public var stage: Stage = .full
    /// Per-adapter weight overrides, by adapter name.
    public var adapterWeights: [String: Double] = [:]
    /// Output dtype of floating-point tensors.
    public var dtype: DType = .float32
    /// Warn instead of failing when a LoRA module has no base weight.
    public var allowUnmatched = false
    /// Replace an existing output folder.
    public var overwrite = false
    /// `--config` files: diffusers `config.json` (UNet or VAE, by `_class_name`) or an LDM
    /// `.yaml`, used instead of the base's own or inferred configs.
    public var configPaths: [String] = []

    public init() {}

    /// The CLI spelling of an output dtype (fp32, fp16, bf16).
    public static func spelling(_ dtype: DType) -> String {
        switch dtype {
        case .float16: return "fp16"
        case .bfloat16: return "bf16"
        case .float32: return "fp32"
        default: return dtype.rawValue
        }
    }
}

/// The record of one merge, printed by `--json` and stored in `dloral.json`.
public struct MergeReport: Sendable {
    public struct AdapterUse: Sendable {
        public var name: String
        public var weight: Double
        /// weight × alpha / rank (the most common one when modules differ).
        public var scale: Double
        public var alpha: Double
        public var rank: Int
        public var modules: Int
    }

    public struct InputFile: Sendable {
        public var path: String
        public var bytes: Int
        public var sha256: String
    }

    public var output: String
    public var stage: String
    public var dtype: String
    public var adapters: [AdapterUse] = []
    public var mergedModules = 0
    public var tensorsWritten = 0
    public var bytesWritten = 0
    /// Tensors read but not written (unused CFR parts, text encoder, …), with the reason.
    public var dropped: [(name: String, reason: String)] = []
    /// Tensors where the LoRA checkpoint's value replaced the base model's.
    public var overridden: [String] = []
    /// LoRA modules that found no base weight (only with --allow-unmatched).
    public var unmatched: [String] = []
    public var warnings: [String] = []
    public var inputs: [InputFile] = []
}
