/// Checks of the three model configs a merged folder and a `.dlrt` carry: the diffusers
/// `UNet2DConditionModel` and `AutoencoderKL` `config.json`, and DLoRAL's CFR config.
///
/// Two levels, both throwing `FormatError` (exit 2) naming the config file and the key:
/// - `validate…Config(_:file:)` checks the values alone: a JSON object, the types diffusers
///   reads, positive channels, lists with one entry per block, GroupNorm groups dividing the
///   channels, heads dividing the channels, and upper bounds that no Stable Diffusion sized model
///   comes near (so a config cannot make a later step allocate without limit).
/// - `validate…Config(_:file:against:tensorFile:)` also checks the config against the weights:
///   every tensor the config implies must be present with the implied shape (`conv_in.weight`
///   [block_out_channels[0], in_channels, 3, 3], `layers_per_block` resnets per down block, …),
///   and no block, resnet, attention or transformer block may exist beyond what it implies.
///
/// Absent keys take the values the engine takes (SD 2.1's for the UNet and VAE, DLoRAL's for the
/// CFR: `UNetConfig.sd21Base`, `VAEConfig.sd21`, `CFRConfig.dloral`); an absent key whose default does not fit the
/// weights is reported as such. Only the SD 1.x/2.x structure the engine runs is accepted.
public enum ModelConfigValidation {
    /// Tensor shapes by name, without the component prefix (`conv_in.weight`, not `unet.conv_in.weight`).
    public typealias Shapes = [String: [Int]]

    /// Upper bounds on values; far above SD 2.1 (1280 channels, 2 resnets per block, 4 blocks).
    static let maxChannels = 1 << 16
    static let maxBlocks = 16
    static let maxLayers = 64

    // MARK: - UNet

    /// Checks a diffusers `UNet2DConditionModel` config's values.
    public static func validateUNetConfig(_ json: JSONValue, file: String) throws {
        _ = try UNetSpec(json, file: file)
    }

    /// Checks a UNet config's values and that the UNet weights (`shapes`, read from
    /// `tensorFile`) are exactly what it describes.
    public static func validateUNetConfig(_ json: JSONValue, file: String, against shapes: Shapes, tensorFile: String) throws {
        let spec = try UNetSpec(json, file: file)
        var expected = Expectations(configFile: file, tensorFile: tensorFile)
        spec.expect(&expected)
        try expected.check(shapes, structural: ["down_blocks.", "up_blocks.", "mid_block."])
    }

    // MARK: - VAE

    /// Checks a diffusers `AutoencoderKL` config's values.
    public static func validateVAEConfig(_ json: JSONValue, file: String) throws {
        _ = try VAESpec(json, file: file)
    }

    /// Checks a VAE config's values and the VAE weights against it.
    public static func validateVAEConfig(_ json: JSONValue, file: String, against shapes: Shapes, tensorFile: String) throws {
        let spec = try VAESpec(json, file: file)
        var expected = Expectations(configFile: file, tensorFile: tensorFile)
        spec.expect(&expected)
        try expected.check(shapes, structural: ["encoder.down_blocks.", "decoder.up_blocks.", "encoder.mid_block.", "decoder.mid_block."])
    }

    // MARK: - CFR

    /// Checks DLoRAL's CFR config (`cfr/config.json`) values.
    public static func validateCFRConfig(_ json: JSONValue, file: String) throws {
        _ = try CFRSpec(json, file: file)
    }

    /// Checks a CFR config's values and the CFR weights (`spynet.*`, `cross_attn_module.*`) against it.
    public static func validateCFRConfig(_ json: JSONValue, file: String, against shapes: Shapes, tensorFile: String) throws {
        let spec = try CFRSpec(json, file: file)
        var expected = Expectations(configFile: file, tensorFile: tensorFile)
        spec.expect(&expected)
        try expected.check(shapes, structural: ["spynet.basic_module."])
    }

