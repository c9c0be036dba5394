import Collections
import DLoRALFormats

/// Everything decided before a byte is written: the adapters and their scales, which base
/// tensor each LoRA module lands on, what the output folders hold.
public struct MergePlan: Sendable {
    /// One LoRA pair to add to a weight: `weight += scale × up · down`.
    public struct Delta: Sendable {
        public var down: TensorView
        public var up: TensorView
        public var scale: Double
        public var adapter: String
        public var sourceKey: String
    }

    /// A tensor of the output and where its value comes from.
    public struct Item: Sendable {
        public var name: String
        public var source: TensorView
        /// Where the source came from, for messages.
        public var sourceFile: String
        /// LoRA deltas to add (empty: copied as is).
        public var deltas: [Delta] = []
        /// The other input's value of the same tensor, compared to report overrides.
        public var shadowed: TensorView?
    }

    public var unet: [Item] = []
    public var vae: [Item] = []
    public var cfr: [Item] = []
    public var unetConfig: JSONValue
    public var vaeConfig: JSONValue?
    public var cfrConfig: JSONValue?
    public var report: MergeReport

    /// Plans a merge of `lora` into `base`.
    /// - Throws: `FormatError` for unknown adapters, unmatched modules (unless allowed),
    ///   incompatible shapes and non-finite adapter values.
    public init(base: LoadedCheckpoint, lora: LoadedCheckpoint, output: String, options: MergeOptions) throws {
        report = MergeReport(output: output, stage: options.stage.rawValue, dtype: MergeOptions.spelling(options.dtype))
        guard !lora.lora.isEmpty else {
            throw FormatError(.invalidModel, file: lora.path, "holds no LoRA adapters (read as \(lora.format.rawValue), \(lora.dialect.rawValue) naming); expected DLoRAL's model.pkl, a peft folder, or a kohya / diffusers LoRA file")
        }
        let baseUNet = base.tensors(of: .unet)
        let loraUNet = lora.tensors(of: .unet)
        guard baseUNet.count > 0 || loraUNet.count > 0 else {
            throw FormatError(.invalidModel, file: base.path, "holds no UNet weights; expected a Stable Diffusion model folder, LDM file or ONNX UNet")
        }

        // 1. Adapters and weights.
        let available = lora.adapters.map(\.name)
        for name in options.adapterWeights.keys where !available.contains(name) {
            throw FormatError(.invalidModel, file: lora.path, "--adapter-weight names '\(name)', which this checkpoint does not have; it has \(available.joined(separator: ", "))")
        }
        var weights: [String: Double] = [:]
        for adapter in lora.adapters {
            let inStage = lora.dialect != .dloral || options.stage == .full || adapter.name.hasSuffix("_consistency")
            weights[adapter.name] = options.adapterWeights[adapter.name] ?? (inStage ? 1.0 : 0.0)
        }

        // 2. UNet tensors: the checkpoint's own values win over the base's.
        var unetItems: OrderedDictionary<String, Item> = [:]
        for (name, view) in baseUNet.tensors {
            unetItems[name] = Item(name: name, source: view, sourceFile: base.path)
        }
        for (name, view) in loraUNet.tensors {
            let shadowed = unetItems[name]?.source
            unetItems[name] = Item(name: name, source: view, sourceFile: lora.path, shadowed: shadowed)
        }

        // 3. Each active LoRA module onto its weight.
        let kohya = lora.dialect == .kohya ? KohyaNaming(moduleNames: unetItems.keys) : nil
        var usedModules: [String: Int] = [:]
        var adapterScales: [String: [Double: Int]] = [:]
        for module in lora.lora {
            let weight = weights[module.adapter] ?? 0
            guard weight != 0 else { continue }
            guard module.module.hasPrefix("unet.") else {
                report.dropped.append((module.sourceKey, "LoRA on \(module.module): only UNet adapters are merged"))
                continue
            }
            var target = String(module.module.dropFirst("unet.".count)) + ".weight"
            if unetItems[target] == nil, let kohya, case let .unet(key)? = kohya.resolve(module.sourceKey) {
                target = key.module + ".weight"
            }
            guard let item = unetItems[target] else {
                report.unmatched.append("\(module.sourceKey) (module \(module.module))")
                continue
            }
            try Self.checkShapes(module, weight: item.source, target: target, file: lora.path)
            try Self.checkFinite(module.down, name: module.sourceKey, file: lora.path)
            try Self.checkFinite(module.up, name: module.sourceKey.replacingOccurrences(of: "lora_A", with: "lora_B").replacingOccurrences(of: "lora_down", with: "lora_up"), file: lora.path)
            let adapterAlpha = lora.adapters.first { $0.name == module.adapter }?.alpha ?? Double(module.rank)
            let alpha = module.alpha ?? adapterAlpha
            let scale = weight * alpha / Double(module.rank)
            // The kernel multiplies in fp32, so a scale beyond Float's range is already inf.
            guard scale.isFinite, Float(scale).isFinite else {
                throw FormatError(.invalidModel, file: lora.path, tensor: module.sourceKey,
                                  "adapter \(module.adapter): scale = weight \(weight) × alpha \(alpha) / rank \(module.rank) = \(scale), beyond float32's range (3.4028235e38); check the adapter's alpha")
            }
            unetItems[target]!.deltas.append(Delta(down: module.down, up: module.up, scale: scale, adapter: module.adapter, sourceKey: module.sourceKey))
            usedModules[module.adapter, default: 0] += 1
            adapterScales[module.adapter, default: [:]][scale, default: 0] += 1
        }
        if !report.unmatched.isEmpty && !options.allowUnmatched {
            let shown = report.unmatched.prefix(8).joined(separator: "; ")
            throw FormatError(.invalidModel, file: lora.path,
                              "\(report.unmatched.count) LoRA modules have no matching weight in the base model: \(shown)\(report.unmatched.count > 8 ? "; …" : ""). Check that the LoRA was trained for this base, or pass --allow-unmatched to skip them")
        }
        if !report.unmatched.isEmpty {
            report.warnings.append("\(report.unmatched.count) LoRA modules had no base weight and were skipped")
        }
        for adapter in lora.adapters {
            let weight = weights[adapter.name] ?? 0
            let scales = adapterScales[adapter.name] ?? [:]
            let scale = scales.max { $0.value != $1.value ? $0.value < $1.value : $0.key > $1.key }?.key ?? weight * adapter.alpha / Double(adapter.rank)
            report.adapters.append(MergeReport.AdapterUse(
                name: adapter.name, weight: weight, scale: scale, alpha: adapter.alpha, rank: adapter.rank,
                modules: usedModules[adapter.name] ?? 0))
        }
        unet = Array(unetItems.values)
        report.mergedModules = unet.reduce(0) { $0 + $1.deltas.count }

        // 4. Configs: --config, else the base's (read or inferred), with in_channels from the
        // weights actually written.
        let given = try ConfigFiles.read(options.configPaths)
        var unetSource = ConfigSource(base: base, lora: lora, component: .unet, given: given)
        // The config's own values first: in_channels is replaced below, a wrong type there is
        // still an error in the input.
        try unetSource.validate(against: nil, tensorFile: base.path)
        var config = unetSource.config ?? ConfigInference.unetConfig(TensorTable()) ?? .object([])
        if unetSource.inferred {
            report.warnings.append("UNet config inferred from tensor shapes (the base has no config.json): norm_num_groups and attention heads follow SD 2.x conventions")
        }
        if let convIn = unetItems["conv_in.weight"]?.source, convIn.shape.count == 4 {
            config = config.setting("in_channels", .int(convIn.shape[1]))
        }
        unetConfig = config
        unetSource.config = config

        // 5. VAE from the base; CFR from the checkpoint, inference parts only.
        let baseVAE = base.tensors(of: .vae)
        vae = baseVAE.tensors.map { Item(name: $0.key, source: $0.value, sourceFile: base.path) }
        let vaeSource = ConfigSource(base: base, lora: nil, component: .vae, given: given)
        vaeConfig = vaeSource.config
        if vae.isEmpty {
            report.warnings.append("the base has no VAE (\(base.format.rawValue)); the output has no vae/ folder")
        }
        for (name, view) in lora.tensors(of: .cfr).tensors {
            if CFRNaming.inferenceRoots.contains(where: { name.hasPrefix($0) }) {
                cfr.append(Item(name: name, source: view, sourceFile: lora.path))
            } else {
                report.dropped.append(("cfr." + name, "CFR module DLoRAL does not run at inference"))
            }
        }
        cfrConfig = cfr.isEmpty ? nil : CFRConfig.make(cfr)

        // 6. Every config must describe the weights written beside it, before a byte is written.
        try unetSource.validate(against: unet, tensorFile: base.path)
        if !vae.isEmpty { try vaeSource.validate(against: vae, tensorFile: base.path) }
        if let cfrConfig {
            try ModelConfigValidation.validateCFRConfig(
                cfrConfig, file: "\(lora.path) (CFR config derived from its cfr tensors)",
                against: ConfigSource.shapes(cfr), tensorFile: lora.path)
        }
        for (name, _) in lora.unrecognized {
            report.dropped.append((name, "not recognised"))
        }
    }

