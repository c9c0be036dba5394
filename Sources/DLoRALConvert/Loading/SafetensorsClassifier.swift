import DLoRALFormats

/// Decides what a flat table of tensors is (LDM single file, LoRA of some dialect, diffusers
/// component weights) and renames it to canonical names.
enum SafetensorsClassifier {
    static let vaeRoots = ["encoder.", "decoder.", "quant_conv.", "post_quant_conv."]
    static let unetRoots = ["conv_in.", "conv_out.", "conv_norm_out.", "time_embedding.", "down_blocks.", "up_blocks.", "mid_block.", "add_embedding.", "class_embedding."]
    static let componentPrefixes = ModelComponent.allCases.map { $0.rawValue + "." }

    static func classify(_ table: TensorTable, path: String, into base: LoadedCheckpoint) throws -> LoadedCheckpoint {
        let names = table.names
        if names.contains(where: { $0.hasPrefix(LDMNaming.unetPrefix) || $0.hasPrefix("first_stage_model.") }) {
            return try readLDM(table, path: path, into: base)
        }
        if LoRAFileReader.looksLikeLoRA(names) {
            return try LoRAFileReader.read(table, path: path, into: base)
        }
        var result = base
        for (name, view) in table.tensors {
            if componentPrefixes.contains(where: { name.hasPrefix($0) }) {
                try result.tensors.insert(name, view, file: path)
            } else if vaeRoots.contains(where: { name.hasPrefix($0) }) {
                try result.tensors.insert("vae." + name, view, file: path)
            } else if unetRoots.contains(where: { name.hasPrefix($0) }) {
                try result.tensors.insert("unet." + name, view, file: path)
            } else if CFRNaming.recognises(name) {
                try result.tensors.insert("cfr." + name, view, file: path)
                result.dialect = .cfr
            } else {
                result.unrecognized.append((name, "not a Stable Diffusion UNet, VAE or DLoRAL CFR tensor name"))
            }
        }
        inferConfigs(&result)
        return result
    }

    static func inferConfigs(_ result: inout LoadedCheckpoint) {
        for component in [ModelComponent.unet, .vae] where result.configs[component] == nil {
            let table = result.tensors(of: component)
            guard table.count > 0 else { continue }
            if let config = DiffusersFolderReader.inferConfig(component, table) {
                result.configs[component] = config
                result.inferredConfigs.insert(component)
            }
        }
    }

    /// An original LDM / CompVis single file: UNet and VAE renamed, everything else listed.
    static func readLDM(_ table: TensorTable, path: String, into base: LoadedCheckpoint) throws -> LoadedCheckpoint {
        var result = base
        result.format = .ldm
        result.dialect = .ldm
        let shape: (String) -> [Int]? = { table[$0]?.shape }
        let unetLayout = UNetLayout.inferred(fromLDMKeys: table.names, shape: shape)
        let vaeLayout = VAELayout.inferred(fromLDMKeys: table.names, shape: shape)
        let naming = LDMNaming(unet: unetLayout ?? .sd21Base, vae: vaeLayout ?? .sd21Base)
        for (name, view) in table.tensors {
            switch naming.resolve(name) {
            case let .mapped(mapping):
                var mapped = view
                if mapping.reshapeConv1x1ToLinear, view.shape.count == 4 {
                    mapped = TensorView(dtype: view.dtype, shape: Array(view.shape.prefix(2)), storage: view.storage,
                                        byteOffset: view.byteOffset, strides: Array(view.strides.prefix(2)))
                }
                try result.tensors.insert(mapping.name, mapped, file: path)
            case let .unmapped(reason):
                result.unrecognized.append((name, reason))
            }
        }
        inferConfigs(&result)
        return result
    }
}

/// DLoRAL's Cross-Frame Retrieval module names (SpyNet and the cross-frame attention).
enum CFRNaming {
    /// Modules inference runs: SpyNet (flow) and the cross-frame attention.
    static let inferenceRoots = ["spynet.", "cross_attn_module."]
    /// Modules in DLoRAL's checkpoint that inference never runs (dropped by `merge`).
    static let unusedRoots = ["feat_extract.", "weight_predict.", "weight_predict_final.", "reconstruction_feat.", "conv_hr.", "conv_last."]
    static var roots: [String] { inferenceRoots + unusedRoots }
    static func recognises(_ name: String) -> Bool {
        roots.contains { name.hasPrefix($0) }
    }
}