    /// Dispatches on the component name (`unet`, `vae`, `cfr`); other names are not checked.
    public static func validate(component: String, config: JSONValue, file: String, against shapes: Shapes?, tensorFile: String) throws {
        switch (component, shapes) {
        case ("unet", let shapes?): try validateUNetConfig(config, file: file, against: shapes, tensorFile: tensorFile)
        case ("unet", nil): try validateUNetConfig(config, file: file)
        case ("vae", let shapes?): try validateVAEConfig(config, file: file, against: shapes, tensorFile: tensorFile)
        case ("vae", nil): try validateVAEConfig(config, file: file)
        case ("cfr", let shapes?): try validateCFRConfig(config, file: file, against: shapes, tensorFile: tensorFile)
        case ("cfr", nil): try validateCFRConfig(config, file: file)
        default: break
        }
    }
}

// MARK: - Reading typed values

/// Typed access to a config object; every failure names the file and the key.
struct ConfigReader {
    let json: JSONValue
    let file: String

    init(_ json: JSONValue, file: String, kind: String) throws {
        guard json.objectValue != nil else {
            let what: String
            switch json {
            case .array: what = "a JSON list"
            case .string: what = "a string"
            case .number: what = "a number"
            case .bool: what = "a boolean"
            case .null: what = "null"
            case .object: what = "an object"
            }
            throw FormatError(.malformed, file: file, "is \(what); expected a JSON object (a \(kind) config)")
        }
        self.json = json
        self.file = file
    }

    func error(_ key: String, _ message: String) -> FormatError {
        FormatError(.invalidModel, file: file, "key \"\(key)\" \(message)")
    }

    func shown(_ value: JSONValue) -> String {
        let text = value.serialized()
        return text.count > 60 ? String(text.prefix(57)) + "..." : text
    }

    /// The value, or nil when absent or null (diffusers writes null for "use the default").
    func value(_ key: String) -> JSONValue? {
        guard let value = json[key], value != .null else { return nil }
        return value
    }

