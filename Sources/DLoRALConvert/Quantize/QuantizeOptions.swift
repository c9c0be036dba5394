import DLoRALFormats
#if canImport(Glibc)
import Glibc
#endif

/// What `dloral-convert quantize` is asked to do.
public struct QuantizeOptions: Sendable {
    public enum Weights: String, Sendable, CaseIterable {
        case int8, fp16, fp32
    }

    public enum Granularity: String, Sendable, CaseIterable {
        case channel, block32, block64
        /// Elements per scale along K (0: one scale per output channel).
        public var block: Int {
            switch self {
            case .channel: return 0
            case .block32: return 32
            case .block64: return 64
            }
        }
    }

    public var weights: Weights = .int8
    public var granularity: Granularity = .channel
    /// Extra globs (on canonical names, `fnmatch` syntax) of tensors to keep in fp32.
    public var keep: [String] = []
    public var promptEmbeds: String?
    public var compress = false

    public init() {}

    /// Tensors kept wide whatever the scheme: norms and the timestep embedding MLP (§4).
    public static let defaultKeep = ["*norm*", "*time_embedding*"]

    /// True if `name` stays fp32 under this policy.
    public func keeps(_ name: String) -> Bool {
        (Self.defaultKeep + keep).contains { fnmatch($0, name, 0) == 0 }
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
    /// Stored bytes of tensor data before compression.
    public var rawBytes = 0
    public var compressed = false
    public var tensors: [Tensor] = []
    public var warnings: [String] = []
}
