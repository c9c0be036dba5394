// kohya-ss / A1111 LoRA naming: `lora_unet_<module path with every "." turned into "_">` plus
// `.lora_down.weight`, `.lora_up.weight`, `.alpha` (and DoRA's `.dora_scale`).
//
// Underscores are ambiguous (to_q, proj_in, conv_shortcut, time_emb_proj, transformer_blocks, …),
// so a stem is resolved against the module names of the target model rather than parsed. Some
// trainers write LDM-flavoured stems (`lora_unet_input_blocks_1_1_proj_in`); those are translated
// through the LDM block structure, which is itself inferred from the module names.

/// The outcome for one kohya key.
public enum KohyaKeyResolution: Sendable, Equatable {
    /// A UNet LoRA tensor on a module of the target model (`module` is its diffusers path).
    case unet(LoRAKey)
    /// A text-encoder LoRA tensor (`lora_te_`, `lora_te1_`, `lora_te2_`): recognised, not applied.
    case textEncoder(stem: String, kind: LoRAKeyKind)
    /// `lora_unet_…` whose stem names no module of the target model.
    case unknownModule(stem: String, kind: LoRAKeyKind)
    /// The stem fits more than one module of the target model.
    case ambiguous(stem: String, candidates: [String])
    /// A kohya key of a LoRA variant this toolchain does not read (LoCon mid, LoHa, LoKr, …).
    case unsupported(reason: String)
}

public struct KohyaNaming: Sendable {
    /// underscored path → diffusers path(s); more than one is a collision.
    private let byStem: [String: [String]]
    /// For LDM-flavoured stems; nil when the module names are not a UNet2DConditionModel block structure.
    private let ldm: LDMNaming?

    /// `moduleNames`: diffusers module paths of the target UNet (`down_blocks.0.resnets.0.conv1`);
    /// tensor names (with `.weight` / `.bias`) are fine too, as is a `unet.` prefix.
    public init(moduleNames: some Sequence<String>) {
        var byStem: [String: Set<String>] = [:]
        var all: [String] = []
        for raw in moduleNames {
            var name = Substring(raw)
            if name.hasPrefix("unet.") { name = name.dropFirst(5) }
            if name.hasSuffix(".weight") {
                name = name.dropLast(7)
            } else if name.hasSuffix(".bias") {
                name = name.dropLast(5)
            }
            let path = String(name)
            all.append(path)
            byStem[Self.underscored(path), default: []].insert(path)
        }
        self.byStem = byStem.mapValues { $0.sorted() }
        self.ldm = UNetLayout(diffusersNames: all).map { LDMNaming(unet: $0) }
    }

    /// Stems that more than one module maps to, with the modules (empty for SD UNets).
    public var collisions: [String: [String]] { byStem.filter { $0.value.count > 1 } }

    /// The diffusers module path for a UNet stem (the key without `lora_unet_` and without the
    /// `.lora_down.weight` / `.lora_up.weight` / `.alpha` suffix); nil when unknown or ambiguous.
    public func modulePath(forKohyaStem stem: String) -> String? {
        if case let .found(path) = lookup(stem) { return path }
        return nil
    }

    private enum Lookup { case found(String), ambiguous([String]), missing }

    private func lookup(_ stem: String) -> Lookup {
        if let paths = byStem[stem] {
            return paths.count == 1 ? .found(paths[0]) : .ambiguous(paths)
        }
        if let translated = diffusersStem(forLDMStem: stem), let paths = byStem[translated] {
            return paths.count == 1 ? .found(paths[0]) : .ambiguous(paths)
        }
        return .missing
    }

