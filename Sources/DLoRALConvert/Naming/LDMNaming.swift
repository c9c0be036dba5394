import DLoRALFormats

// Original LDM / CompVis single-file checkpoint naming (Stable Diffusion 1.x/2.x) to diffusers
// naming. The facts follow diffusers' own converter (`convert_ldm_unet_checkpoint`,
// `convert_ldm_vae_checkpoint` in diffusers/loaders/single_file_utils.py); the tests compare
// against pairs that converter produced (Tests/Fixtures/naming/ldm_*.json).

// MARK: - Layouts

/// What the LDM → diffusers UNet map needs to know about the model: how the flat
/// `input_blocks.N` / `output_blocks.N` lists divide into diffusers blocks, and which blocks carry
/// attention. Channel counts and the like are carried along when known (inferred or from a config)
/// but do not affect naming.
public struct UNetLayout: Sendable, Equatable {
    /// ResNet layers per down block (an up block has one more).
    public var layersPerBlock: [Int]
    /// Per down block, in diffusers order: true for CrossAttnDownBlock2D-style blocks.
    public var downBlockHasAttention: [Bool]
    /// Per up block, in diffusers order (deepest first): true for CrossAttnUpBlock2D-style blocks.
    public var upBlockHasAttention: [Bool]
    /// Output channels per down block, when known.
    public var blockOutChannels: [Int]?
    public var inChannels: Int?
    public var outChannels: Int?
    public var crossAttentionDim: Int?
    public var useLinearProjection: Bool?

    public var blockCount: Int { layersPerBlock.count }

    /// All arrays must have one entry per block and at least one block.
    public init(
        layersPerBlock: [Int], downBlockHasAttention: [Bool], upBlockHasAttention: [Bool],
        blockOutChannels: [Int]? = nil
    ) {
        precondition(!layersPerBlock.isEmpty, "a UNet has at least one block")
        precondition(
            downBlockHasAttention.count == layersPerBlock.count
                && upBlockHasAttention.count == layersPerBlock.count
                && (blockOutChannels?.count ?? layersPerBlock.count) == layersPerBlock.count,
            "one entry per block")
        self.layersPerBlock = layersPerBlock
        self.downBlockHasAttention = downBlockHasAttention
        self.upBlockHasAttention = upBlockHasAttention
        self.blockOutChannels = blockOutChannels
    }

    /// The layout of a UNet config (block types give the attention; channels and the like are
    /// carried along).
    public init(config: UNetConfig) {
        self.init(
            layersPerBlock: config.layersPerBlock,
            downBlockHasAttention: config.downBlockTypes.map { $0 == UNetConfig.crossAttnDown },
            upBlockHasAttention: config.upBlockTypes.map { $0 == UNetConfig.crossAttnUp },
            blockOutChannels: config.blockOutChannels)
        inChannels = config.inChannels
        outChannels = config.outChannels
        crossAttentionDim = config.crossAttentionDim
        useLinearProjection = config.useLinearProjection
    }

    /// Stable Diffusion 2.1-base.
    public static var sd21Base: UNetLayout { UNetLayout(config: .sd21Base) }

    /// Reads a diffusers UNet2DConditionModel `config.json` (`UNetConfig`: absent keys take SD
    /// 2.1-base's values).
    public init(diffusersConfig config: JSONValue, file: String = "config.json") throws {
        guard config.objectValue != nil else {
            throw FormatError(.malformed, file: file, "the UNet config is not a JSON object")
        }
        do {
            self.init(config: try UNetConfig(json: config, structureOnly: true))
        } catch let error as UNetConfigError {
            throw FormatError(.invalidModel, file: file, error.description)
        }
    }

