import DLoRALFormats

/// Builds diffusers `config.json` values from tensor shapes, for checkpoints that ship none
/// (LDM single files, bare safetensors, DLoRAL's model.pkl).
///
/// What the weights cannot tell (GroupNorm groups, number of attention heads) falls back to the
/// SD 2.x conventions: 32 groups, 64-dimensional heads. `inspect` marks such configs inferred.
public enum ConfigInference {
    /// Number of distinct `<prefix>.<N>.` indices among `names`.
    static func indexCount(_ names: [String], prefix: String) -> Int {
        var seen = Set<Int>()
        for name in names where name.hasPrefix(prefix) {
            let rest = name.dropFirst(prefix.count)
            if let dot = rest.firstIndex(of: "."), let n = Int(rest[..<dot]) { seen.insert(n) }
        }
        return seen.count
    }

    /// UNet2DConditionModel config from canonical UNet tensors (no `unet.` prefix).
    public static func unetConfig(_ table: TensorTable) -> JSONValue? {
        let names = table.names
        guard let convIn = table["conv_in.weight"], convIn.shape.count == 4 else { return nil }
        let downCount = indexCount(names, prefix: "down_blocks.")
        let upCount = indexCount(names, prefix: "up_blocks.")
        guard downCount > 0 else { return nil }
        var channels: [Int] = []
        var downTypes: [JSONValue] = []
        var heads: [JSONValue] = []
        let d = UNetConfig.sd21Base
        var crossDim = d.crossAttentionDim
        var linearProjection = true
        var transformerLayers: [JSONValue] = []
        for i in 0..<downCount {
            guard let conv = table["down_blocks.\(i).resnets.0.conv2.weight"] else { return nil }
            channels.append(conv.shape[0])
            let hasAttention = table["down_blocks.\(i).attentions.0.proj_in.weight"] != nil
            downTypes.append(.string(hasAttention ? "CrossAttnDownBlock2D" : "DownBlock2D"))
            heads.append(.int(max(conv.shape[0] / 64, 1)))
            if hasAttention {
                if let k = table["down_blocks.\(i).attentions.0.transformer_blocks.0.attn2.to_k.weight"] {
                    crossDim = k.shape[1]
                }
                linearProjection = table["down_blocks.\(i).attentions.0.proj_in.weight"]!.shape.count == 2
                transformerLayers.append(.int(indexCount(names, prefix: "down_blocks.\(i).attentions.0.transformer_blocks.")))
            } else {
                transformerLayers.append(.int(1))
            }
        }
        var upTypes: [JSONValue] = []
        for i in 0..<upCount {
            upTypes.append(.string(table["up_blocks.\(i).attentions.0.proj_in.weight"] != nil ? "CrossAttnUpBlock2D" : "UpBlock2D"))
        }
        let layers = indexCount(names, prefix: "down_blocks.0.resnets.")
        let outChannels = table["conv_out.weight"]?.shape[0] ?? d.outChannels
        return .object([
            ("_class_name", .string("UNet2DConditionModel")),
            ("act_fn", .string("silu")),
            ("attention_head_dim", .array(heads)),
            ("block_out_channels", .array(channels.map { .int($0) })),
            ("center_input_sample", .bool(false)),
            ("cross_attention_dim", .int(crossDim)),
            ("down_block_types", .array(downTypes)),
            ("downsample_padding", .int(1)),
            ("flip_sin_to_cos", .bool(true)),
            ("freq_shift", .int(0)),
            ("in_channels", .int(convIn.shape[1])),
            ("layers_per_block", .int(layers)),
            ("mid_block_scale_factor", .int(1)),
            ("norm_eps", .double(1e-5)),
            ("norm_num_groups", .int(d.normNumGroups)),
            ("out_channels", .int(outChannels)),
            ("sample_size", .int(64)),
            ("transformer_layers_per_block", .array(transformerLayers)),
            ("up_block_types", .array(upTypes)),
            ("use_linear_projection", .bool(linearProjection)),
        ])
    }

    /// AutoencoderKL config from canonical VAE tensors (no `vae.` prefix).
    public static func vaeConfig(_ table: TensorTable) -> JSONValue? {
        let names = table.names
        guard let convIn = table["encoder.conv_in.weight"] else { return nil }
        let blocks = indexCount(names, prefix: "encoder.down_blocks.")
        var channels: [Int] = []
        for i in 0..<blocks {
            guard let conv = table["encoder.down_blocks.\(i).resnets.0.conv2.weight"] else { return nil }
            channels.append(conv.shape[0])
        }
        let d = VAEConfig.sd21
        let latent = table["decoder.conv_in.weight"]?.shape[1] ?? d.latentChannels
        let out = table["decoder.conv_out.weight"]?.shape[0] ?? d.outChannels
        return .object([
            ("_class_name", .string("AutoencoderKL")),
            ("act_fn", .string("silu")),
            ("block_out_channels", .array(channels.map { .int($0) })),
            ("down_block_types", .array(Array(repeating: .string("DownEncoderBlock2D"), count: blocks))),
            ("in_channels", .int(convIn.shape[1])),
            ("latent_channels", .int(latent)),
            ("layers_per_block", .int(indexCount(names, prefix: "encoder.down_blocks.0.resnets."))),
            ("norm_num_groups", .int(d.normNumGroups)),
            ("out_channels", .int(out)),
            ("sample_size", .int(512)),
            ("scaling_factor", .double(0.18215)),
            ("up_block_types", .array(Array(repeating: .string("UpDecoderBlock2D"), count: blocks))),
        ])
    }
}
