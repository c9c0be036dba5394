import DLoRALFormats
import Testing

@testable import DLoRALConvert

// The LDM and kohya references are produced by Tools/fixtures/make_naming_reference.py from
// diffusers itself (its LDM → diffusers converter, and the UNet's named_modules); the tests read only
// the committed JSON.

private func fixture(_ name: String) throws -> JSONValue {
    var dir = #filePath.split(separator: "/", omittingEmptySubsequences: false)
    dir.removeLast(2)  // …/Tests/DLoRALConvertTests/NamingTests.swift → …/Tests
    return try JSONValue.read(path: dir.joined(separator: "/") + "/Fixtures/naming/\(name)")
}

private struct Pair {
    var ldm: String
    var diffusers: String
    var shape: [Int]
    var ldmShape: [Int]?
}

private func pairs(_ doc: JSONValue) -> [Pair] {
    (doc["pairs"]?.arrayValue ?? []).map { e in
        Pair(
            ldm: e["ldm"]?.stringValue ?? "", diffusers: e["diffusers"]?.stringValue ?? "",
            shape: e["shape"]?.arrayValue?.compactMap(\.intValue) ?? [],
            ldmShape: e["ldm_shape"]?.arrayValue?.compactMap(\.intValue))
    }
}

private func layouts(_ doc: JSONValue) throws -> (UNetLayout, VAELayout) {
    (try UNetLayout(diffusersConfig: #require(doc["unet_config"])),
     try VAELayout(diffusersConfig: #require(doc["vae_config"])))
}

@Suite("Naming")
struct NamingTests {
    // MARK: LDM

    @Test("LDM → diffusers gives exactly diffusers' own pairs", arguments: ["ldm_tiny.json", "ldm_sd21.json"])
    func ldmMatchesDiffusers(file: String) throws {
        let doc = try fixture(file)
        let all = pairs(doc)
        #expect(all.count > 900)
        let (unet, vae) = try layouts(doc)
        let naming = LDMNaming(unet: unet, vae: vae)
        var wrong: [String] = []
        var names: Set<String> = []
        for p in all {
            let m = naming.canonicalName(forLDMKey: p.ldm)
            let component: ModelComponent = p.diffusers.hasPrefix("unet.") ? .unet : .vae
            if m?.name != p.diffusers || m?.component != component
                || m?.reshapeConv1x1ToLinear != (p.ldmShape != nil)
            {
                wrong.append("\(p.ldm) → \(String(describing: m)) (want \(p.diffusers))")
            }
            if let m { names.insert(m.name) }
        }
        #expect(wrong.isEmpty, "\(wrong.count) wrong, first: \(wrong.prefix(5))")
        #expect(names.count == all.count)
        // The reshape flag is exactly LDM's [C, C, 1, 1] over diffusers' [C, C].
        for p in all where p.ldmShape != nil {
            #expect(p.ldmShape == p.shape + [1, 1])
        }
    }

    @Test("the layout inferred from LDM keys and shapes equals the config's", arguments: ["ldm_tiny.json", "ldm_sd21.json"])
    func inferredLayout(file: String) throws {
        let doc = try fixture(file)
        let all = pairs(doc)
        var shapes: [String: [Int]] = [:]
        for p in all { shapes[p.ldm] = p.ldmShape ?? p.shape }
        let keys = all.map(\.ldm) + ["cond_stage_model.model.ln_final.weight", "betas", "model_ema.decay"]
        let (unet, vae) = try layouts(doc)
        let inferredUNet = try #require(UNetLayout.inferred(fromLDMKeys: keys, shape: { shapes[$0] }))
        let inferredVAE = try #require(VAELayout.inferred(fromLDMKeys: keys, shape: { shapes[$0] }))
        #expect(inferredUNet == unet)
        #expect(inferredVAE == vae)

        // Without shapes the block structure is still found.
        let bare = try #require(UNetLayout.inferred(fromLDMKeys: keys))
        #expect(bare.layersPerBlock == unet.layersPerBlock)
        #expect(bare.downBlockHasAttention == unet.downBlockHasAttention)
        #expect(bare.upBlockHasAttention == unet.upBlockHasAttention)
        #expect(bare.blockOutChannels == nil)

        // And from the diffusers names of the same model.
        let fromNames = try #require(UNetLayout(diffusersNames: all.map(\.diffusers)))
        #expect(fromNames.layersPerBlock == unet.layersPerBlock)
        #expect(fromNames.downBlockHasAttention == unet.downBlockHasAttention)
        #expect(fromNames.upBlockHasAttention == unet.upBlockHasAttention)
    }

    @Test func sd21DefaultsMatchTheFullSizeFixture() throws {
        let (unet, vae) = try layouts(try fixture("ldm_sd21.json"))
        #expect(unet == .sd21Base)
        #expect(vae == .sd21Base)
        // An empty config falls back to SD 2.1-base too.
        #expect(try UNetLayout(diffusersConfig: .object([])) == .sd21Base)
        #expect(try VAELayout(diffusersConfig: .object([])) == .sd21Base)
    }

    @Test func keysOutsideTheModelAreReportedWithAReason() {
        let naming = LDMNaming()
        let cases: [(String, String)] = [
            ("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight", "text encoder"),
            ("model_ema.decay", "EMA"),
            ("model_ema.diffusion_modelinput_blocks00weight", "EMA"),
            ("alphas_cumprod", "schedule"),
            ("betas", "schedule"),
            ("posterior_mean_coef2", "schedule"),
            ("first_stage_model.loss.logvar", "loss"),
            ("model.diffusion_model.input_blocks.12.0.in_layers.0.weight", "UNet layout"),
            ("model.diffusion_model.input_blocks.1.0.in_layers.1.weight", "UNet layout"),
            ("model.diffusion_model.label_emb.0.0.weight", "UNet layout"),
            ("first_stage_model.decoder.up.0.upsample.conv.weight", "VAE layout"),
            ("first_stage_model.encoder.down.3.downsample.conv.weight", "VAE layout"),
            ("something.else", "not a tensor"),
        ]
        for (key, reason) in cases {
            #expect(naming.canonicalName(forLDMKey: key) == nil, "\(key)")
            guard case let .unmapped(text) = naming.resolve(key) else {
                Issue.record("\(key) should be unmapped")
                continue
            }
            #expect(text.contains(reason), "\(key): \(text)")
        }
    }

    @Test func upsamplerIndexDependsOnAttention() {
        let naming = LDMNaming()  // SD 2.1: up block 0 has no attention, 1 and 2 have
        let p = "model.diffusion_model."
        #expect(naming.canonicalName(forLDMKey: p + "output_blocks.2.1.conv.weight")?.name == "unet.up_blocks.0.upsamplers.0.conv.weight")
        #expect(naming.canonicalName(forLDMKey: p + "output_blocks.2.2.conv.weight") == nil)
        #expect(naming.canonicalName(forLDMKey: p + "output_blocks.5.2.conv.bias")?.name == "unet.up_blocks.1.upsamplers.0.conv.bias")
        #expect(naming.canonicalName(forLDMKey: p + "output_blocks.5.1.proj_in.weight")?.name == "unet.up_blocks.1.attentions.2.proj_in.weight")
        #expect(naming.canonicalName(forLDMKey: p + "output_blocks.11.2.conv.weight") == nil)  // last block: no upsampler
        #expect(naming.canonicalName(forLDMKey: p + "input_blocks.3.0.op.weight")?.name == "unet.down_blocks.0.downsamplers.0.conv.weight")
        #expect(naming.canonicalName(forLDMKey: p + "input_blocks.10.1.proj_in.weight") == nil)  // DownBlock2D
        // The "vae." prefix diffusers also accepts for LDM VAEs.
        #expect(naming.canonicalName(forLDMKey: "vae.decoder.up.3.block.2.nin_shortcut.weight")?.name == "vae.decoder.up_blocks.0.resnets.2.conv_shortcut.weight")
    }

    @Test func otherBlockStructures() throws {
        // Two levels, one layer each, attention only on the way up at the top level.
        let unet = UNetLayout(layersPerBlock: [1, 1], downBlockHasAttention: [false, false], upBlockHasAttention: [false, true])
        let naming = LDMNaming(unet: unet, vae: VAELayout(blockCount: 2, layersPerBlock: 1))
        let p = "model.diffusion_model."
        #expect(naming.canonicalName(forLDMKey: p + "input_blocks.2.0.op.bias")?.name == "unet.down_blocks.0.downsamplers.0.conv.bias")
        #expect(naming.canonicalName(forLDMKey: p + "input_blocks.3.0.skip_connection.weight")?.name == "unet.down_blocks.1.resnets.0.conv_shortcut.weight")
        #expect(naming.canonicalName(forLDMKey: p + "input_blocks.4.0.in_layers.0.weight") == nil)
        #expect(naming.canonicalName(forLDMKey: p + "output_blocks.1.1.conv.weight")?.name == "unet.up_blocks.0.upsamplers.0.conv.weight")
        #expect(naming.canonicalName(forLDMKey: p + "output_blocks.3.1.transformer_blocks.0.ff.net.2.weight")?.name == "unet.up_blocks.1.attentions.1.transformer_blocks.0.ff.net.2.weight")
        #expect(naming.canonicalName(forLDMKey: p + "output_blocks.4.0.in_layers.0.weight") == nil)
        #expect(naming.canonicalName(forLDMKey: "first_stage_model.decoder.up.1.block.1.conv2.weight")?.name == "vae.decoder.up_blocks.0.resnets.1.conv2.weight")
        #expect(naming.canonicalName(forLDMKey: "first_stage_model.decoder.up.1.upsample.conv.weight")?.name == "vae.decoder.up_blocks.0.upsamplers.0.conv.weight")
        #expect(naming.canonicalName(forLDMKey: "first_stage_model.encoder.down.0.block.1.conv2.weight") == nil)

        // Per-block layers_per_block in a config.
        let config = try StrictJSONParser.parse(
            #"{"block_out_channels":[8,16],"layers_per_block":[1,3],"down_block_types":["DownBlock2D","CrossAttnDownBlock2D"],"up_block_types":["CrossAttnUpBlock2D","UpBlock2D"]}"#)
        let layout = try UNetLayout(diffusersConfig: config)
        #expect(layout.layersPerBlock == [1, 3])
        let n2 = LDMNaming(unet: layout)
        #expect(n2.canonicalName(forLDMKey: p + "input_blocks.5.1.norm.weight")?.name == "unet.down_blocks.1.attentions.2.norm.weight")
        #expect(n2.canonicalName(forLDMKey: p + "output_blocks.3.2.conv.weight")?.name == "unet.up_blocks.0.upsamplers.0.conv.weight")
        #expect(n2.canonicalName(forLDMKey: p + "output_blocks.5.0.out_layers.3.weight")?.name == "unet.up_blocks.1.resnets.1.conv2.weight")
    }

    @Test func badConfigsAreRejected() throws {
        let mismatch = try StrictJSONParser.parse(#"{"block_out_channels":[8,16],"down_block_types":["DownBlock2D"]}"#)
        #expect(throws: FormatError.self) { try UNetLayout(diffusersConfig: mismatch) }
        let wrongType = try StrictJSONParser.parse(#"{"block_out_channels":"320"}"#)
        #expect(throws: FormatError.self) { try UNetLayout(diffusersConfig: wrongType) }
        #expect(throws: FormatError.self) { try VAELayout(diffusersConfig: .array([])) }
    }

    // MARK: kohya

    @Test("kohya stems round-trip to every module", arguments: ["kohya_tiny.json", "kohya_sd21.json"])
    func kohyaRoundTrip(file: String) throws {
        let modules = try #require(try fixture(file)["modules"]?.arrayValue)
        #expect(modules.count > 380)
        let names = modules.compactMap { $0["module"]?.stringValue }
        let kohya = KohyaNaming(moduleNames: names)
        #expect(kohya.collisions.isEmpty)
        var wrong: [String] = []
        var ldmStems = 0
        for m in modules {
            let module = m["module"]?.stringValue ?? ""
            let stem = m["kohya"]?.stringValue ?? ""
            #expect(stem == KohyaNaming.underscored(module))
            if kohya.modulePath(forKohyaStem: stem) != module { wrong.append(stem) }
            if let ldm = m["kohya_ldm"]?.stringValue {
                ldmStems += 1
                if kohya.modulePath(forKohyaStem: ldm) != module { wrong.append(ldm) }
            }
        }
        #expect(wrong.isEmpty, "\(wrong.count) wrong, first: \(wrong.prefix(5))")
        #expect(ldmStems > 200)
        // Tensor names work as module names too.
        let fromTensors = KohyaNaming(moduleNames: names.map { "unet.\($0).weight" })
        #expect(fromTensors.modulePath(forKohyaStem: "mid_block_attentions_0_transformer_blocks_0_ff_net_0_proj") == "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj")
    }

    @Test func kohyaKeys() throws {
        let names = try #require(try fixture("kohya_tiny.json")["modules"]?.arrayValue).compactMap { $0["module"]?.stringValue }
        let kohya = KohyaNaming(moduleNames: names)
        let stem = "down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0"
        let module = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0"
        #expect(kohya.resolve("lora_unet_\(stem).lora_down.weight") == .unet(LoRAKey(module: module, adapter: nil, kind: .down, component: .unet, dialect: .kohya)))
        #expect(kohya.resolve("lora_unet_\(stem).lora_up.weight") == .unet(LoRAKey(module: module, adapter: nil, kind: .up, component: .unet, dialect: .kohya)))
        #expect(kohya.resolve("lora_unet_\(stem).alpha") == .unet(LoRAKey(module: module, adapter: nil, kind: .alpha, component: .unet, dialect: .kohya)))
        #expect(kohya.resolve("lora_unet_\(stem).dora_scale") == .unet(LoRAKey(module: module, adapter: nil, kind: .magnitude, component: .unet, dialect: .kohya)))
        #expect(kohya.resolve("lora_unet_input_blocks_1_1_proj_in.lora_up.weight") == .unet(LoRAKey(module: "down_blocks.0.attentions.0.proj_in", adapter: nil, kind: .up, component: .unet, dialect: .kohya)))
        #expect(kohya.resolve("lora_unet_output_blocks_2_1_conv.lora_down.weight") == .unet(LoRAKey(module: "up_blocks.0.upsamplers.0.conv", adapter: nil, kind: .down, component: .unet, dialect: .kohya)))
        #expect(kohya.resolve("lora_unet_input_blocks_3_0_op.alpha") == .unet(LoRAKey(module: "down_blocks.0.downsamplers.0.conv", adapter: nil, kind: .alpha, component: .unet, dialect: .kohya)))
        #expect(kohya.resolve("lora_unet_middle_block_0_emb_layers_1.alpha") == .unet(LoRAKey(module: "mid_block.resnets.0.time_emb_proj", adapter: nil, kind: .alpha, component: .unet, dialect: .kohya)))
        #expect(kohya.resolve("lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight") == .textEncoder(stem: "text_model_encoder_layers_0_self_attn_q_proj", kind: .down))
        #expect(kohya.resolve("lora_te2_text_model_encoder_layers_0_mlp_fc1.alpha") == .textEncoder(stem: "text_model_encoder_layers_0_mlp_fc1", kind: .alpha))
        #expect(kohya.resolve("lora_unet_down_blocks_9_resnets_0_conv1.lora_down.weight") == .unknownModule(stem: "down_blocks_9_resnets_0_conv1", kind: .down))
        #expect(kohya.resolve("lora_unet_input_blocks_99_1_proj_in.lora_down.weight") == .unknownModule(stem: "input_blocks_99_1_proj_in", kind: .down))
        if case .unsupported = kohya.resolve("lora_unet_\(stem).hada_w1_a") {} else { Issue.record("LoHa key should be unsupported") }
        if case .unsupported = kohya.resolve("lora_unet_\(stem).lora_mid.weight") {} else { Issue.record("LoCon mid should be unsupported") }
        #expect(kohya.resolve("unet.\(module).lora_A.weight") == nil)
        #expect(kohya.modulePath(forKohyaStem: "time_embed_0") == "time_embedding.linear_1")
        #expect(kohya.modulePath(forKohyaStem: "out_2") == "conv_out")
    }

    @Test func kohyaCollisionsAreDetected() {
        let kohya = KohyaNaming(moduleNames: ["a.b_c", "a_b.c", "a.d"])
        #expect(kohya.collisions == ["a_b_c": ["a.b_c", "a_b.c"]])
        #expect(kohya.modulePath(forKohyaStem: "a_b_c") == nil)
        #expect(kohya.modulePath(forKohyaStem: "a_d") == "a.d")
        #expect(kohya.resolve("lora_unet_a_b_c.lora_up.weight") == .ambiguous(stem: "a_b_c", candidates: ["a.b_c", "a_b.c"]))
    }

    // MARK: diffusers / peft

    @Test func diffusersAndPeftKeys() {
        let m = "down_blocks.0.attentions.0.transformer_blocks.0.attn1"
        let cases: [(String, LoRAKey?)] = [
            ("unet.\(m).to_q.lora.down.weight", LoRAKey(module: "\(m).to_q", adapter: nil, kind: .down, component: .unet, dialect: .diffusersLegacy)),
            ("unet.\(m).to_out.0.lora.up.weight", LoRAKey(module: "\(m).to_out.0", adapter: nil, kind: .up, component: .unet, dialect: .diffusersLegacy)),
            ("text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_linear_layer.down.weight",
             LoRAKey(module: "text_model.encoder.layers.0.self_attn.q_proj", adapter: nil, kind: .down, component: .textEncoder, dialect: .diffusersLegacy)),
            ("unet.\(m).processor.to_q_lora.down.weight", LoRAKey(module: "\(m).to_q", adapter: nil, kind: .down, component: .unet, dialect: .attentionProcessor)),
            ("\(m).processor.to_out_lora.up.weight", LoRAKey(module: "\(m).to_out.0", adapter: nil, kind: .up, component: nil, dialect: .attentionProcessor)),
            ("unet.\(m).to_k.lora_A.weight", LoRAKey(module: "\(m).to_k", adapter: nil, kind: .down, component: .unet, dialect: .peft)),
            ("unet.\(m).to_k.lora_B.weight", LoRAKey(module: "\(m).to_k", adapter: nil, kind: .up, component: .unet, dialect: .peft)),
            ("unet.\(m).to_v.lora_A.style.weight", LoRAKey(module: "\(m).to_v", adapter: "style", kind: .down, component: .unet, dialect: .peft)),
            ("base_model.model.conv_in.lora_A.weight", LoRAKey(module: "conv_in", adapter: nil, kind: .down, component: nil, dialect: .peft)),
            ("base_model.model.up_blocks.1.resnets.0.conv_shortcut.lora_B.weight", LoRAKey(module: "up_blocks.1.resnets.0.conv_shortcut", adapter: nil, kind: .up, component: nil, dialect: .peft)),
            ("down_blocks.0.resnets.0.conv1.lora_A.default_encoder_quality.weight",
             LoRAKey(module: "down_blocks.0.resnets.0.conv1", adapter: "default_encoder_quality", kind: .down, component: nil, dialect: .peft)),
            ("mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.lora_B.default_others_consistency.weight",
             LoRAKey(module: "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj", adapter: "default_others_consistency", kind: .up, component: nil, dialect: .peft)),
            ("base_model.model.\(m).to_q.lora_magnitude_vector", LoRAKey(module: "\(m).to_q", adapter: nil, kind: .magnitude, component: nil, dialect: .peft)),
            ("\(m).to_q.lora_magnitude_vector.ada.weight", LoRAKey(module: "\(m).to_q", adapter: "ada", kind: .magnitude, component: nil, dialect: .peft)),
            ("\(m).to_q.lora_B.ada.bias", LoRAKey(module: "\(m).to_q", adapter: "ada", kind: .upBias, component: nil, dialect: .peft)),
            ("\(m).to_q.base_layer.weight", nil),
            ("\(m).to_q.weight", nil),
            ("unet.conv_in.weight", nil),
            ("lora_unet_conv_in.lora_down.weight", nil),
            ("lora_A.weight", nil),
        ]
        for (key, want) in cases {
            #expect(DiffusersLoRANaming.parse(key) == want, "\(key)")
        }
    }

    @Test func peftBaseLayerNames() {
        #expect(DiffusersLoRANaming.baseLayerTensorName("down_blocks.0.resnets.0.conv1.base_layer.weight") == "down_blocks.0.resnets.0.conv1.weight")
        #expect(DiffusersLoRANaming.baseLayerTensorName("base_model.model.conv_in.base_layer.bias") == "conv_in.bias")
        #expect(DiffusersLoRANaming.baseLayerTensorName("conv_in.weight") == nil)
        #expect(DiffusersLoRANaming.plainTensorName("conv_in.base_layer.weight") == "conv_in.weight")
        #expect(DiffusersLoRANaming.plainTensorName("down_blocks.0.resnets.0.norm1.weight") == "down_blocks.0.resnets.0.norm1.weight")
        #expect(DiffusersLoRANaming.plainTensorName("conv_in.lora_A.default_encoder_quality.weight") == nil)
        #expect(DiffusersLoRANaming.plainTensorName("conv_in.lora_embedding_A.default") == nil)
        let key = LoRAKey(module: "conv_in", adapter: nil, kind: .down, component: nil, dialect: .peft)
        #expect(key.canonicalModule() == nil)
        #expect(key.canonicalModule(default: .unet) == "unet.conv_in")
    }
}
