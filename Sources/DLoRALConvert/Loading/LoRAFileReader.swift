import DLoRALFormats

/// Reads LoRA files in the dialects found in the wild and normalises them to `LoRAModule`s:
/// peft (adapter folders and in-model state dicts such as DLoRAL's), kohya/A1111, diffusers.
enum LoRAFileReader {
    /// True if any key of `names` is a LoRA tensor in some dialect.
    static func looksLikeLoRA(_ names: [String]) -> Bool {
        names.contains { KohyaNaming.split($0) != nil || DiffusersLoRANaming.parse($0) != nil }
    }

    /// A peft adapter folder: `adapter_config.json` + `adapter_model.safetensors` (or `.bin`).
    static func readPeftFolder(_ folder: String) throws -> LoadedCheckpoint {
        let configPath = FileSystem.join(folder, "adapter_config.json")
        let config = try JSONValue.read(path: configPath)
        var weights: String?
        for name in ["adapter_model.safetensors", "adapter_model.bin"] where FileSystem.exists(FileSystem.join(folder, name)) {
            weights = FileSystem.join(folder, name)
            break
        }
        guard let weights else {
            throw FormatError(.io, file: folder, "peft adapter folder has no adapter_model.safetensors (or adapter_model.bin)")
        }
        var result = LoadedCheckpoint(path: folder, format: .peftFolder, dialect: .peft)
        result.files = [configPath, weights]
        let table = weights.hasSuffix(".bin") ? try TorchStateDict.read(path: weights) : try SafetensorsFile(path: weights).table
        result.notes["peft_type"] = config["peft_type"] ?? .null
        result.notes["target_modules"] = config["target_modules"] ?? .null
        try collect(table, file: weights, defaultComponent: .unet, adapterName: "default", into: &result)
        let peft = try PeftLoRAConfig(config, file: configPath)
        try peft.apply(to: &result.lora)
        result.adapters = LoRAAdapter.summarise(result.lora) { _ in (peft.alpha, "adapter_config.json") }
        return result
    }

    /// A LoRA file of any dialect read as a flat table (`path` for messages).
    static func read(_ table: TensorTable, path: String, into base: LoadedCheckpoint) throws -> LoadedCheckpoint {
        var result = base
        let kohya = table.names.contains { KohyaNaming.split($0) != nil }
        result.dialect = kohya ? .kohya : (table.names.contains { $0.hasPrefix("unet.") || $0.contains(".lora.") || $0.contains("_lora.") } ? .diffusersLoRA : .peft)
        if kohya {
            try collectKohya(table, file: path, into: &result)
        } else {
            try collect(table, file: path, defaultComponent: .unet, adapterName: "default", into: &result)
        }
        // diffusers ≥ 0.33 records the peft config (lora_alpha, r, patterns) in the metadata.
        var source = "rank (no alpha stored)"
        var adapterAlpha: Double?
        if let text = table.metadata["lora_adapter_metadata"] {
            let json: JSONValue
            do { json = try StrictJSONParser.parse(text) } catch {
                throw FormatError(.malformed, file: path, "metadata lora_adapter_metadata is not valid JSON: \(error)")
            }
            guard let entries = json.objectValue else {
                throw FormatError(.malformed, file: path, "metadata lora_adapter_metadata is \(json.serialized().prefix(60)); expected a JSON object of peft LoraConfig keys")
            }
            let unetConfig = JSONValue.object(entries.compactMap { key, value in
                key.hasPrefix("unet.") ? (String(key.dropFirst("unet.".count)), value) : nil
            })
            if unetConfig["r"] != nil || unetConfig["lora_alpha"] != nil {
                let peft = try PeftLoRAConfig(unetConfig, file: path + " (metadata lora_adapter_metadata)")
                try peft.apply(to: &result.lora)
                adapterAlpha = peft.alpha
                source = "file metadata (lora_adapter_metadata)"
            }
        }
        result.adapters = LoRAAdapter.summarise(result.lora) { _ in adapterAlpha.map { ($0, source) } }
        return result
    }

    /// Pairs up peft / diffusers LoRA tensors; plain and `base_layer` tensors go to `tensors`.
    static func collect(
        _ table: TensorTable, file: String, defaultComponent: ModelComponent, adapterName: String,
        into result: inout LoadedCheckpoint
    ) throws {
        var pairs = LoRAPairs(file: file)
        for (name, view) in table.tensors {
            if let key = DiffusersLoRANaming.parse(name) {
                guard let module = key.canonicalModule(default: defaultComponent) else { continue }
                if key.kind == .magnitude {
                    throw FormatError(.unsupported, file: file, tensor: name, "DoRA magnitude vectors are not supported; only plain LoRA can be merged exactly")
                }
                if key.kind == .upBias {
                    throw FormatError(.unsupported, file: file, tensor: name, "LoRA with a bias on lora_B (peft lora_bias) is not supported")
                }
                try pairs.add(module: module, adapter: key.adapter ?? adapterName, kind: key.kind, key: name, view: view)
            } else if let plain = DiffusersLoRANaming.plainTensorName(name) {
                let component = plain.hasPrefix("unet.") || plain.hasPrefix("vae.") ? "" : defaultComponent.rawValue + "."
                try result.tensors.insert(component + plain, view, file: file)
            } else {
                result.unrecognized.append((name, "a LoRA-related tensor of a kind this toolchain does not read"))
            }
        }
        result.lora += try pairs.modules()
    }

