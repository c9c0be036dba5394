import DLoRALFormats

/// DLoRAL's `model.pkl`: module lists per adapter family, the two ranks, the
/// peft-wrapped UNet state dict and the CFR (`state_dict_bpp`).
enum DLoRALCheckpointReader {
    /// Adapter names DLoRAL trains: D-LoRA (quality) and C-LoRA (consistency) per UNet part.
    static let adapterNames = ["encoder", "decoder", "others"].flatMap { part in
        ["quality", "consistency"].map { "default_\(part)_\($0)" }
    }

    /// peft's default `lora_alpha`, which DLoRAL's training script does not change and the
    /// checkpoint does not store.
    static let defaultAlpha = 8.0

    static func recognises(_ root: PickleValue) -> Bool {
        root["state_dict_unet"] != nil && (root["lora_rank_unet_quality"] != nil || root["lora_rank_unet_consistency"] != nil)
    }

    static func read(_ checkpoint: TorchCheckpoint) throws -> LoadedCheckpoint {
        let path = checkpoint.path
        let root = checkpoint.root
        var result = LoadedCheckpoint(path: path, format: .torchZip, dialect: .dloral)
        result.files = [path]

        var ranks: [String: Int] = [:]
        for family in ["quality", "consistency"] {
            let key = "lora_rank_unet_\(family)"
            if let value = root[key] {
                guard let rank = value.intValue, rank > 0 else {
                    throw FormatError(.malformed, file: path, "\(key) must be a positive integer, found \(value.kindName)")
                }
                ranks[family] = rank
                result.notes[key] = .int(rank)
            }
        }
        var moduleLists: [String: [String]] = [:]
        for part in ["encoder", "decoder", "others"] {
            for family in ["quality", "consistency"] {
                let key = "unet_lora_\(part)_modules_\(family)"
                guard let value = root[key] else { continue }
                guard let names = value.stringArrayValue else {
                    throw FormatError(.malformed, file: path, "\(key) must be a list of module names, found \(value.kindName)")
                }
                moduleLists["default_\(part)_\(family)"] = names
                result.notes[key] = .int(names.count)
            }
        }

        guard let unetValue = root["state_dict_unet"], unetValue.dictValue != nil else {
            throw FormatError(.malformed, file: path, "state_dict_unet must be a dict of tensors")
        }
        let unet = TorchCheckpoint.flatten(unetValue, prefix: "")
        try LoRAFileReader.collect(unet, file: path, defaultComponent: .unet, adapterName: "default", into: &result)

        if let cfrValue = root["state_dict_bpp"] {
            guard cfrValue.dictValue != nil else {
                throw FormatError(.malformed, file: path, "state_dict_bpp must be a dict of tensors")
            }
            for (name, view) in TorchCheckpoint.flatten(cfrValue, prefix: "").tensors {
                try result.tensors.insert("cfr.\(name)", view, file: path)
            }
        }

        // Every adapter's modules must be the ones its list names, at the recorded rank.
        for module in result.lora {
            guard adapterNames.contains(module.adapter) else {
                throw FormatError(.invalidModel, file: path, tensor: "\(module.module).lora_A.\(module.adapter).weight",
                                  "unknown adapter '\(module.adapter)'; DLoRAL checkpoints hold \(adapterNames.joined(separator: ", "))")
            }
            let family = module.adapter.hasSuffix("quality") ? "quality" : "consistency"
            if let rank = ranks[family], module.rank != rank {
                throw FormatError(.invalidModel, file: path, tensor: "\(module.module).lora_A.\(module.adapter).weight",
                                  "rank \(module.rank) but lora_rank_unet_\(family) is \(rank)")
            }
        }
        for (adapter, names) in moduleLists {
            let have = Set(result.lora.filter { $0.adapter == adapter }.map { String($0.module.dropFirst("unet.".count)) })
            let missing = names.filter { !have.contains($0) }
            if !missing.isEmpty {
                result.notes["missing_modules_\(adapter)"] = .array(missing.prefix(10).map { .string($0) })
            }
        }

        result.adapters = LoRAAdapter.summarise(result.lora) { _ in (defaultAlpha, "dloral-default (peft lora_alpha)") }
        let unetTable = result.tensors(of: .unet)
        if let config = ConfigInference.unetConfig(unetTable) {
            result.configs[.unet] = config
            result.inferredConfigs.insert(.unet)
        }
        return result
    }
}