    func int(_ key: String, default fallback: Int?, in range: ClosedRange<Int>) throws -> Int {
        guard let value = value(key) else {
            guard let fallback else { throw error(key, "is missing; expected an integer in \(range.lowerBound)...\(range.upperBound)") }
            return fallback
        }
        guard let i = value.intValue, range.contains(i) else {
            throw error(key, "is \(shown(value)); expected an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return i
    }

    func double(_ key: String, default fallback: Double, positive: Bool) throws -> Double {
        guard let value = value(key) else { return fallback }
        guard let d = value.doubleValue, d.isFinite, Float(d).isFinite, !positive || d > 0 else {
            throw error(key, "is \(shown(value)); expected a finite\(positive ? " positive" : "") number")
        }
        return d
    }

    func bool(_ key: String, default fallback: Bool) throws -> Bool {
        guard let value = value(key) else { return fallback }
        guard let b = value.boolValue else { throw error(key, "is \(shown(value)); expected true or false") }
        return b
    }

    func strings(_ key: String, default fallback: [String], allowed: [String]) throws -> [String] {
        guard let value = value(key) else { return fallback }
        guard let items = value.arrayValue, !items.isEmpty, items.count <= ModelConfigValidation.maxBlocks else {
            throw error(key, "is \(shown(value)); expected a list of 1 to \(ModelConfigValidation.maxBlocks) block types")
        }
        return try items.map {
            guard let s = $0.stringValue, allowed.contains(s) else {
                throw error(key, "holds \(shown($0)); expected one of \(allowed.joined(separator: ", ")) (the Stable Diffusion blocks this toolchain runs)")
            }
            return s
        }
    }

    func intList(_ key: String, default fallback: [Int]?, count: Int?, in range: ClosedRange<Int>) throws -> [Int] {
        guard let value = value(key) else {
            guard let fallback else { throw error(key, "is missing; expected a list of integers") }
            return fallback
        }
        guard let list = value.intArray, !list.isEmpty, list.allSatisfy(range.contains) else {
            throw error(key, "is \(shown(value)); expected a list of integers in \(range.lowerBound)...\(range.upperBound)")
        }
        if let count, list.count != count {
            throw error(key, "has \(list.count) entries; expected \(count), one per down block")
        }
        return list
    }

    /// An integer (the same for every block) or a list of one integer per block.
    func perBlock(_ key: String, default fallback: [Int]?, count: Int, in range: ClosedRange<Int>) throws -> [Int]? {
        guard let value = value(key) else { return fallback }
        if value.arrayValue == nil {
            guard let i = value.intValue, range.contains(i) else {
                throw error(key, "is \(shown(value)); expected an integer in \(range.lowerBound)...\(range.upperBound) or a list of \(count) of them")
            }
            return Array(repeating: i, count: count)
        }
        return try intList(key, default: nil, count: count, in: range)
    }

    /// A key the engine does not read must keep the value of the structure it runs.
    func fixed(_ key: String, _ expected: JSONValue) throws {
        guard let value = value(key) else { return }
        guard value == expected || value.doubleValue != nil && value.doubleValue == expected.doubleValue else {
            let implemented = expected == .null ? "null (the key absent)" : expected.stringValue.map { "'\($0)'" } ?? expected.serialized()
            throw error(key, "is \(shown(value)); this engine implements \(implemented) only (the Stable Diffusion 1.x/2.x structure): remove the key or set it so")
        }
    }
}

/// The tensors a config implies, checked against the tensors present.
struct Expectations {
    let configFile: String
    let tensorFile: String
    private(set) var shapes: [(name: String, shapes: [[Int]], because: String)] = []
    private var names = Set<String>()

    init(configFile: String, tensorFile: String) {
        self.configFile = configFile
        self.tensorFile = tensorFile
    }

    mutating func add(_ name: String, _ shape: [Int], _ because: String, or alternative: [Int]? = nil) {
        shapes.append((name, [shape] + (alternative.map { [$0] } ?? []), because))
        names.insert(name)
    }

    /// Weight [out, in, k, k] (or [out, in] for k = 0) and bias [out].
    mutating func layer(_ prefix: String, out: Int, in input: Int, kernel: Int, _ because: String, bias: Bool = true, alternative: [Int]? = nil) {
        add(prefix + ".weight", kernel == 0 ? [out, input] : [out, input, kernel, kernel], because, or: alternative)
        if bias { add(prefix + ".bias", [out], because) }
    }

    mutating func norm(_ prefix: String, _ channels: Int, _ because: String) {
        add(prefix + ".weight", [channels], because)
        add(prefix + ".bias", [channels], because)
    }

    func check(_ present: ModelConfigValidation.Shapes, structural: [String]) throws {
        // Blocks, resnets, attentions, transformer blocks or pyramid levels beyond the config's.
        var modules = Set<String>()
        for name in names {
            let parts = name.split(separator: ".")
            for i in parts.indices where Int(parts[i]) != nil {
                modules.insert(parts[...i].joined(separator: "."))
            }
        }
        for name in present.keys.sorted() where !names.contains(name) && structural.contains(where: { name.hasPrefix($0) }) {
            let parts = name.split(separator: ".")
            for i in parts.indices where Int(parts[i]) != nil {
                let module = parts[...i].joined(separator: ".")
                if !modules.contains(module) {
                    throw FormatError(.invalidModel, file: configFile, tensor: name,
                                      "\(tensorFile) holds \(module), which the config does not have (too few blocks, layers_per_block or levels); the config does not describe these weights")
                }
            }
        }
        for (name, allowed, because) in shapes {
            guard let shape = present[name] else {
                throw FormatError(.invalidModel, file: configFile, tensor: name,
                                  "the config implies this tensor (\(because)) but \(tensorFile) has none; the config does not describe these weights")
            }
            guard allowed.contains(shape) else {
                throw FormatError(.invalidModel, file: configFile, tensor: name,
                                  "the config implies shape \(allowed[0]) (\(because)) but \(tensorFile) holds \(shape); the config does not describe these weights")
            }
        }
    }
}

// MARK: - UNet2DConditionModel

struct UNetSpec {
    var inChannels: Int
    var outChannels: Int
    var channels: [Int]
    var layers: [Int]
    var downTypes: [String]
    var upTypes: [String]
    var mid: Bool
    var heads: [Int]
    var transformerLayers: [Int]
    var crossDim: Int
    var groups: Int
    var linearProjection: Bool
    var timeEmbedDim: Int

    static let crossDown = UNetConfig.crossAttnDown, down = UNetConfig.down
    static let crossUp = UNetConfig.crossAttnUp, up = UNetConfig.up

    init(_ json: JSONValue, file: String) throws {
        let r = try ConfigReader(json, file: file, kind: "diffusers UNet2DConditionModel")
        let maxC = ModelConfigValidation.maxChannels, maxL = ModelConfigValidation.maxLayers
        let d = UNetConfig.sd21Base
        try r.fixed("_class_name", .string("UNet2DConditionModel"))
        inChannels = try r.int("in_channels", default: d.inChannels, in: 1...1024)
        outChannels = try r.int("out_channels", default: d.outChannels, in: 1...1024)
        downTypes = try r.strings("down_block_types", default: d.downBlockTypes, allowed: [Self.crossDown, Self.down])
        upTypes = try r.strings("up_block_types", default: d.upBlockTypes, allowed: [Self.crossUp, Self.up])
        let count = downTypes.count
        guard upTypes.count == count else {
            throw r.error("up_block_types", "has \(upTypes.count) entries for \(count) down_block_types; expected as many")
        }
        if let value = json["mid_block_type"] {
            guard value == .null || value.stringValue == "UNetMidBlock2DCrossAttn" else {
                throw r.error("mid_block_type", "is \(r.shown(value)); expected \"UNetMidBlock2DCrossAttn\" or null")
            }
            mid = value != .null
        } else {
            mid = true
        }
        let sd21Blocks = count == d.blockOutChannels.count
        channels = try r.intList("block_out_channels", default: sd21Blocks ? d.blockOutChannels : nil, count: count, in: 1...maxC)
        layers = try r.perBlock("layers_per_block", default: Array(repeating: d.layersPerBlock[0], count: count), count: count, in: 1...maxL)!
        // diffusers: num_attention_heads = num_attention_heads or attention_head_dim (the latter
        // is, for SD, the number of heads).
        let headsKey = r.value("num_attention_heads") != nil ? "num_attention_heads" : "attention_head_dim"
        guard let heads = try r.perBlock(headsKey, default: sd21Blocks ? d.attentionHeads : nil, count: count, in: 1...maxC) else {
            throw r.error("attention_head_dim", "is missing; expected the number of attention heads per block")
        }
        self.heads = heads
        transformerLayers = try r.perBlock("transformer_layers_per_block", default: Array(repeating: d.transformerLayersPerBlock[0], count: count), count: count, in: 1...maxL)!
        if r.value("reverse_transformer_layers_per_block") != nil {
            throw r.error("reverse_transformer_layers_per_block", "is set; only null is supported")
        }
        crossDim = try r.int("cross_attention_dim", default: d.crossAttentionDim, in: 1...maxC)
        groups = try r.int("norm_num_groups", default: d.normNumGroups, in: 1...maxC)
        _ = try r.double("norm_eps", default: 1e-5, positive: true)
        _ = try r.double("freq_shift", default: 0, positive: false)
        _ = try r.bool("flip_sin_to_cos", default: true)
        linearProjection = try r.bool("use_linear_projection", default: true)
        // Keys diffusers reads whose other values change the computation the engine does not
        // perform; the engine runs SiLU resnets, unscaled outputs, no extra embeddings.
        try r.fixed("center_input_sample", .bool(false))
        try r.fixed("act_fn", .string("silu"))
        try r.fixed("downsample_padding", .int(1))
        try r.fixed("mid_block_scale_factor", .int(1))
        try r.fixed("resnet_out_scale_factor", .int(1))
        try r.fixed("resnet_skip_time_act", .bool(false))
        try r.fixed("class_embeddings_concat", .bool(false))
        try r.fixed("mid_block_only_cross_attention", .bool(false))
        for key in ["time_embedding_act_fn", "timestep_post_act", "encoder_hid_dim_type", "cross_attention_norm",
                    "addition_time_embed_dim", "projection_class_embeddings_input_dim"] {
            try r.fixed(key, .null)
        }
        // Precision and training-only keys: the engine computes attention in fp32 and runs
        // inference, so any well-typed value gives the same result.
        _ = try r.bool("upcast_attention", default: false)
        _ = try r.double("dropout", default: 0, positive: false)
        try r.fixed("conv_in_kernel", .int(3))
        try r.fixed("conv_out_kernel", .int(3))
        try r.fixed("time_embedding_type", .string("positional"))
        try r.fixed("resnet_time_scale_shift", .string("default"))
        try r.fixed("attention_type", .string("default"))
        try r.fixed("only_cross_attention", .bool(false))
        try r.fixed("dual_cross_attention", .bool(false))
        for key in ["class_embed_type", "addition_embed_type", "encoder_hid_dim", "time_cond_proj_dim", "num_class_embeds"] where r.value(key) != nil {
            throw r.error(key, "is \(r.shown(r.value(key)!)); this engine implements null (the key absent) only (the Stable Diffusion 1.x/2.x structure): remove the key")
        }
        timeEmbedDim = try r.int("time_embedding_dim", default: channels[0] * 4, in: 1...(maxC * 4))

        for (i, c) in channels.enumerated() where c % groups != 0 {
            throw r.error("norm_num_groups", "is \(groups), which does not divide block_out_channels[\(i)] = \(c); GroupNorm needs whole groups")
        }
        for i in 0..<count where downTypes[i] == Self.crossDown || upTypes[count - 1 - i] == Self.crossUp || (mid && i == count - 1) {
            guard channels[i] % heads[i] == 0 else {
                throw r.error(headsKey, "gives \(heads[i]) heads to block \(i) of \(channels[i]) channels; the heads must divide the channels")
            }
        }
    }

    func expect(_ e: inout Expectations) {
        let count = channels.count, c0 = channels[0], temb = timeEmbedDim
        e.layer("conv_in", out: c0, in: inChannels, kernel: 3, "block_out_channels[0] = \(c0), in_channels = \(inChannels)")
        e.layer("time_embedding.linear_1", out: temb, in: c0, kernel: 0, "time embedding 4 × block_out_channels[0] = \(temb)")
        e.layer("time_embedding.linear_2", out: temb, in: temb, kernel: 0, "time embedding 4 × block_out_channels[0] = \(temb)")

        func resnet(_ p: String, _ input: Int, _ out: Int, _ why: String) {
            e.norm(p + ".norm1", input, why)
            e.layer(p + ".conv1", out: out, in: input, kernel: 3, why)
            e.layer(p + ".time_emb_proj", out: out, in: temb, kernel: 0, why)
            e.norm(p + ".norm2", out, why)
            e.layer(p + ".conv2", out: out, in: out, kernel: 3, why)
            if input != out { e.layer(p + ".conv_shortcut", out: out, in: input, kernel: 1, why) }
        }
        func transformer(_ p: String, _ c: Int, _ depth: Int, _ why: String) {
            e.norm(p + ".norm", c, why)
            let projection: [Int] = linearProjection ? [c, c] : [c, c, 1, 1]
            e.add(p + ".proj_in.weight", projection, why + ", use_linear_projection = \(linearProjection)")
            e.add(p + ".proj_in.bias", [c], why)
            for k in 0..<depth {
                let b = "\(p).transformer_blocks.\(k)"
                for n in ["norm1", "norm2", "norm3"] { e.norm("\(b).\(n)", c, why) }
                for a in ["attn1", "attn2"] {
                    let context = a == "attn2" ? crossDim : c
                    let whyA = a == "attn2" ? why + ", cross_attention_dim = \(crossDim)" : why
                    e.layer("\(b).\(a).to_q", out: c, in: c, kernel: 0, whyA, bias: false)
                    e.layer("\(b).\(a).to_k", out: c, in: context, kernel: 0, whyA, bias: false)
                    e.layer("\(b).\(a).to_v", out: c, in: context, kernel: 0, whyA, bias: false)
                    e.layer("\(b).\(a).to_out.0", out: c, in: c, kernel: 0, whyA)
                }
                e.layer("\(b).ff.net.0.proj", out: 8 * c, in: c, kernel: 0, why + " (GEGLU)")
                e.layer("\(b).ff.net.2", out: c, in: 4 * c, kernel: 0, why)
            }
            e.add(p + ".proj_out.weight", projection, why + ", use_linear_projection = \(linearProjection)")
            e.add(p + ".proj_out.bias", [c], why)
        }

        // The skip connections, as diffusers stacks them.
        var skips = [c0]
        var h = c0
        for i in 0..<count {
            let out = channels[i]
            let why = "down_blocks.\(i): block_out_channels[\(i)] = \(out), layers_per_block = \(layers[i])"
            for j in 0..<layers[i] {
                resnet("down_blocks.\(i).resnets.\(j)", h, out, why)
                h = out
                if downTypes[i] == Self.crossDown {
                    transformer("down_blocks.\(i).attentions.\(j)", out, transformerLayers[i], why + ", \(heads[i]) heads")
                }
                skips.append(h)
            }
            if i != count - 1 {
                e.layer("down_blocks.\(i).downsamplers.0.conv", out: out, in: out, kernel: 3, why)
                skips.append(h)
            }
        }
        if mid {
            let why = "mid_block: block_out_channels[\(count - 1)] = \(h)"
            resnet("mid_block.resnets.0", h, h, why)
            transformer("mid_block.attentions.0", h, transformerLayers[count - 1], why)
            resnet("mid_block.resnets.1", h, h, why)
        }
        for i in 0..<count {
            let source = count - 1 - i
            let out = channels[source]
            let n = layers[source] + 1
            let why = "up_blocks.\(i): block_out_channels[\(source)] = \(out), layers_per_block + 1 = \(n) resnets"
            for j in 0..<n {
                let skip = skips.popLast() ?? 0
                resnet("up_blocks.\(i).resnets.\(j)", h + skip, out, why)
                h = out
                if upTypes[i] == Self.crossUp {
                    transformer("up_blocks.\(i).attentions.\(j)", out, transformerLayers[source], why)
                }
            }
            if i != count - 1 {
                e.layer("up_blocks.\(i).upsamplers.0.conv", out: out, in: out, kernel: 3, why)
            }
        }
        e.norm("conv_norm_out", c0, "block_out_channels[0] = \(c0)")
        e.layer("conv_out", out: outChannels, in: c0, kernel: 3, "out_channels = \(outChannels), block_out_channels[0] = \(c0)")
    }
}

// MARK: - AutoencoderKL

struct VAESpec {
    var inChannels: Int
    var outChannels: Int
    var channels: [Int]
    var layers: Int
    var latent: Int
    var quantConv: Bool
    var postQuantConv: Bool
    var midAttention: Bool

    init(_ json: JSONValue, file: String) throws {
        let r = try ConfigReader(json, file: file, kind: "diffusers AutoencoderKL")
        let maxC = ModelConfigValidation.maxChannels
        let d = VAEConfig.sd21
        try r.fixed("_class_name", .string("AutoencoderKL"))
        inChannels = try r.int("in_channels", default: d.inChannels, in: 1...1024)
        outChannels = try r.int("out_channels", default: d.outChannels, in: 1...1024)
        channels = try r.intList("block_out_channels", default: d.blockOutChannels, count: nil, in: 1...maxC)
        guard channels.count <= ModelConfigValidation.maxBlocks else {
            throw r.error("block_out_channels", "has \(channels.count) entries; expected at most \(ModelConfigValidation.maxBlocks)")
        }
        let count = channels.count
        let down = try r.strings("down_block_types", default: Array(repeating: "DownEncoderBlock2D", count: count), allowed: ["DownEncoderBlock2D"])
        let up = try r.strings("up_block_types", default: Array(repeating: "UpDecoderBlock2D", count: count), allowed: ["UpDecoderBlock2D"])
        guard down.count == count else { throw r.error("down_block_types", "has \(down.count) entries for \(count) block_out_channels; expected as many") }
        guard up.count == count else { throw r.error("up_block_types", "has \(up.count) entries for \(count) block_out_channels; expected as many") }
        layers = try r.int("layers_per_block", default: d.layersPerBlock, in: 1...ModelConfigValidation.maxLayers)
        let groups = try r.int("norm_num_groups", default: d.normNumGroups, in: 1...maxC)
        latent = try r.int("latent_channels", default: d.latentChannels, in: 1...1024)
        _ = try r.double("scaling_factor", default: Double(d.scalingFactor), positive: true)
        quantConv = try r.bool("use_quant_conv", default: true)
        postQuantConv = try r.bool("use_post_quant_conv", default: true)
        midAttention = try r.bool("mid_block_add_attention", default: true)
        // SD 1.x/2.x latents: SiLU resnets, latents scaled by scaling_factor alone (SD3's and
        // Flux's shift_factor, SDXL's latents_mean / latents_std are not applied by the engine).
        try r.fixed("act_fn", .string("silu"))
        for key in ["shift_factor", "latents_mean", "latents_std"] {
            try r.fixed(key, .null)
        }
        _ = try r.bool("force_upcast", default: true)
        for (i, c) in channels.enumerated() where c % groups != 0 {
            throw r.error("norm_num_groups", "is \(groups), which does not divide block_out_channels[\(i)] = \(c); GroupNorm needs whole groups")
        }
    }

    func expect(_ e: inout Expectations) {
        let count = channels.count, c0 = channels[0], last = channels[count - 1]
        func resnet(_ p: String, _ input: Int, _ out: Int, _ why: String) {
            e.norm(p + ".norm1", input, why)
            e.layer(p + ".conv1", out: out, in: input, kernel: 3, why)
            e.norm(p + ".norm2", out, why)
            e.layer(p + ".conv2", out: out, in: out, kernel: 3, why)
            if input != out { e.layer(p + ".conv_shortcut", out: out, in: input, kernel: 1, why) }
        }
        func midBlock(_ p: String) {
            let why = "\(p): block_out_channels[\(count - 1)] = \(last)"
            resnet(p + ".resnets.0", last, last, why)
            if midAttention {
                e.norm(p + ".attentions.0.group_norm", last, why)
                for n in ["to_q", "to_k", "to_v", "to_out.0"] {
                    e.layer("\(p).attentions.0.\(n)", out: last, in: last, kernel: 0, why, alternative: [last, last, 1, 1])
                }
            }
            resnet(p + ".resnets.1", last, last, why)
        }
        e.layer("encoder.conv_in", out: c0, in: inChannels, kernel: 3, "block_out_channels[0] = \(c0), in_channels = \(inChannels)")
        var h = c0
        for i in 0..<count {
            let why = "encoder.down_blocks.\(i): block_out_channels[\(i)] = \(channels[i]), layers_per_block = \(layers)"
            for j in 0..<layers {
                resnet("encoder.down_blocks.\(i).resnets.\(j)", h, channels[i], why)
                h = channels[i]
            }
            if i != count - 1 { e.layer("encoder.down_blocks.\(i).downsamplers.0.conv", out: h, in: h, kernel: 3, why) }
        }
        midBlock("encoder.mid_block")
        e.norm("encoder.conv_norm_out", last, "block_out_channels[\(count - 1)] = \(last)")
        e.layer("encoder.conv_out", out: 2 * latent, in: last, kernel: 3, "2 × latent_channels = \(2 * latent)")
        if quantConv { e.layer("quant_conv", out: 2 * latent, in: 2 * latent, kernel: 1, "2 × latent_channels = \(2 * latent)") }
        if postQuantConv { e.layer("post_quant_conv", out: latent, in: latent, kernel: 1, "latent_channels = \(latent)") }
        e.layer("decoder.conv_in", out: last, in: latent, kernel: 3, "latent_channels = \(latent), block_out_channels[\(count - 1)] = \(last)")
        midBlock("decoder.mid_block")
        h = last
        for i in 0..<count {
            let out = channels[count - 1 - i]
            let why = "decoder.up_blocks.\(i): block_out_channels[\(count - 1 - i)] = \(out), layers_per_block + 1 = \(layers + 1) resnets"
            for j in 0...layers {
                resnet("decoder.up_blocks.\(i).resnets.\(j)", h, out, why)
                h = out
            }
            if i != count - 1 { e.layer("decoder.up_blocks.\(i).upsamplers.0.conv", out: out, in: out, kernel: 3, why) }
        }
        e.norm("decoder.conv_norm_out", c0, "block_out_channels[0] = \(c0)")
        e.layer("decoder.conv_out", out: outChannels, in: c0, kernel: 3, "out_channels = \(outChannels), block_out_channels[0] = \(c0)")
    }
}

// MARK: - DLoRAL CFR

struct CFRSpec {
    var latent: Int
    var heads: Int
    var headDim: Int
    var levels: Int

    static let spynetChannels = CFRConfig.spynetChannels
    static let lqDownsample = CFRConfig.lqDownsample

    init(_ json: JSONValue, file: String) throws {
        let r = try ConfigReader(json, file: file, kind: "DLoRAL CFR")
        try r.fixed("_class_name", .string("DLoRALCFR"))
        latent = try r.int("latent_channels", default: nil, in: 1...1024)
        heads = try r.int("attention_heads", default: nil, in: 1...4096)
        headDim = try r.int("attention_head_dim", default: nil, in: 1...4096)
        _ = try r.double("attention_temperature", default: CFRConfig.dloral.attentionTemperature, positive: true)
        // Each level halves the LQ frame; 16 levels already need frames of 2^16 × 8 pixels.
        levels = try r.int("spynet_levels", default: nil, in: 1...16)
        if let value = r.value("spynet_channels"), value.intArray != Self.spynetChannels {
            throw r.error("spynet_channels", "is \(r.shown(value)); expected \(Self.spynetChannels) (SpyNet's basic module)")
        }
        let lq = try r.int("lq_downsample", default: Self.lqDownsample, in: 1...1024)
        guard lq == Self.lqDownsample else {
            throw r.error("lq_downsample", "is \(lq); expected \(Self.lqDownsample) (DLoRAL resizes LQ frames by the VAE's factor 1/8)")
        }
    }

    func expect(_ e: inout Expectations) {
        let c = Self.spynetChannels
        for level in 0..<levels {
            for k in 0..<(c.count - 1) {
                e.layer("spynet.basic_module.\(level).basic_module.\(k).conv", out: c[k + 1], in: c[k], kernel: 7,
                        "spynet_levels = \(levels), SpyNet basic module \(c)")
            }
        }
        e.add("spynet.mean", [1, 3, 1, 1], "SpyNet's ImageNet mean")
        e.add("spynet.std", [1, 3, 1, 1], "SpyNet's ImageNet std")
        let inner = heads * headDim
        let why = "attention_heads × attention_head_dim = \(heads) × \(headDim), latent_channels = \(latent)"
        for n in ["query_conv", "key_conv", "value_conv"] {
            e.layer("cross_attn_module.\(n)", out: inner, in: latent, kernel: 1, why)
        }
        e.layer("cross_attn_module.proj_out", out: latent, in: inner, kernel: 1, why)
        e.layer("cross_attn_module.threshold_fc", out: 1, in: headDim, kernel: 0, "attention_head_dim = \(headDim)")
    }
}
