// diffusers and peft LoRA naming, in every form they have been written:
//
// - diffusers ≤ 0.2x, LoRACompatibleLinear:  `unet.<module>.lora.down.weight` / `.lora.up.weight`
//   (text encoders: `text_encoder.<module>.lora_linear_layer.down.weight`)
// - diffusers attention processors:          `unet.<attn>.processor.to_q_lora.down.weight`
//   (`to_out_lora` → `<attn>.to_out.0`), also without the `unet.` prefix (save_attn_procs)
// - diffusers with peft:                     `unet.<module>.lora_A.weight` / `.lora_B.weight`
// - peft adapter_model.safetensors:          `base_model.model.<module>.lora_A.weight`
// - peft in-model (DLoRAL's state_dict_unet): `<module>.lora_A.<adapter>.weight`, with the wrapped
//   module's own tensors under `<module>.base_layer.weight` / `.bias`
// DoRA adds `lora_magnitude_vector` (saved files: `<module>.lora_magnitude_vector`; in-model:
// `<module>.lora_magnitude_vector.<adapter>.weight`); peft's `lora_bias` adds `lora_B[.<adapter>].bias`.

/// Which tensor of a LoRA pair a key names.
public enum LoRAKeyKind: String, Sendable, Equatable, CaseIterable {
    /// peft `lora_A`, kohya `lora_down`, diffusers `lora.down`: [rank, in(, kh, kw)].
    case down
    /// peft `lora_B`, kohya `lora_up`, diffusers `lora.up`: [out, rank(, 1, 1)].
    case up
    /// kohya's per-module alpha (a scalar).
    case alpha
    /// DoRA magnitude (peft `lora_magnitude_vector`, kohya `dora_scale`).
    case magnitude
    /// peft `lora_bias=True`: a bias on `lora_B`.
    case upBias
}

/// The spelling a LoRA key was written in.
public enum LoRAKeyDialect: String, Sendable, Equatable {
    case kohya
    /// `….lora.down.weight` / `….lora_linear_layer.down.weight`.
    case diffusersLegacy = "diffusers-legacy"
    /// `….processor.to_q_lora.down.weight`.
    case attentionProcessor = "attention-processor"
    /// `….lora_A[.<adapter>].weight`, with or without `base_model.model.`.
    case peft
}

/// One LoRA tensor key, parsed.
public struct LoRAKey: Sendable, Equatable {
    /// The diffusers module path inside its component: `down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`.
    public var module: String
    /// The peft adapter name when the key carries one (`default_encoder_quality`); nil otherwise.
    public var adapter: String?
    public var kind: LoRAKeyKind
    /// The component the key's prefix names (`unet.`, `text_encoder.`, `lora_unet_`, …); nil when
    /// the key does not say (peft in-model and adapter files: the caller knows from context).
    public var component: ModelComponent?
    public var dialect: LoRAKeyDialect

    public init(module: String, adapter: String?, kind: LoRAKeyKind, component: ModelComponent?, dialect: LoRAKeyDialect) {
        self.module = module
        self.adapter = adapter
        self.kind = kind
        self.component = component
        self.dialect = dialect
    }

    /// `<component>.<module>` when the component is known (or given as `default`).
    public func canonicalModule(default fallback: ModelComponent? = nil) -> String? {
        (component ?? fallback).map { "\($0.rawValue).\(module)" }
    }
}

public enum DiffusersLoRANaming {
    static let peftPrefix = "base_model.model."
    static let componentPrefixes: [(String, ModelComponent)] = [
        ("unet.", .unet), ("text_encoder.", .textEncoder), ("text_encoder_2.", .textEncoder), ("vae.", .vae),
    ]