    static func checkShapes(_ module: LoRAModule, weight: TensorView, target: String, file: String) throws {
        let w = weight.shape, a = module.down.shape, b = module.up.shape
        let ok = w.count >= 2 && b[0] == w[0] && a.count == w.count && Array(a.dropFirst()) == Array(w.dropFirst())
        guard ok else {
            throw FormatError(.invalidModel, file: file, tensor: module.sourceKey,
                              "LoRA shapes down \(a), up \(b) do not fit base weight \(target) \(w); expected down [r, \(w.dropFirst().map(String.init).joined(separator: ", "))] and up [\(w.first ?? 0), r\(w.count > 2 ? ", 1, 1" : "")]")
        }
        guard weight.dtype.isFloatingPoint else {
            throw FormatError(.invalidModel, file: file, tensor: target, "base weight has dtype \(weight.dtype.rawValue); only floating-point weights can take a LoRA")
        }
    }

    static func checkFinite(_ view: TensorView, name: String, file: String) throws {
        let (count, first) = view.nonFinite()
        guard count > 0 else { return }
        throw FormatError(.invalidModel, file: view.storage.origin, tensor: name,
                          "holds \(count) non-finite value\(count == 1 ? "" : "s") (the first: \(first)); the adapter is corrupted")
    }
}

