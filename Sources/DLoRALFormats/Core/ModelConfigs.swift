/// The model configs a merged folder and a `.dlrt` carry, as types: the diffusers UNet and VAE
/// `config.json` objects and DLoRAL's CFR config. Each type holds its defaults (SD 2.1's for the
/// UNet and VAE, DLoRAL's for the CFR) in one place; the engine's modules take these types,
/// `ModelConfigValidation` checks the same keys strictly, and the merge writes the CFR config
/// from `CFRConfig`.

/// A UNet `config.json` the engine cannot run (unknown block type, inconsistent lists).
public struct UNetConfigError: Error, CustomStringConvertible, Sendable, Equatable {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "UNet config: \(reason)" }
}

/// The numbers of a diffusers `UNet2DConditionModel` config that the engine needs. Absent keys
/// take SD 2.1-base's values; per-block lists are expanded from ints.
public struct UNetConfig: Sendable, Equatable {
    public var inChannels: Int
    public var outChannels: Int
    public var blockOutChannels: [Int]
    /// Resnets per down block (up blocks have one more), one per down block.
    public var layersPerBlock: [Int]
    public var downBlockTypes: [String]
    public var upBlockTypes: [String]
    /// `UNetMidBlock2DCrossAttn`, or nil for no mid block.
    public var midBlockType: String?
    /// Attention heads per down block (diffusers' `num_attention_heads or attention_head_dim`).
    public var attentionHeads: [Int]
    public var crossAttentionDim: Int
    public var normNumGroups: Int
    public var normEps: Float
    public var useLinearProjection: Bool
    /// Transformer blocks per attention, one per down block.
    public var transformerLayersPerBlock: [Int]
    public var flipSinToCos: Bool
    public var freqShift: Float

    public static let crossAttnDown = "CrossAttnDownBlock2D"
    public static let down = "DownBlock2D"
    public static let crossAttnUp = "CrossAttnUpBlock2D"
    public static let up = "UpBlock2D"
    public static let crossAttnMid = "UNetMidBlock2DCrossAttn"

    /// Stable Diffusion 2.1-base's UNet: the values absent keys take (per-block lists only for a
    /// config of its 4 blocks; ints per block for any count). The merge's config inference,
    /// `ModelConfigValidation` and the naming layouts take their defaults from here.
    public static let sd21Base = UNetConfig(
        inChannels: 4, outChannels: 4, blockOutChannels: [320, 640, 1280, 1280], layersPerBlock: [2, 2, 2, 2],
        downBlockTypes: [crossAttnDown, crossAttnDown, crossAttnDown, down], upBlockTypes: [up, crossAttnUp, crossAttnUp, crossAttnUp],
        midBlockType: crossAttnMid, attentionHeads: [5, 10, 20, 20], crossAttentionDim: 1024, normNumGroups: 32, normEps: 1e-5,
        useLinearProjection: true, transformerLayersPerBlock: [1, 1, 1, 1], flipSinToCos: true, freqShift: 0)

