import DLoRALFormats

/// One LoRA pair on one module, in the dialect-free form every reader produces.
///
/// `down` is peft's `lora_A` (kohya `lora_down`): [rank, in] for Linear, [rank, in, kh, kw] for
/// Conv2d. `up` is `lora_B` (`lora_up`): [out, rank] or [out, rank, 1, 1]. The delta is
/// `alpha / rank × up · down`, times the adapter weight chosen at merge time.
public struct LoRAModule: Sendable {
    /// Canonical module path with component prefix, e.g. `unet.down_blocks.0.attentions.0.proj_in`.
    public var module: String
    /// Adapter name (`default_encoder_quality`, or `default` for single-adapter files).
    public var adapter: String
    public var down: TensorView
    public var up: TensorView
    /// The module's own alpha, if the file stores one; otherwise the adapter's alpha applies.
    public var alpha: Double?
    /// The file's own name for the down tensor (for messages, and for re-resolving kohya names
    /// against a base model's modules).
    public var sourceKey: String

    public init(module: String, adapter: String, down: TensorView, up: TensorView, alpha: Double?, sourceKey: String = "") {
        self.module = module
        self.adapter = adapter
        self.down = down
        self.up = up
        self.alpha = alpha
        self.sourceKey = sourceKey
    }

    public var rank: Int { down.shape.first ?? 0 }
}

/// What is known about one adapter as a whole.
public struct LoRAAdapter: Sendable, Equatable {
    public var name: String
    /// The adapter's rank (the most common rank of its modules).
    public var rank: Int
    /// The adapter's alpha (DLoRAL: peft's default 8; peft folders: `lora_alpha`; kohya: the
    /// per-module value when they agree).
    public var alpha: Double
    public var moduleCount: Int
    /// Where alpha came from: "file", "adapter_config.json", "dloral-default", "rank (no alpha stored)".
    public var alphaSource: String

    public init(name: String, rank: Int, alpha: Double, moduleCount: Int, alphaSource: String) {
        self.name = name
        self.rank = rank
        self.alpha = alpha
        self.moduleCount = moduleCount
        self.alphaSource = alphaSource
    }

    /// Summarises modules per adapter, in first-seen order. `defaultAlpha` gives the adapter's
    /// alpha where the file has one for the whole adapter (a config); otherwise the modules'
    /// stored alphas are reported, or alpha = rank (scale 1) when none is stored.
    public static func summarise(
        _ modules: [LoRAModule], defaultAlpha: (String) -> (Double, String)?
    ) -> [LoRAAdapter] {
        var order: [String] = []
        var byAdapter: [String: [LoRAModule]] = [:]
        for module in modules {
            if byAdapter[module.adapter] == nil { order.append(module.adapter) }
            byAdapter[module.adapter, default: []].append(module)
        }
        return order.map { name in
            let items = byAdapter[name]!
            var rankCounts: [Int: Int] = [:]
            for item in items { rankCounts[item.rank, default: 0] += 1 }
            let rank = rankCounts.max { $0.value != $1.value ? $0.value < $1.value : $0.key > $1.key }!.key
            let stored = Set(items.compactMap(\.alpha))
            let alpha: Double
            let source: String
            if let (value, from) = defaultAlpha(name) {
                (alpha, source) = (value, from)
            } else if stored.count == 1, let only = stored.first {
                (alpha, source) = (only, "file")
            } else if stored.count > 1 {
                var counts: [Double: Int] = [:]
                for item in items { if let a = item.alpha { counts[a, default: 0] += 1 } }
                let common = counts.max { $0.value != $1.value ? $0.value < $1.value : $0.key > $1.key }!.key
                let values = stored.sorted().map { $0 == $0.rounded() ? String(Int($0)) : String($0) }
                (alpha, source) = (common, "file, per module: \(values.joined(separator: ", "))")
            } else {
                (alpha, source) = (Double(rank), "rank (no alpha stored)")
            }
            return LoRAAdapter(name: name, rank: rank, alpha: alpha, moduleCount: items.count, alphaSource: source)
        }
    }
}