    /// Infers the layout from the keys of an LDM checkpoint (with or without the
    /// `model.diffusion_model.` prefix; other keys are ignored). `shape` looks a key up as given;
    /// when it answers, channel counts and the like are filled in too. Nil when the keys do not
    /// describe an LDM UNet consistently.
    public static func inferred(
        fromLDMKeys keys: some Sequence<String>, shape: (String) -> [Int]? = { _ in nil }
    ) -> UNetLayout? {
        var prefix: String?
        var inputSeen: Set<Int> = []
        var downsamplers: Set<Int> = []
        var inputAttention: Set<Int> = []
        var outputSeen: Set<Int> = []
        var outputAttention: Set<Int> = []
        var firstConv1: [Int: String] = [:]  // input block index → its conv1 weight key
        var crossAttentionKey: String?
        var projInKey: String?
        for key in keys {
            let rest: Substring
            if key.hasPrefix(LDMNaming.unetPrefix) {
                rest = key.dropFirst(LDMNaming.unetPrefix.count)
                prefix = LDMNaming.unetPrefix
            } else if key.hasPrefix("input_blocks.") || key.hasPrefix("output_blocks.") {
                rest = Substring(key)
            } else {
                continue
            }
            let parts = rest.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count >= 4, let n = Int(parts[1]), let m = Int(parts[2]) else { continue }
            if parts[0] == "input_blocks", n > 0 {
                inputSeen.insert(n)
                if m == 0, parts[3] == "op" { downsamplers.insert(n) }
                if m == 1 { inputAttention.insert(n) }
                if m == 0, parts[3] == "in_layers", parts.count == 6, parts[4] == "2", parts[5] == "weight" {
                    firstConv1[n] = key
                }
            } else if parts[0] == "output_blocks" {
                outputSeen.insert(n)
                if m == 1, parts[3] != "conv" { outputAttention.insert(n) }
            }
            if key.hasSuffix(".attn2.to_k.weight"), crossAttentionKey.map({ key < $0 }) ?? true {
                crossAttentionKey = key
            }
            if key.hasSuffix(".proj_in.weight"), projInKey == nil { projInKey = key }
        }
        guard let maxInput = inputSeen.max(), inputSeen.count == maxInput else { return nil }
        // Input blocks: runs of resnet layers, each but the last closed by a downsampler.
        var layers: [Int] = []
        var downAttention: [Bool] = []
        var firstIndex: [Int] = []
        var run = 0
        var runAttention = false
        var runStart = 1
        for n in 1...maxInput {
            if downsamplers.contains(n) {
                guard run > 0, !inputAttention.contains(n) else { return nil }
                layers.append(run)
                downAttention.append(runAttention)
                firstIndex.append(runStart)
                run = 0
                runAttention = false
                runStart = n + 1
            } else {
                run += 1
                runAttention = runAttention || inputAttention.contains(n)
            }
        }
        guard run > 0 else { return nil }
        layers.append(run)
        downAttention.append(runAttention)
        firstIndex.append(runStart)

        // Output blocks: deepest first, each with one layer more than its down block.
        let upLayers = layers.reversed().map { $0 + 1 }
        guard outputSeen.count == upLayers.reduce(0, +), outputSeen.max() == outputSeen.count - 1 else {
            return nil
        }
        var upAttention: [Bool] = []
        var start = 0
        for count in upLayers {
            upAttention.append((start..<(start + count)).contains { outputAttention.contains($0) })
            start += count
        }

        var layout = UNetLayout(
            layersPerBlock: layers, downBlockHasAttention: downAttention, upBlockHasAttention: upAttention)
        let p = prefix ?? ""
        let channels = firstIndex.map { firstConv1[$0].flatMap(shape)?.first }
        if channels.allSatisfy({ $0 != nil }) { layout.blockOutChannels = channels.map { $0! } }
        if let s = shape(p + "input_blocks.0.0.weight"), s.count == 4 { layout.inChannels = s[1] }
        if let s = shape(p + "out.2.weight"), s.count == 4 { layout.outChannels = s[0] }
        if let key = crossAttentionKey, let s = shape(key), s.count == 2 { layout.crossAttentionDim = s[1] }
        if let key = projInKey, let s = shape(key) { layout.useLinearProjection = s.count == 2 }
        return layout
    }