    /// kohya / A1111: `lora_unet_<stem>.lora_down.weight`, `.lora_up.weight`, `.alpha`.
    static func collectKohya(_ table: TensorTable, file: String, into result: inout LoadedCheckpoint) throws {
        var pairs = LoRAPairs(file: file)
        for (name, view) in table.tensors {
            guard let (component, stem, kind) = KohyaNaming.split(name) else {
                result.unrecognized.append((name, name.hasPrefix("lora_") ? "kohya key of an unsupported LoRA variant (LoCon mid, LoHa, LoKr)" : "not a kohya LoRA key"))
                continue
            }
            if component == .textEncoder {
                result.unrecognized.append((name, "text-encoder LoRA (DLoRAL takes prompt embeddings as input; not applied)"))
                continue
            }
            if kind == .magnitude || kind == .upBias {
                throw FormatError(.unsupported, file: file, tensor: name, "DoRA / LoRA variants beyond plain LoRA are not supported")
            }
            // Without a target model the underscored stem is resolved by the diffusers module
            // vocabulary; `merge` re-resolves against the base model's own module names.
            try pairs.add(module: "unet." + KohyaVocabulary.modulePath(forStem: stem), adapter: "default", kind: kind, key: name, view: view)
        }
        result.lora += try pairs.modules()
    }

    static func checkPair(down: TensorView, up: TensorView, file: String, key: String) throws {
        guard down.shape.count >= 2, up.shape.count >= 2, down.shape[0] == up.shape[1] else {
            throw FormatError(.malformed, file: file, tensor: key,
                              "LoRA shapes do not pair: down \(down.shape), up \(up.shape); expected down [r, in, …] and up [out, r, …]")
        }
        guard up.shape.count == 2 || up.shape.dropFirst(2).allSatisfy({ $0 == 1 }) else {
            throw FormatError(.malformed, file: file, tensor: key, "LoRA up weight \(up.shape) must be [out, r] or [out, r, 1, 1]")
        }
    }
}

/// Collects the down / up / alpha tensors of each (module, adapter) in file order and checks
/// that they pair up.
struct LoRAPairs {
    private struct Pair {
        var down: TensorView?
        var up: TensorView?
        var alpha: Double?
        var firstKey: String
        var downKey = ""
    }

    let file: String
    private var pairs: [String: Pair] = [:]
    private var order: [(module: String, adapter: String)] = []

    init(file: String) { self.file = file }

    mutating func add(module: String, adapter: String, kind: LoRAKeyKind, key: String, view: TensorView) throws {
        let id = module + "\u{0}" + adapter
        if pairs[id] == nil {
            pairs[id] = Pair(firstKey: key)
            order.append((module, adapter))
        }
        switch kind {
        case .down:
            pairs[id]!.down = view
            pairs[id]!.downKey = key
        case .up: pairs[id]!.up = view
        case .alpha:
            // kohya stores alpha as a 0-dim (or 1-element) float tensor.
            guard view.dtype != .bool, view.elementCount == 1 else {
                throw FormatError(.malformed, file: file, tensor: key, "alpha is a \(view.dtype.rawValue) tensor of shape \(view.shape); expected one number (a 0-dim tensor)")
            }
            let value = view.toFloat32()[0]
            guard value.isFinite else {
                throw FormatError(.malformed, file: file, tensor: key, "alpha is \(value); expected a finite number (scale = alpha / rank)")
            }
            pairs[id]!.alpha = Double(value)
        case .magnitude, .upBias: break
        }
    }

    /// The complete pairs as modules; a missing half is an error naming the module.
    func modules() throws -> [LoRAModule] {
        try order.map { module, adapter in
            let pair = pairs[module + "\u{0}" + adapter]!
            guard let down = pair.down, let up = pair.up else {
                throw FormatError(.malformed, file: file, tensor: pair.firstKey,
                                  "LoRA \(pair.down == nil ? "down (lora_A / lora_down)" : "up (lora_B / lora_up)") weight for module \(module) adapter \(adapter) is missing")
            }
            try LoRAFileReader.checkPair(down: down, up: up, file: file, key: pair.firstKey)
            return LoRAModule(module: module, adapter: adapter, down: down, up: up, alpha: pair.alpha, sourceKey: pair.downKey)
        }
    }
}

/// Turns a kohya stem (`down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q`) back into a
/// diffusers module path by the vocabulary of diffusers UNet module names.
enum KohyaVocabulary {
    /// Multi-word names that contain underscores, longest first.
    static let compounds: [[Substring]] = [
        "down_blocks", "up_blocks", "mid_block", "transformer_blocks", "time_embedding", "time_emb_proj",
        "conv_shortcut", "conv_norm_out", "conv_in", "conv_out", "proj_in", "proj_out", "to_q", "to_k", "to_v",
        "to_out", "linear_1", "linear_2", "add_embedding", "class_embedding",
    ].map { $0.split(separator: "_") }.sorted { $0.count > $1.count }

    static func modulePath(forStem stem: String) -> String {
        let words = stem.split(separator: "_")
        var parts: [String] = []
        var i = 0
        outer: while i < words.count {
            for compound in compounds where i + compound.count <= words.count {
                if Array(words[i..<(i + compound.count)]) == compound {
                    parts.append(compound.joined(separator: "_"))
                    i += compound.count
                    continue outer
                }
            }
            parts.append(String(words[i]))
            i += 1
        }
        return parts.joined(separator: ".")
    }
}