    /// Parses a diffusers / peft LoRA key (any form listed above); nil when the key is not one.
    public static func parse(_ key: String) -> LoRAKey? {
        let (component, body) = strip(key)
        var parts = body.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 3, let last = parts.last else { return nil }

        func make(_ moduleParts: ArraySlice<Substring>, _ adapter: Substring?, _ kind: LoRAKeyKind, _ dialect: LoRAKeyDialect) -> LoRAKey? {
            guard !moduleParts.isEmpty, !moduleParts.contains(where: \.isEmpty) else { return nil }
            return LoRAKey(
                module: moduleParts.joined(separator: "."), adapter: adapter.map(String.init), kind: kind,
                component: component, dialect: dialect)
        }
        let n = parts.count

        // diffusers legacy: <module>.lora.down.weight, <module>.lora_linear_layer.up.weight
        if last == "weight", parts[n - 3] == "lora" || parts[n - 3] == "lora_linear_layer",
            let kind = downUp(parts[n - 2])
        {
            return make(parts[..<(n - 3)], nil, kind, .diffusersLegacy)
        }
        // attention processor: <attn>.processor.to_q_lora.down.weight
        if last == "weight", n >= 5, parts[n - 4] == "processor", parts[n - 3].hasSuffix("_lora"),
            let kind = downUp(parts[n - 2])
        {
            let name = parts[n - 3].dropLast("_lora".count)
            guard !name.isEmpty else { return nil }
            var module = Array(parts[..<(n - 4)])
            if name == "to_out" {
                module += ["to_out", "0"]
            } else {
                module.append(name)
            }
            return make(module[...], nil, kind, .attentionProcessor)
        }
        // peft: <module>.lora_A.weight, <module>.lora_A.<adapter>.weight, lora_B.[<adapter>.]bias
        if last == "weight" || last == "bias" {
            let isBias = last == "bias"
            for (slot, adapterIndex) in [(n - 2, nil as Int?), (n - 3, n - 2)] where slot >= 1 {
                let kind: LoRAKeyKind
                switch parts[slot] {
                case "lora_A" where !isBias: kind = .down
                case "lora_B": kind = isBias ? .upBias : .up
                case "lora_magnitude_vector" where !isBias: kind = .magnitude
                default: continue
                }
                return make(parts[..<slot], adapterIndex.map { parts[$0] }, kind, .peft)
            }
        }
        // peft DoRA as saved: <module>.lora_magnitude_vector[.<adapter>]
        if last == "lora_magnitude_vector" {
            parts.removeLast()
            return make(parts[...], nil, .magnitude, .peft)
        }
        if n >= 3, parts[n - 2] == "lora_magnitude_vector" {
            return make(parts[..<(n - 2)], last, .magnitude, .peft)
        }
        return nil
    }

    /// The wrapped module's own tensor for a peft `base_layer` key: `x.base_layer.weight` → `x.weight`
    /// (also with `base_model.model.`); nil when the key is not a `base_layer` tensor.
    public static func baseLayerTensorName(_ key: String) -> String? {
        var body = Substring(key)
        if body.hasPrefix(peftPrefix) { body = body.dropFirst(peftPrefix.count) }
        let parts = body.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 3, parts[parts.count - 2] == "base_layer" else { return nil }
        return (parts[..<(parts.count - 2)] + [parts[parts.count - 1]]).joined(separator: ".")
    }

    /// For a tensor of a peft-wrapped model state dict: nil for LoRA tensors (adapters, magnitudes,
    /// any `lora_*` child), the unwrapped name for `base_layer` tensors, the key itself otherwise.
    public static func plainTensorName(_ key: String) -> String? {
        if parse(key) != nil { return nil }
        if key.split(separator: ".").contains(where: { $0.hasPrefix("lora_") || $0 == "lora" }) { return nil }
        return baseLayerTensorName(key) ?? key
    }

    private static func downUp(_ s: Substring) -> LoRAKeyKind? {
        switch s {
        case "down": return .down
        case "up": return .up
        default: return nil
        }
    }

    /// Removes `base_model.model.` and a component prefix.
    private static func strip(_ key: String) -> (ModelComponent?, Substring) {
        var body = Substring(key)
        if body.hasPrefix(peftPrefix) { body = body.dropFirst(peftPrefix.count) }
        for (prefix, component) in componentPrefixes where body.hasPrefix(prefix) {
            return (component, body.dropFirst(prefix.count))
        }
        return (nil, body)
    }
}