    /// Infers the block structure from diffusers names of the UNet's modules or tensors
    /// (`down_blocks.0.resnets.1.conv1`, `unet.up_blocks.2.attentions.0.proj_in.weight`, …).
    /// Nil when the names do not describe a diffusers UNet2DConditionModel-style block structure.
    public init?(diffusersNames names: some Sequence<String>) {
        var downResnets: [Int: Int] = [:]
        var downAttention: Set<Int> = []
        var upResnets: [Int: Int] = [:]
        var upAttention: Set<Int> = []
        for name in names {
            let parts = name.split(separator: ".", omittingEmptySubsequences: false)
            let offset = parts.first == "unet" ? 1 : 0
            guard parts.count >= offset + 3, let b = Int(parts[offset + 1]) else { continue }
            let kind = parts[offset + 2]
            let j = parts.count > offset + 3 ? Int(parts[offset + 3]) : nil
            switch (parts[offset], kind) {
            case ("down_blocks", "resnets"): if let j { downResnets[b] = max(downResnets[b] ?? 0, j + 1) }
            case ("down_blocks", "attentions"): downAttention.insert(b)
            case ("up_blocks", "resnets"): if let j { upResnets[b] = max(upResnets[b] ?? 0, j + 1) }
            case ("up_blocks", "attentions"): upAttention.insert(b)
            default: break
            }
        }
        let n = downResnets.count
        guard n > 0, upResnets.count == n, downResnets.keys.max() == n - 1, upResnets.keys.max() == n - 1
        else { return nil }
        let layers = (0..<n).map { downResnets[$0]! }
        guard (0..<n).allSatisfy({ upResnets[$0]! == layers[n - 1 - $0] + 1 }) else { return nil }
        self.init(
            layersPerBlock: layers,
            downBlockHasAttention: (0..<n).map { downAttention.contains($0) },
            upBlockHasAttention: (0..<n).map { upAttention.contains($0) })
    }
}

/// What the LDM → diffusers VAE (AutoencoderKL) map needs to know.
public struct VAELayout: Sendable, Equatable {
    public var blockCount: Int
    /// ResNet layers per encoder block (decoder blocks have one more).
    public var layersPerBlock: Int
    public var blockOutChannels: [Int]?
    public var latentChannels: Int?

    public init(blockCount: Int, layersPerBlock: Int, blockOutChannels: [Int]? = nil, latentChannels: Int? = nil) {
        precondition(blockCount > 0 && layersPerBlock > 0, "a VAE has at least one block and layer")
        precondition(blockOutChannels.map { $0.count == blockCount } ?? true, "one channel count per block")
        self.blockCount = blockCount
        self.layersPerBlock = layersPerBlock
        self.blockOutChannels = blockOutChannels
        self.latentChannels = latentChannels
    }

    /// The layout of a VAE config.
    public init(config: VAEConfig) {
        self.init(blockCount: config.blockOutChannels.count, layersPerBlock: config.layersPerBlock,
                  blockOutChannels: config.blockOutChannels, latentChannels: config.latentChannels)
    }

    /// Stable Diffusion 2.1-base.
    public static var sd21Base: VAELayout { VAELayout(config: .sd21) }

    /// Reads a diffusers AutoencoderKL `config.json` (`VAEConfig`: absent keys take SD 2.1-base's
    /// values).
    public init(diffusersConfig config: JSONValue, file: String = "config.json") throws {
        guard config.objectValue != nil else {
            throw FormatError(.malformed, file: file, "the VAE config is not a JSON object")
        }
        let parsed = VAEConfig(json: config)
        guard !parsed.blockOutChannels.isEmpty, parsed.blockOutChannels.allSatisfy({ $0 > 0 }), parsed.layersPerBlock > 0 else {
            throw FormatError(.invalidModel, file: file, "the VAE config needs at least one block and layer, with positive channels")
        }
        self.init(config: parsed)
    }

    /// Infers the layout from LDM keys (with or without the `first_stage_model.` / `vae.` prefix).
    public static func inferred(
        fromLDMKeys keys: some Sequence<String>, shape: (String) -> [Int]? = { _ in nil }
    ) -> VAELayout? {
        var blocks: Set<Int> = []
        var layers: Set<Int> = []
        var prefix = ""
        for key in keys {
            var rest = Substring(key)
            for p in LDMNaming.vaePrefixes where key.hasPrefix(p) {
                rest = rest.dropFirst(p.count)
                prefix = p
                break
            }
            let parts = rest.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count >= 5, parts[0] == "encoder", parts[1] == "down", let n = Int(parts[2]) else { continue }
            blocks.insert(n)
            if n == 0, parts[3] == "block", let m = Int(parts[4]) { layers.insert(m) }
        }
        guard let maxBlock = blocks.max(), blocks.count == maxBlock + 1,
            let maxLayer = layers.max(), layers.count == maxLayer + 1
        else { return nil }
        var layout = VAELayout(blockCount: blocks.count, layersPerBlock: layers.count)
        let channels = (0..<blocks.count).map { shape(prefix + "encoder.down.\($0).block.0.conv1.weight")?.first }
        if channels.allSatisfy({ $0 != nil }) { layout.blockOutChannels = channels.map { $0! } }
        if let s = shape(prefix + "decoder.conv_in.weight"), s.count == 4 { layout.latentChannels = s[1] }
        return layout
    }
}

