import DLoRALFormats
#if canImport(Glibc)
import Glibc
#endif

/// What `dloral-convert quantize` is asked to do.
public struct QuantizeOptions: Sendable {
    public var weights: DLRTWeights = .int8
    /// How the engine runs int8 layers; `auto` is calibrated per layer by the caller, which then
    /// passes `layerActivations`.
    public var activations: DLRTActivationPolicy = .fp32
    /// Per-layer choice by full name (`unet.…weight`); wins over `activations` where present
    /// (a layer mapped to nil runs with fp32 activations).
    public var layerActivations: [String: DLRTActivations?] = [:]
    /// For `auto`: what calibration did, recorded as `quantization.calibration` (§4.1).
    public var calibrationRecord: JSONValue?
    public var granularity: DLRTGranularity = .channel
    /// Extra globs (on canonical names, `fnmatch` syntax) of tensors to keep in fp32.
    public var keep: [String] = []
    public var promptEmbeds: String?
    public var compress = false
    /// With int8 weights, quantize the CFR's weights too. Off by default: the CFR is a small
    /// part of the bytes and the time, and int8 there costs frames PSNR (the flow it computes
    /// moves every pixel of the fused latent).
    public var int8CFR = false

    public init() {}

    /// Tensors kept wide whatever the scheme: norms and the timestep embedding MLP (§4).
    public static let defaultKeep = ["*norm*", "*time_embedding*"]
    /// Kept fp32 by default when the weights are int8 (unless `int8CFR`).
    public static let cfrKeep = "cfr.*"

    /// The globs kept wide before the user's: `defaultKeep`, and the CFR for int8 weights.
    public var defaultKeepGlobs: [String] {
        Self.defaultKeep + (weights == .int8 && !int8CFR ? [Self.cfrKeep] : [])
    }

    /// True if `name` stays fp32 under this policy.
    public func keeps(_ name: String) -> Bool {
        (defaultKeepGlobs + keep).contains { fnmatch($0, name, 0) == 0 }
    }

    /// The activation precision recorded for an int8 weight (nil: fp32): the CFR always runs in
    /// fp32, so its weights get none; block scales (`int8_block`) run int8 activations only.
    public func activations(for name: String) -> DLRTActivations? {
        guard weights == .int8, !name.hasPrefix("cfr.") else { return nil }
        guard granularity == .channel else { return activations == .int8 ? .int8 : nil }
        if let chosen = layerActivations[name] { return chosen }
        switch activations {
        case .fp32, .auto: return nil
        case .int8: return .int8
        case .int16: return .int16
        }
    }

    public var schemeName: String {
        switch weights {
        case .int8: return granularity == .channel ? "int8_channel" : "int8_\(granularity.rawValue)"
        case .fp16: return "fp16"
        case .fp32: return "fp32"
        }
    }
}

/// The record of one quantization, printed by `--json`.
public struct QuantizeReport: Sendable {
    public struct Tensor: Sendable {
        public var name: String
        public var dtype: String
        public var scheme: String
        public var bytes: Int
        public var sourceBytes: Int
        public var sqnrDB: Double?
    }

    public var output: String
    public var scheme: String
    public var bytes = 0
    public var sourceBytes = 0
    /// The source tensors' element types (safetensors spellings, sorted), for "of the fp16 source".
    public var sourceDTypes: [String] = []
    /// Stored bytes of tensor data before compression.
    public var rawBytes = 0
    public var compressed = false
    public var tensors: [Tensor] = []
    public var warnings: [String] = []

    /// How the int8 layers' activations run (nil for fp16/fp32 files).
    public struct Activations: Sendable {
        public var policy: String
        public var int16Layers: Int
        public var int8Layers: Int
        public var calibrationPSNR: Double?
        public var targetPSNR: Double?
        public init(policy: String, int16Layers: Int, int8Layers: Int, calibrationPSNR: Double? = nil, targetPSNR: Double? = nil) {
            self.policy = policy
            self.int16Layers = int16Layers
            self.int8Layers = int8Layers
            self.calibrationPSNR = calibrationPSNR
            self.targetPSNR = targetPSNR
        }
    }
    public var activations: Activations?
}