extension TensorView {
    /// How many of a floating view's values are NaN or ±inf, and the first of them (0 for an
    /// integer view): the inputs of merge and quantize must be finite numbers.
    func nonFinite() -> (count: Int, first: Float) {
        guard dtype.isFloatingPoint else { return (0, 0) }
        func scan(_ values: UnsafeBufferPointer<Float>) -> (Int, Float) {
            guard let index = values.firstIndex(where: { !$0.isFinite }) else { return (0, 0) }
            return (values[index...].count(where: { !$0.isFinite }), values[index])
        }
        if dtype == .float32, let bytes = contiguousBytes, Int(bitPattern: bytes.baseAddress) % MemoryLayout<Float>.alignment == 0 {
            return scan(bytes.bindMemory(to: Float.self))
        }
        return toFloat32().withUnsafeBufferPointer(scan)
    }
}

/// Where one component's config comes from (`--config`, the base's file, or inferred from
/// shapes), and its validation against the weights with a message that says which.
struct ConfigSource {
    var component: ModelComponent
    var config: JSONValue?
    var file: String
    var inferred: Bool

    init(base: LoadedCheckpoint, lora: LoadedCheckpoint?, component: ModelComponent, given: [ModelComponent: (JSONValue, String)]) {
        self.component = component
        if let (json, path) = given[component] {
            (config, file, inferred) = (json, path, false)
        } else if let json = base.configs[component] {
            inferred = base.inferredConfigs.contains(component)
            config = json
            file = inferred ? "\(base.path) (\(component.rawValue) config inferred from tensor shapes)"
                : base.files.first { $0.hasSuffix("\(component.rawValue)/config.json") } ?? base.files.first { $0.hasSuffix("config.json") } ?? base.path
        } else if let lora, let json = lora.configs[component] {
            inferred = lora.inferredConfigs.contains(component)
            config = json
            file = "\(lora.path) (\(component.rawValue) config\(inferred ? " inferred from tensor shapes" : ""))"
        } else {
            (config, file, inferred) = (nil, "\(base.path) (no \(component.rawValue) config)", true)
        }
    }

    static func shapes(_ items: [MergePlan.Item]) -> ModelConfigValidation.Shapes {
        var shapes: ModelConfigValidation.Shapes = [:]
        for item in items { shapes[item.name] = item.source.shape }
        return shapes
    }

    /// Checks the values, and the weights `items` against them when given.
    func validate(against items: [MergePlan.Item]?, tensorFile: String) throws {
        guard let config else { return }
        do {
            try ModelConfigValidation.validate(
                component: component.rawValue, config: config, file: file, against: items.map(Self.shapes), tensorFile: tensorFile)
        } catch var error as FormatError where inferred {
            error.message += ". The base has no config for it: pass --config <config.json or LDM .yaml> describing this model"
            throw error
        }
    }
}

extension CFRConfig {
    /// `cfr/config.json` from the CFR's weights: what the engine needs to rebuild the CFR (the
    /// temperature is DLoRAL's constant; shapes absent from the weights take DLoRAL's values).
    static func make(_ items: [MergePlan.Item]) -> JSONValue {
        func shape(_ name: String) -> [Int]? { items.first { $0.name == name }?.source.shape }
        let d = CFRConfig.dloral
        let levels = ConfigInference.indexCount(items.map(\.name), prefix: "spynet.basic_module.")
        let qkv = shape("cross_attn_module.query_conv.weight")
        let threshold = shape("cross_attn_module.threshold_fc.weight")
        let headDim = threshold?.last ?? d.attentionHeadDim
        let inner = qkv?.first ?? d.attentionHeads * d.attentionHeadDim
        return CFRConfig(
            latentChannels: qkv?[1] ?? d.latentChannels, attentionHeads: inner / max(headDim, 1), attentionHeadDim: headDim,
            attentionTemperature: d.attentionTemperature, spynetLevels: levels
        ).json
    }
}