// MARK: - The map

/// Where an LDM tensor goes.
public struct LDMMapping: Sendable, Equatable {
    /// Canonical name: `unet.<diffusers name>` or `vae.<diffusers name>`.
    public var name: String
    public var component: ModelComponent
    /// LDM stores this tensor as a 1×1 convolution `[C, C, 1, 1]` (the VAE mid-block attention
    /// projections) while diffusers has a Linear `[C, C]`: drop the trailing unit dimensions.
    public var reshapeConv1x1ToLinear: Bool

    public init(name: String, component: ModelComponent, reshapeConv1x1ToLinear: Bool = false) {
        self.name = name
        self.component = component
        self.reshapeConv1x1ToLinear = reshapeConv1x1ToLinear
    }
}

/// The outcome for one LDM key.
public enum LDMKeyResolution: Sendable, Equatable {
    case mapped(LDMMapping)
    /// Not converted; the reason says what the key is (text encoder, EMA copy, schedule buffer)
    /// or why it did not fit.
    case unmapped(reason: String)
}

/// Maps original LDM / CompVis single-file checkpoint keys of Stable Diffusion (`model.diffusion_model.*`,
/// `first_stage_model.*`) to canonical diffusers names (`unet.…`, `vae.…`).
public struct LDMNaming: Sendable {
    public static let unetPrefix = "model.diffusion_model."
    /// diffusers accepts both; `first_stage_model.` is what SD checkpoints use.
    public static let vaePrefixes = ["first_stage_model.", "vae."]

    public let unet: UNetLayout
    public let vae: VAELayout

    private enum InputSlot {
        case resnet(block: Int, layer: Int, attention: Bool)
        case downsampler(block: Int)
    }
    private struct OutputSlot {
        var block: Int, layer: Int, attention: Bool, upsampler: Bool
    }
    private let inputSlots: [InputSlot]  // index n - 1 for input_blocks.n
    private let outputSlots: [OutputSlot]  // index n for output_blocks.n

    public init(unet: UNetLayout = .sd21Base, vae: VAELayout = .sd21Base) {
        self.unet = unet
        self.vae = vae
        let n = unet.blockCount
        var inputs: [InputSlot] = []
        for b in 0..<n {
            for j in 0..<unet.layersPerBlock[b] {
                inputs.append(.resnet(block: b, layer: j, attention: unet.downBlockHasAttention[b]))
            }
            if b < n - 1 { inputs.append(.downsampler(block: b)) }
        }
        var outputs: [OutputSlot] = []
        for b in 0..<n {
            let count = unet.layersPerBlock[n - 1 - b] + 1
            for j in 0..<count {
                outputs.append(
                    OutputSlot(
                        block: b, layer: j, attention: unet.upBlockHasAttention[b],
                        upsampler: b < n - 1 && j == count - 1))
            }
        }
        inputSlots = inputs
        outputSlots = outputs
    }

    /// The canonical name for an LDM key, or nil when the key is not a UNet or VAE tensor of this
    /// layout (see `resolve` for the reason).
    public func canonicalName(forLDMKey key: String) -> LDMMapping? {
        if case let .mapped(m) = resolve(key) { return m }
        return nil
    }