    /// Resolves a whole kohya key; nil when the key is not in kohya form at all.
    public func resolve(_ key: String) -> KohyaKeyResolution? {
        guard let (component, stem, kind) = Self.split(key) else {
            guard key.hasPrefix("lora_unet_") || key.hasPrefix("lora_te") else { return nil }
            let suffix = key.split(separator: ".", maxSplits: 1).dropFirst().first.map(String.init) ?? ""
            return .unsupported(reason: "kohya key with suffix '.\(suffix)' (not a plain LoRA: LoCon mid, LoHa, LoKr, … are not supported)")
        }
        if component == .textEncoder { return .textEncoder(stem: stem, kind: kind) }
        switch lookup(stem) {
        case let .found(path):
            return .unet(LoRAKey(module: path, adapter: nil, kind: kind, component: .unet, dialect: .kohya))
        case let .ambiguous(paths):
            return .ambiguous(stem: stem, candidates: paths)
        case .missing:
            return .unknownModule(stem: stem, kind: kind)
        }
    }

    /// kohya's stem for a module path: every "." becomes "_".
    public static func underscored(_ path: String) -> String {
        String(path.map { $0 == "." ? "_" : $0 })
    }

    static let textEncoderPrefixes = ["lora_te_", "lora_te1_", "lora_te2_", "lora_te3_"]
    static let suffixes: [(String, LoRAKeyKind)] = [
        (".lora_down.weight", .down), (".lora_up.weight", .up), (".alpha", .alpha), (".dora_scale", .magnitude),
    ]

    /// Splits `lora_unet_<stem>.<suffix>` / `lora_te*_<stem>.<suffix>`; nil unless both parts are
    /// recognised.
    public static func split(_ key: String) -> (component: ModelComponent, stem: String, kind: LoRAKeyKind)? {
        var component: ModelComponent
        var rest: Substring
        if key.hasPrefix("lora_unet_") {
            component = .unet
            rest = key.dropFirst("lora_unet_".count)
        } else if let p = textEncoderPrefixes.first(where: { key.hasPrefix($0) }) {
            component = .textEncoder
            rest = key.dropFirst(p.count)
        } else {
            return nil
        }
        for (suffix, kind) in suffixes where rest.hasSuffix(suffix) {
            let stem = rest.dropLast(suffix.count)
            guard !stem.isEmpty, !stem.contains(".") else { return nil }
            return (component, String(stem), kind)
        }
        return nil
    }

    /// `input_blocks_4_1_transformer_blocks_0_attn1_to_q` → `down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q`.
    private func diffusersStem(forLDMStem stem: String) -> String? {
        switch stem {
        case "time_embed_0": return "time_embedding_linear_1"
        case "time_embed_2": return "time_embedding_linear_2"
        case "out_0": return "conv_norm_out"
        case "out_2": return "conv_out"
        case "input_blocks_0_0": return "conv_in"
        default: break
        }
        guard let ldm else { return nil }
        let section: Substring
        let numbers: Int
        if stem.hasPrefix("input_blocks_") {
            section = "input_blocks"
            numbers = 2
        } else if stem.hasPrefix("output_blocks_") {
            section = "output_blocks"
            numbers = 2
        } else if stem.hasPrefix("middle_block_") {
            section = "middle_block"
            numbers = 1
        } else {
            return nil
        }
        // section_N[_M]_rest
        var fields = stem.dropFirst(section.count + 1).split(
            separator: "_", maxSplits: numbers, omittingEmptySubsequences: false)
        guard fields.count == numbers + 1, let n = Int(fields[0]) else { return nil }
        let sub: Int?
        if numbers == 2 {
            guard let m = Int(fields[1]) else { return nil }
            sub = m
        } else {
            sub = nil
        }
        let rest = String(fields.removeLast())
        guard let slot = ldm.unetSlot(section: section, index: n, sub: sub) else { return nil }
        let underscored = Self.underscored
        switch slot {
        case let .resnet(prefix):
            let child = LDMNaming.resnetChildren.first { underscored($0.key) == rest }?.value
            return child.map { underscored(prefix) + "_" + $0 }
        case let .attention(prefix):
            return underscored(prefix) + "_" + rest
        case let .downsampler(prefix):
            return rest == "op" ? underscored(prefix) + "_conv" : nil
        case let .upsampler(prefix):
            return rest == "conv" ? underscored(prefix) + "_conv" : nil
        }
    }
}