    public init(
        inChannels: Int, outChannels: Int, blockOutChannels: [Int], layersPerBlock: [Int], downBlockTypes: [String],
        upBlockTypes: [String], midBlockType: String?, attentionHeads: [Int], crossAttentionDim: Int, normNumGroups: Int,
        normEps: Float, useLinearProjection: Bool, transformerLayersPerBlock: [Int], flipSinToCos: Bool, freqShift: Float
    ) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.blockOutChannels = blockOutChannels
        self.layersPerBlock = layersPerBlock
        self.downBlockTypes = downBlockTypes
        self.upBlockTypes = upBlockTypes
        self.midBlockType = midBlockType
        self.attentionHeads = attentionHeads
        self.crossAttentionDim = crossAttentionDim
        self.normNumGroups = normNumGroups
        self.normEps = normEps
        self.useLinearProjection = useLinearProjection
        self.transformerLayersPerBlock = transformerLayersPerBlock
        self.flipSinToCos = flipSinToCos
        self.freqShift = freqShift
    }

    /// Reads a diffusers `config.json` object.
    /// - Parameter structureOnly: read the block structure only (for naming): missing attention
    ///   heads then leave `attentionHeads` empty instead of failing.
    /// - Throws: `UNetConfigError` for block types other than the SD ones or lists whose lengths
    ///   disagree with `down_block_types`.
    public init(json: JSONValue, structureOnly: Bool = false) throws {
        let d = Self.sd21Base
        func int(_ key: String, _ fallback: Int) throws -> Int {
            guard let value = json[key], value != .null else { return fallback }
            guard let i = value.intValue else { throw UNetConfigError("\(key) is not an integer") }
            return i
        }
        func strings(_ key: String, _ fallback: [String]) throws -> [String] {
            guard let value = json[key], value != .null else { return fallback }
            guard let items = value.arrayValue else { throw UNetConfigError("\(key) is not a list") }
            return try items.map {
                guard let s = $0.stringValue else { throw UNetConfigError("\(key) holds a non-string") }
                return s
            }
        }
        /// An int (repeated per block) or a list of ints of the block count.
        func perBlock(_ key: String, _ fallback: [Int]?, count: Int) throws -> [Int]? {
            guard let value = json[key], value != .null else { return fallback }
            if let i = value.intValue { return Array(repeating: i, count: count) }
            guard let list = value.intArray else {
                throw UNetConfigError("\(key) is neither an integer nor a list of integers")
            }
            guard list.count == count else {
                throw UNetConfigError("\(key) has \(list.count) entries for \(count) down blocks")
            }
            return list
        }

        inChannels = try int("in_channels", d.inChannels)
        outChannels = try int("out_channels", d.outChannels)
        downBlockTypes = try strings("down_block_types", d.downBlockTypes)
        upBlockTypes = try strings("up_block_types", d.upBlockTypes)
        let count = downBlockTypes.count
        guard count > 0, upBlockTypes.count == count else {
            throw UNetConfigError("\(count) down blocks and \(upBlockTypes.count) up blocks")
        }
        for t in downBlockTypes where t != Self.crossAttnDown && t != Self.down {
            throw UNetConfigError("unsupported down block type \(t)")
        }
        for t in upBlockTypes where t != Self.crossAttnUp && t != Self.up {
            throw UNetConfigError("unsupported up block type \(t)")
        }
        if let value = json["mid_block_type"] {
            if value == .null {
                midBlockType = nil
            } else if value.stringValue == Self.crossAttnMid {
                midBlockType = Self.crossAttnMid
            } else {
                throw UNetConfigError("unsupported mid block type \(value.serialized())")
            }
        } else {
            midBlockType = d.midBlockType
        }
        let sd21Channels = d.blockOutChannels
        if let value = json["block_out_channels"], value != .null {
            guard let list = value.intArray else { throw UNetConfigError("block_out_channels is not a list of integers") }
            blockOutChannels = list
        } else {
            guard count == sd21Channels.count else { throw UNetConfigError("block_out_channels missing") }
            blockOutChannels = sd21Channels
        }
        guard blockOutChannels.count == count else {
            throw UNetConfigError("block_out_channels has \(blockOutChannels.count) entries for \(count) down blocks")
        }
        layersPerBlock = try perBlock("layers_per_block", Array(repeating: d.layersPerBlock[0], count: count), count: count)!
        // diffusers: num_attention_heads = num_attention_heads or attention_head_dim.
        let sd21Heads: [Int]? = count == d.attentionHeads.count ? d.attentionHeads : nil
        let heads =
            try perBlock("num_attention_heads", nil, count: count)
            ?? perBlock("attention_head_dim", sd21Heads, count: count)
        guard let heads = heads ?? (structureOnly ? [] : nil) else { throw UNetConfigError("attention_head_dim missing") }
        attentionHeads = heads
        transformerLayersPerBlock =
            try perBlock("transformer_layers_per_block", Array(repeating: d.transformerLayersPerBlock[0], count: count), count: count)!
        if let value = json["reverse_transformer_layers_per_block"], value != .null {
            throw UNetConfigError("reverse_transformer_layers_per_block is not supported")
        }
        crossAttentionDim = try int("cross_attention_dim", d.crossAttentionDim)
        normNumGroups = try int("norm_num_groups", d.normNumGroups)
        normEps = json["norm_eps"]?.doubleValue.map { Float($0) } ?? d.normEps
        useLinearProjection = json["use_linear_projection"]?.boolValue ?? d.useLinearProjection
        flipSinToCos = json["flip_sin_to_cos"]?.boolValue ?? d.flipSinToCos
        freqShift = json["freq_shift"]?.doubleValue.map { Float($0) } ?? d.freqShift
    }

    /// Reads a diffusers `config.json` file.
    public init(path: String) throws {
        try self.init(json: try JSONValue.read(path: path))
    }
}

/// The numbers of a diffusers `AutoencoderKL` config that the engine needs.
public struct VAEConfig: Sendable, Equatable {
    public var inChannels: Int
    public var outChannels: Int
    public var blockOutChannels: [Int]
    public var layersPerBlock: Int
    public var normNumGroups: Int
    public var latentChannels: Int
    public var scalingFactor: Float
    /// GroupNorm epsilon (diffusers hard-codes 1e-6 in the VAE).
    public var eps: Float
    public var useQuantConv: Bool
    public var usePostQuantConv: Bool
    public var midBlockAddAttention: Bool

    /// SD 2.1's VAE, the fallback for absent keys.
    public static let sd21 = VAEConfig(
        inChannels: 3, outChannels: 3, blockOutChannels: [128, 256, 512, 512], layersPerBlock: 2,
        normNumGroups: 32, latentChannels: 4, scalingFactor: 0.18215, eps: 1e-6,
        useQuantConv: true, usePostQuantConv: true, midBlockAddAttention: true)