    public func resolve(_ key: String) -> LDMKeyResolution {
        if key.hasPrefix(Self.unetPrefix) {
            let parts = key.dropFirst(Self.unetPrefix.count).split(separator: ".", omittingEmptySubsequences: false)
            if let name = unetName(parts) {
                return .mapped(LDMMapping(name: "unet." + name, component: .unet))
            }
            return .unmapped(reason: "UNet key that does not fit the UNet layout (\(layoutSummary))")
        }
        for prefix in Self.vaePrefixes where key.hasPrefix(prefix) {
            let parts = key.dropFirst(prefix.count).split(separator: ".", omittingEmptySubsequences: false)
            if let (name, reshape) = vaeName(parts) {
                return .mapped(LDMMapping(name: "vae." + name, component: .vae, reshapeConv1x1ToLinear: reshape))
            }
            if parts.first == "loss" { return .unmapped(reason: "VAE training-loss weights (not part of the model)") }
            if prefix == "vae." { break }  // might be a diffusers name; fall through to the generic reason
            return .unmapped(reason: "VAE key that does not fit the VAE layout (\(vae.blockCount) blocks, \(vae.layersPerBlock) layers per block)")
        }
        if key.hasPrefix("cond_stage_model.") || key.hasPrefix("conditioner.") {
            return .unmapped(reason: "text encoder weights (not converted)")
        }
        if key.hasPrefix("model_ema.") {
            return .unmapped(reason: "EMA copy of the UNet (not used)")
        }
        if Self.scheduleBuffers.contains(key) {
            return .unmapped(reason: "diffusion schedule buffer (the scheduler recomputes it)")
        }
        return .unmapped(reason: "not a tensor of a Stable Diffusion LDM checkpoint")
    }

    static let scheduleBuffers: Set<String> = [
        "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
        "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
        "posterior_mean_coef1", "posterior_mean_coef2", "logvar", "model.logvar",
    ]

    private var layoutSummary: String {
        "\(unet.blockCount) blocks, layers per block \(unet.layersPerBlock.map(String.init).joined(separator: ","))"
    }

    // MARK: UNet

    /// A numbered LDM UNet sub-module and the diffusers module it becomes.
    enum UNetSlot: Equatable {
        /// ResNet block: children in_layers.0, in_layers.2, emb_layers.1, out_layers.0, out_layers.3, skip_connection.
        case resnet(String)
        /// Spatial transformer: children keep their names.
        case attention(String)
        /// LDM child `op` becomes `<prefix>.conv`.
        case downsampler(String)
        /// LDM child `conv` becomes `<prefix>.conv`.
        case upsampler(String)
    }

    /// `input_blocks.N.M`, `middle_block.K` (sub nil) or `output_blocks.N.M` → its diffusers module,
    /// or nil when the layout has no such slot. `input_blocks.0.0` (conv_in) is not a slot.
    func unetSlot(section: Substring, index: Int, sub: Int?) -> UNetSlot? {
        switch section {
        case "input_blocks":
            guard let m = sub, index >= 1, index <= inputSlots.count else { return nil }
            switch inputSlots[index - 1] {
            case let .resnet(b, j, attention):
                if m == 0 { return .resnet("down_blocks.\(b).resnets.\(j)") }
                if m == 1, attention { return .attention("down_blocks.\(b).attentions.\(j)") }
                return nil
            case let .downsampler(b):
                return m == 0 ? .downsampler("down_blocks.\(b).downsamplers.0") : nil
            }
        case "middle_block":
            guard sub == nil else { return nil }
            switch index {
            case 0: return .resnet("mid_block.resnets.0")
            case 1: return .attention("mid_block.attentions.0")
            case 2: return .resnet("mid_block.resnets.1")
            default: return nil
            }
        case "output_blocks":
            guard let m = sub, index >= 0, index < outputSlots.count else { return nil }
            let slot = outputSlots[index]
            switch m {
            case 0: return .resnet("up_blocks.\(slot.block).resnets.\(slot.layer)")
            case 1 where slot.attention: return .attention("up_blocks.\(slot.block).attentions.\(slot.layer)")
            case 1 where slot.upsampler, 2 where slot.attention && slot.upsampler:
                return .upsampler("up_blocks.\(slot.block).upsamplers.0")
            default: return nil
            }
        default:
            return nil
        }
    }

    static let resnetChildren: [String: String] = [
        "in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
        "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut",
    ]
    static let attentionChildren: Set<Substring> = ["norm", "proj_in", "proj_out", "transformer_blocks"]

    private static func isParameter(_ s: Substring) -> Bool { s == "weight" || s == "bias" }