    public init(
        inChannels: Int, outChannels: Int, blockOutChannels: [Int], layersPerBlock: Int,
        normNumGroups: Int, latentChannels: Int, scalingFactor: Float, eps: Float = 1e-6,
        useQuantConv: Bool = true, usePostQuantConv: Bool = true, midBlockAddAttention: Bool = true
    ) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.blockOutChannels = blockOutChannels
        self.layersPerBlock = layersPerBlock
        self.normNumGroups = normNumGroups
        self.latentChannels = latentChannels
        self.scalingFactor = scalingFactor
        self.eps = eps
        self.useQuantConv = useQuantConv
        self.usePostQuantConv = usePostQuantConv
        self.midBlockAddAttention = midBlockAddAttention
    }

    /// Reads a diffusers `config.json` object; absent keys take the SD 2.1 values.
    public init(json: JSONValue) {
        let d = VAEConfig.sd21
        func bool(_ key: String, _ fallback: Bool) -> Bool { json[key]?.boolValue ?? fallback }
        self.init(
            inChannels: json["in_channels"]?.intValue ?? d.inChannels,
            outChannels: json["out_channels"]?.intValue ?? d.outChannels,
            blockOutChannels: json["block_out_channels"]?.intArray ?? d.blockOutChannels,
            layersPerBlock: json["layers_per_block"]?.intValue ?? d.layersPerBlock,
            normNumGroups: json["norm_num_groups"]?.intValue ?? d.normNumGroups,
            latentChannels: json["latent_channels"]?.intValue ?? d.latentChannels,
            scalingFactor: json["scaling_factor"]?.doubleValue.map { Float($0) } ?? d.scalingFactor,
            eps: d.eps,
            useQuantConv: bool("use_quant_conv", true),
            usePostQuantConv: bool("use_post_quant_conv", true),
            midBlockAddAttention: bool("mid_block_add_attention", true))
    }

    /// Reads a diffusers `config.json` file.
    public init(path: String) throws {
        self.init(json: try JSONValue.read(path: path))
    }
}

/// DLoRAL's CFR config (`cfr/config.json`, written by `dloral-convert merge` from the CFR's
/// weights): what the engine needs to rebuild the cross-frame retrieval. The attention's
/// temperature is a constant of DLoRAL's module, not in the checkpoint.
public struct CFRConfig: Sendable, Equatable {
    public var latentChannels: Int
    public var attentionHeads: Int
    public var attentionHeadDim: Int
    /// The softmax temperature of the cross-frame attention.
    public var attentionTemperature: Double
    public var spynetLevels: Int

    /// SpyNet's basic module (BasicVSR): five 7×7 convs, 8 → 32 → 64 → 32 → 16 → 2 channels.
    public static let spynetChannels = [8, 32, 64, 32, 16, 2]
    /// DLoRAL resizes the LQ frames by 1/8, the VAE's factor, before SpyNet.
    public static let lqDownsample = 8

    /// DLoRAL's CFR: the values absent keys take.
    public static let dloral = CFRConfig(
        latentChannels: 4, attentionHeads: 9, attentionHeadDim: 64, attentionTemperature: 3000, spynetLevels: 6)

    public init(latentChannels: Int, attentionHeads: Int, attentionHeadDim: Int, attentionTemperature: Double, spynetLevels: Int) {
        self.latentChannels = latentChannels
        self.attentionHeads = attentionHeads
        self.attentionHeadDim = attentionHeadDim
        self.attentionTemperature = attentionTemperature
        self.spynetLevels = spynetLevels
    }

    /// Reads a CFR config object; absent keys take DLoRAL's values (`ModelConfigValidation`
    /// checks the values strictly where a file is read).
    public init(json: JSONValue) {
        let d = Self.dloral
        self.init(
            latentChannels: json["latent_channels"]?.intValue ?? d.latentChannels,
            attentionHeads: json["attention_heads"]?.intValue ?? d.attentionHeads,
            attentionHeadDim: json["attention_head_dim"]?.intValue ?? d.attentionHeadDim,
            attentionTemperature: json["attention_temperature"]?.doubleValue ?? d.attentionTemperature,
            spynetLevels: json["spynet_levels"]?.intValue ?? d.spynetLevels)
    }

    /// The `cfr/config.json` object, keys in the order the merge writes them.
    public var json: JSONValue {
        .object([
            ("_class_name", .string("DLoRALCFR")),
            ("latent_channels", .int(latentChannels)),
            ("attention_heads", .int(attentionHeads)),
            ("attention_head_dim", .int(attentionHeadDim)),
            ("attention_temperature", .double(attentionTemperature)),
            ("spynet_levels", .int(spynetLevels)),
            ("spynet_channels", .array(Self.spynetChannels.map { .int($0) })),
            ("lq_downsample", .int(Self.lqDownsample)),
        ])
    }
}