    private func unetName(_ parts: [Substring]) -> String? {
        guard let param = parts.last, Self.isParameter(param) else { return nil }
        let p = parts.dropLast()
        // Top-level modules.
        if p.count == 2 {
            switch (p[0], p[1]) {
            case ("time_embed", "0"): return "time_embedding.linear_1.\(param)"
            case ("time_embed", "2"): return "time_embedding.linear_2.\(param)"
            case ("out", "0"): return "conv_norm_out.\(param)"
            case ("out", "2"): return "conv_out.\(param)"
            default: return nil
            }
        }
        if p.count == 3, p[0] == "input_blocks", p[1] == "0", p[2] == "0" { return "conv_in.\(param)" }

        let slot: UNetSlot
        let children: ArraySlice<Substring>
        if p.first == "middle_block" {
            guard p.count >= 3, let k = Int(p[1]), let s = unetSlot(section: p[0], index: k, sub: nil) else { return nil }
            slot = s
            children = p.dropFirst(2)
        } else {
            guard p.count >= 4, let n = Int(p[1]), let m = Int(p[2]),
                let s = unetSlot(section: p[0], index: n, sub: m)
            else { return nil }
            slot = s
            children = p.dropFirst(3)
        }
        switch slot {
        case let .resnet(prefix):
            guard let child = Self.resnetChildren[children.joined(separator: ".")] else { return nil }
            return "\(prefix).\(child).\(param)"
        case let .attention(prefix):
            guard let first = children.first, Self.attentionChildren.contains(first) else { return nil }
            return "\(prefix).\(children.joined(separator: ".")).\(param)"
        case let .downsampler(prefix):
            guard children.count == 1, children.first == "op" else { return nil }
            return "\(prefix).conv.\(param)"
        case let .upsampler(prefix):
            guard children.count == 1, children.first == "conv" else { return nil }
            return "\(prefix).conv.\(param)"
        }
    }

    // MARK: VAE

    private static let vaeResnetChildren: [Substring: String] = [
        "norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "nin_shortcut": "conv_shortcut",
    ]
    private static let vaeAttentionChildren: [Substring: String] = [
        "norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0",
    ]

    private func vaeName(_ parts: [Substring]) -> (String, Bool)? {
        guard let param = parts.last, Self.isParameter(param) else { return nil }
        let p = parts.dropLast()
        let n = vae.blockCount
        if p.count == 1, p[0] == "quant_conv" || p[0] == "post_quant_conv" { return ("\(p[0]).\(param)", false) }
        guard p.count >= 2, p[0] == "encoder" || p[0] == "decoder" else { return nil }
        let side = p[0]
        if p.count == 2 {
            switch p[1] {
            case "conv_in", "conv_out": return ("\(side).\(p[1]).\(param)", false)
            case "norm_out": return ("\(side).conv_norm_out.\(param)", false)
            default: return nil
            }
        }
        func resnet(_ prefix: String, _ child: Substring) -> (String, Bool)? {
            guard let c = Self.vaeResnetChildren[child] else { return nil }
            return ("\(prefix).\(c).\(param)", false)
        }
        switch p[1] {
        case "mid":
            guard p.count == 4 else { return nil }
            switch p[2] {
            case "block_1": return resnet("\(side).mid_block.resnets.0", p[3])
            case "block_2": return resnet("\(side).mid_block.resnets.1", p[3])
            case "attn_1":
                guard let c = Self.vaeAttentionChildren[p[3]] else { return nil }
                return ("\(side).mid_block.attentions.0.\(c).\(param)", param == "weight" && p[3] != "norm")
            default: return nil
            }
        case "down" where side == "encoder":
            guard let b = Int(p[2]), b >= 0, b < n else { return nil }
            if p.count == 6, p[3] == "block", let j = Int(p[4]), j >= 0, j < vae.layersPerBlock {
                return resnet("encoder.down_blocks.\(b).resnets.\(j)", p[5])
            }
            if p.count == 5, p[3] == "downsample", p[4] == "conv", b < n - 1 {
                return ("encoder.down_blocks.\(b).downsamplers.0.conv.\(param)", false)
            }
            return nil
        case "up" where side == "decoder":
            // LDM numbers decoder levels from the highest resolution; diffusers from the deepest.
            guard let level = Int(p[2]), level >= 0, level < n else { return nil }
            let b = n - 1 - level
            if p.count == 6, p[3] == "block", let j = Int(p[4]), j >= 0, j <= vae.layersPerBlock {
                return resnet("decoder.up_blocks.\(b).resnets.\(j)", p[5])
            }
            if p.count == 5, p[3] == "upsample", p[4] == "conv", b < n - 1 {
                return ("decoder.up_blocks.\(b).upsamplers.0.conv.\(param)", false)
            }
            return nil
        default:
            return nil
        }
    }
}
