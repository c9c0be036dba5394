import DLoRALFormats
import Foundation
import Testing

/// Issue 16, items 7, 8 and 14: merge refuses non-finite results and mistyped adapter configs,
/// merge and quantize refuse configs that do not describe the weights, and the outputs do not
/// depend on the paths typed.
@Suite("merge/quantize: adapter values, configs, provenance")
struct ConfigHardeningTests {
    static let fm = FileManager.default

    static func temporaryFolder() throws -> URL {
        let url = fm.temporaryDirectory.appendingPathComponent("dloral-cfg-\(UUID().uuidString)")
        try fm.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func fixture(_ relative: String) -> URL { CommandRunner.fixtures.appendingPathComponent("tiny/\(relative)") }

    /// Runs a command that must fail with exit 2, one line on stderr naming `mentions`, no output.
    func expectRefused(_ arguments: [String], output: URL, mentions: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let result = try CommandRunner.run("dloral-convert", arguments)
        #expect(result.status == 2, "exit \(result.status): \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)", sourceLocation: sourceLocation)
        for text in mentions {
            #expect(result.stderr.contains(text), "'\(text)' not in: \(result.stderr)", sourceLocation: sourceLocation)
        }
        #expect(!Self.fm.fileExists(atPath: output.path), "an output was left behind", sourceLocation: sourceLocation)
        let leftovers = (try? Self.fm.contentsOfDirectory(atPath: output.deletingLastPathComponent().path)) ?? []
        #expect(!leftovers.contains { $0.hasPrefix(".\(output.lastPathComponent).tmp") }, "temporary folder left: \(leftovers)", sourceLocation: sourceLocation)
    }

    func expectSucceeds(_ arguments: [String], directory: URL? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let result = try CommandRunner.run("dloral-convert", arguments, directory: directory)
        #expect(result.status == 0, "exit \(result.status): \(result.stderr)", sourceLocation: sourceLocation)
    }

    static func view(_ values: [Float], _ shape: [Int]) -> TensorView {
        TensorView(dtype: .float32, shape: shape, storage: .copying(values, origin: "test"))
    }

    /// A kohya LoRA of rank 1 on `conv_in` (base weight [8, 4, 3, 3]): lora_down [1, 4, 3, 3] of
    /// ones, lora_up [8, 1, 1, 1] of `up`, and an alpha tensor. Each merged value is
    /// w + (alpha / 1) × up × 1.
    static func convInLoRA(up: Float, alpha: [Float], alphaShape: [Int] = [], in folder: URL) throws -> String {
        var table = TensorTable()
        try table.insert("lora_unet_conv_in.lora_down.weight", view([Float](repeating: 1, count: 36), [1, 4, 3, 3]), file: "test")
        try table.insert("lora_unet_conv_in.lora_up.weight", view([Float](repeating: up, count: 8), [8, 1, 1, 1]), file: "test")
        try table.insert("lora_unet_conv_in.alpha", view(alpha, alphaShape), file: "test")
        let path = folder.appendingPathComponent("lora-\(UUID().uuidString.prefix(8)).safetensors").path
        try SafetensorsWriter.write(to: path, tensors: table)
        return path
    }

    // MARK: - Item 7: non-finite results and mistyped adapter configs

    /// scale = alpha / rank = 2; 2 × 3e38 = 6e38 exceeds float32's largest value 3.4028235e38, so
    /// all 8 × 4 × 3 × 3 = 288 merged conv_in values are inf. 1e38 gives 2e38, which fits.
    @Test func mergeRefusesAnOverflowingResult() throws {
        let folder = try Self.temporaryFolder()
        defer { try? Self.fm.removeItem(at: folder) }
        let out = folder.appendingPathComponent("merged")
        let base = Self.fixture("base").path
        let overflow = try Self.convInLoRA(up: 3e38, alpha: [2], in: folder)
        try expectRefused(["merge", "--base", base, "--lora", overflow, "--output", out.path],
                          output: out, mentions: ["conv_in.weight", "288 non-finite", "scale 2.0", "lora_unet_conv_in", "inf"])

        let fits = try Self.convInLoRA(up: 1e38, alpha: [2], in: folder)
        try expectSucceeds(["merge", "--base", base, "--lora", fits, "--output", out.path])
        let merged = try SafetensorsFile(path: out.appendingPathComponent("unet/diffusion_pytorch_model.safetensors").path).table
        let values = try #require(merged["conv_in.weight"]).toFloat32()
        #expect(values.allSatisfy { $0.isFinite && abs($0 - 2e38) <= 2e38 * 1e-6 })
    }

    /// 2 × 5e4 = 1e5 is finite in fp32 but above fp16's largest value 65504 (and below bf16's).
    @Test func mergeRefusesAResultThatOverflowsTheOutputDType() throws {
        let folder = try Self.temporaryFolder()
        defer { try? Self.fm.removeItem(at: folder) }
        let out = folder.appendingPathComponent("merged")
        let lora = try Self.convInLoRA(up: 5e4, alpha: [2], in: folder)
        let base = Self.fixture("base").path
        try expectRefused(["merge", "--base", base, "--lora", lora, "--output", out.path, "--dtype", "fp16"],
                          output: out, mentions: ["conv_in.weight", "288 non-finite fp16", "scale 2.0"])
        try expectSucceeds(["merge", "--base", base, "--lora", lora, "--output", out.path, "--dtype", "bf16"])
    }

    /// peft's adapter_config.json: a wrong type is an error naming the file and key, never the default.
    @Test(arguments: [
        ("\"lora_alpha\": 16", "\"lora_alpha\": \"x\"", ["adapter_config.json", "\"lora_alpha\"", "\"x\""]),
        ("\"lora_alpha\": 16", "\"lora_alpha\": 1e308", ["alpha 1e+308", "float32"]),
        ("\"r\": 4", "\"r\": \"4\"", ["adapter_config.json", "\"r\"", "positive integer"]),
        ("\"conv1\": 2", "\"conv1\": 2.5", ["adapter_config.json", "rank_pattern.conv1"]),
        ("\"conv1\": 4", "\"conv1\": \"4\"", ["adapter_config.json", "alpha_pattern.conv1"]),
        ("\"use_rslora\": false", "\"use_rslora\": \"no\"", ["adapter_config.json", "use_rslora"]),
        // The fixture's tensors have rank 4 (conv1: 2); peft refuses another r (size mismatch).
        ("\"r\": 4", "\"r\": 8", ["adapter_config.json", "\"r\" is 8", "rank 4"]),
        ("\"conv1\": 2", "\"conv1\": 3", ["adapter_config.json", "rank_pattern.conv1\" is 3", "rank 2"]),
        ("\"peft_type\": \"LORA\"", "\"peft_type\": \"LOHA\"", ["adapter_config.json", "peft_type", "LOHA"]),
        ("\"lora_bias\": false", "\"lora_bias\": true", ["adapter_config.json", "\"lora_bias\" is true"]),
        ("\"layers_to_transform\": null", "\"layers_to_transform\": [0]", ["adapter_config.json", "\"layers_to_transform\" is [0]"]),
        ("\"bias\": \"none\"", "\"bias\": \"all\"", ["adapter_config.json", "\"bias\" is \"all\""]),
    ])
    func peftConfigTypesAreChecked(_ replace: String, _ with: String, _ mentions: [String]) throws {
        let folder = try Self.temporaryFolder()
        defer { try? Self.fm.removeItem(at: folder) }
        let peft = folder.appendingPathComponent("peft")
        try Self.fm.copyItem(at: Self.fixture("lora/peft"), to: peft)
        let configURL = peft.appendingPathComponent("adapter_config.json")
        let text = try String(contentsOf: configURL, encoding: .utf8)
        #expect(text.contains(replace))
        try text.replacingOccurrences(of: replace, with: with).write(to: configURL, atomically: true, encoding: .utf8)
        let out = folder.appendingPathComponent("merged")
        try expectRefused(["merge", "--base", Self.fixture("base").path, "--lora", peft.path, "--output", out.path],
                          output: out, mentions: mentions)
    }

    /// kohya alpha tensors must hold one finite number.
    @Test func kohyaAlphaIsChecked() throws {
        let folder = try Self.temporaryFolder()
        defer { try? Self.fm.removeItem(at: folder) }
        let out = folder.appendingPathComponent("merged")
        let base = Self.fixture("base").path
        let twoValues = try Self.convInLoRA(up: 0.01, alpha: [2, 3], alphaShape: [2], in: folder)
        try expectRefused(["merge", "--base", base, "--lora", twoValues, "--output", out.path],
                          output: out, mentions: ["lora_unet_conv_in.alpha", "[2]", "expected one number"])
        let notANumber = try Self.convInLoRA(up: 0.01, alpha: [.nan], in: folder)
        try expectRefused(["merge", "--base", base, "--lora", notANumber, "--output", out.path],
                          output: out, mentions: ["lora_unet_conv_in.alpha", "nan"])
    }

    /// diffusers files: `lora_adapter_metadata` is the peft config; its types are checked too.
    @Test(arguments: [
        ("{\"unet.r\": 1, \"unet.lora_alpha\": \"x\"}", "\"lora_alpha\""),
        ("[1, 2]", "expected a JSON object"),
        ("{\"unet.r\": -1, \"unet.lora_alpha\": 8}", "\"r\""),
    ])
    func diffusersMetadataIsChecked(_ metadata: String, _ mention: String) throws {
        let folder = try Self.temporaryFolder()
        defer { try? Self.fm.removeItem(at: folder) }
        var table = TensorTable()
        try table.insert("unet.conv_in.lora_A.weight", Self.view([Float](repeating: 0.01, count: 36), [1, 4, 3, 3]), file: "test")
        try table.insert("unet.conv_in.lora_B.weight", Self.view([Float](repeating: 0.01, count: 8), [8, 1, 1, 1]), file: "test")
        table.metadata["lora_adapter_metadata"] = metadata
        let lora = folder.appendingPathComponent("diffusers.safetensors").path
        try SafetensorsWriter.write(to: lora, tensors: table)
        let out = folder.appendingPathComponent("merged")
        try expectRefused(["merge", "--base", Self.fixture("base").path, "--lora", lora, "--output", out.path],
                          output: out, mentions: ["diffusers.safetensors", "lora_adapter_metadata", mention])
    }

    // MARK: - Item 8: configs validated against the weights

    /// Edits of the tiny base's unet/config.json (block_out_channels [8, 16, 24, 24],
    /// layers_per_block 2, norm_num_groups 4, attention_head_dim [2, 4, 6, 6], cross_attention_dim 32).
    static let unetEdits: [(String, (inout [String: Any]) -> Void, [String])] = [
        ("negative channels", { $0["block_out_channels"] = [-8, 16, 24, 24] }, ["block_out_channels"]),
        ("1e9 channels", { $0["block_out_channels"] = [1_000_000_000, 16, 24, 24] }, ["block_out_channels"]),
        ("string in_channels", { $0["in_channels"] = "4" }, ["in_channels", "\"4\""]),
        ("layers_per_block 1e9", { $0["layers_per_block"] = 1e9 }, ["layers_per_block"]),
        // The SD 2.1 default of 32 groups does not divide 8 channels.
        ("missing norm_num_groups", { $0["norm_num_groups"] = nil }, ["norm_num_groups", "32", "block_out_channels[0] = 8"]),
        // Without block_out_channels and heads, SD 2.1's [320, 640, 1280, 1280] and [5, 10, 20, 20];
        // conv_in is DLoRAL's 8-channel one from model.pkl.
        ("missing block_out_channels", { $0["block_out_channels"] = nil; $0["attention_head_dim"] = nil }, ["conv_in.weight", "[320, 8, 3, 3]", "[8, 8, 3, 3]"]),
        ("fewer layers than the weights", { $0["layers_per_block"] = 1 }, ["down_blocks.0.attentions.1", "layers_per_block"]),
        ("more layers than the weights", { $0["layers_per_block"] = 3 }, ["down_blocks.0.resnets.2"]),
        ("heads not dividing channels", { $0["attention_head_dim"] = [3, 4, 6, 6] }, ["attention_head_dim", "3 heads", "8 channels"]),
        ("groups not dividing channels", { $0["norm_num_groups"] = 3 }, ["norm_num_groups", "3"]),
        ("wrong cross_attention_dim", { $0["cross_attention_dim"] = 64 }, ["attn2.to_k.weight", "[8, 64]", "[8, 32]"]),
        ("unknown block type", { $0["down_block_types"] = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "FancyBlock"] }, ["down_block_types", "FancyBlock"]),
        ("norm_eps a string", { $0["norm_eps"] = "1e-5" }, ["norm_eps"]),
    ]

    static func writeJSON(_ object: Any, to url: URL) throws {
        try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]).write(to: url)
    }

    @Test(arguments: unetEdits.indices)
    func mergeValidatesTheUNetConfig(_ index: Int) throws {
        let (name, edit, mentions) = Self.unetEdits[index]
        let folder = try Self.temporaryFolder()
        defer { try? Self.fm.removeItem(at: folder) }
        let base = folder.appendingPathComponent("base")
        try Self.fm.copyItem(at: Self.fixture("base"), to: base)
        let configURL = base.appendingPathComponent("unet/config.json")
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
        edit(&config)
        try Self.writeJSON(config, to: configURL)
        let out = folder.appendingPathComponent("merged")
        try expectRefused(["merge", "--base", base.path, "--lora", Self.fixture("model.pkl").path, "--output", out.path],
                          output: out, mentions: ["unet/config.json"] + mentions)
        _ = name
    }

    @Test func mergeRefusesAConfigThatIsAList() throws {
        let folder = try Self.temporaryFolder()
        defer { try? Self.fm.removeItem(at: folder) }
        let base = folder.appendingPathComponent("base")
        try Self.fm.copyItem(at: Self.fixture("base"), to: base)
        try "[1, 2, 3]".write(to: base.appendingPathComponent("unet/config.json"), atomically: true, encoding: .utf8)
        let out = folder.appendingPathComponent("merged")
        try expectRefused(["merge", "--base", base.path, "--lora", Self.fixture("model.pkl").path, "--output", out.path],
                          output: out, mentions: ["unet/config.json", "JSON list", "expected a JSON object"])
    }

    @Test func mergeValidatesTheVAEConfig() throws {
        let folder = try Self.temporaryFolder()
        defer { try? Self.fm.removeItem(at: folder) }
        let base = folder.appendingPathComponent("base")
        try Self.fm.copyItem(at: Self.fixture("base"), to: base)
        let configURL = base.appendingPathComponent("vae/config.json")
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
        config["latent_channels"] = 8
        try Self.writeJSON(config, to: configURL)
        let out = folder.appendingPathComponent("merged")
        // 2 × latent_channels = 16 output channels for encoder.conv_out; the tiny VAE has 8.
        try expectRefused(["merge", "--base", base.path, "--lora", Self.fixture("model.pkl").path, "--output", out.path],
                          output: out, mentions: ["vae/config.json", "encoder.conv_out.weight", "[16, 16, 3, 3]", "[8, 16, 3, 3]"])
    }

    /// The LDM file has no config; the inferred one says 32 GroupNorm groups (SD's), which do not
    /// divide the tiny model's 8 channels. With --config the merge equals the diffusers base's.
    @Test func ldmBaseNeedsAFittingConfig() throws {
        let folder = try Self.temporaryFolder()
        defer { try? Self.fm.removeItem(at: folder) }
        let out = folder.appendingPathComponent("merged")
        let ldm = Self.fixture("base.ldm.safetensors").path
        let lora = Self.fixture("model.pkl").path
        try expectRefused(["merge", "--base", ldm, "--lora", lora, "--output", out.path],
                          output: out, mentions: ["inferred", "norm_num_groups", "--config"])
        try expectRefused(["merge", "--base", Self.fixture("onnx").path, "--lora", lora, "--output", out.path],
                          output: out, mentions: ["inferred", "norm_num_groups", "--config"])

        try expectSucceeds(["merge", "--base", ldm, "--lora", lora, "--output", out.path,
                            "--config", Self.fixture("base/unet/config.json").path, "--config", Self.fixture("base/vae/config.json").path])
        let reference = folder.appendingPathComponent("reference")
        try expectSucceeds(["merge", "--base", Self.fixture("base").path, "--lora", lora, "--output", reference.path])
        for part in ["unet", "vae"] {
            #expect(try Data(contentsOf: out.appendingPathComponent("\(part)/config.json")) == Data(contentsOf: reference.appendingPathComponent("\(part)/config.json")), "\(part)")
            let ours = try SafetensorsFile(path: out.appendingPathComponent("\(part)/diffusion_pytorch_model.safetensors").path).table
            let want = try SafetensorsFile(path: reference.appendingPathComponent("\(part)/diffusion_pytorch_model.safetensors").path).table
            #expect(Set(ours.names) == Set(want.names))
            for name in want.names {
                #expect(ours[name]?.toFloat32() == want[name]?.toFloat32(), "\(part) \(name)")
            }
        }
    }

    /// An LDM inference yaml is translated as diffusers does: 32 GroupNorm groups, which the tiny
    /// model's 8 channels do not admit, so the error names the yaml and the key.
    @Test func ldmYamlConfigIsReadAndValidated() throws {
        let folder = try Self.temporaryFolder()
        defer { try? Self.fm.removeItem(at: folder) }
        let yaml = folder.appendingPathComponent("tiny-inference.yaml")
        try """
            model:
              target: ldm.models.diffusion.ddpm.LatentDiffusion
              params:
                scale_factor: 0.18215
                unet_config:
                  target: ldm.modules.diffusionmodules.openaimodel.UNetModel
                  params:
                    in_channels: 4
                    out_channels: 4
                    model_channels: 8
                    attention_resolutions: [4, 2, 1]
                    num_res_blocks: 2
                    channel_mult: [1, 2, 3, 3]
                    num_head_channels: 4
                    use_spatial_transformer: True
                    use_linear_in_transformer: True
                    transformer_depth: 1
                    context_dim: 32
            """.write(to: yaml, atomically: true, encoding: .utf8)
        let out = folder.appendingPathComponent("merged")
        try expectRefused(["merge", "--base", Self.fixture("base.ldm.safetensors").path, "--lora", Self.fixture("model.pkl").path,
                           "--output", out.path, "--config", yaml.path],
                          output: out, mentions: ["tiny-inference.yaml", "norm_num_groups", "is 32", "block_out_channels[0] = 8"])
        try "model: [unclosed".write(to: yaml, atomically: true, encoding: .utf8)
        try expectRefused(["merge", "--base", Self.fixture("base.ldm.safetensors").path, "--lora", Self.fixture("model.pkl").path,
                           "--output", out.path, "--config", yaml.path],
                          output: out, mentions: ["tiny-inference.yaml", "YAML"])
    }

    /// Rewrites one tensor of a safetensors file in place (a test's hostile input), setting
    /// element 0 to `value`.
    static func poison(_ file: URL, tensor: String, value: Float) throws {
        let source = try SafetensorsFile(path: file.path).table
        var table = TensorTable()
        for (name, view) in source.tensors {
            var values = view.toFloat32()
            if name == tensor { values[0] = value }
            try table.insert(name, Self.view(values, view.shape), file: "test")
        }
        #expect(source[tensor] != nil, "\(tensor) not in \(file.path)")
        let bytes = try { () throws -> Data in
            let temporary = file.deletingLastPathComponent().appendingPathComponent("rewritten.safetensors")
            try SafetensorsWriter.write(to: temporary.path, tensors: table)
            defer { try? Self.fm.removeItem(at: temporary) }
            return try Data(contentsOf: temporary)
        }()
        try bytes.write(to: file)
    }

    /// fp16's largest finite value is 65504 (IEEE 754 binary16: (2 − 2⁻¹⁰) × 2¹⁵); 70000 is a
    /// finite float32 that fp16 stores as inf, 65000 fits.
    @Test func quantizeRefusesAnFP16Overflow() throws {
        let folder = try Self.temporaryFolder()
        defer { try? Self.fm.removeItem(at: folder) }
        let merged = folder.appendingPathComponent("merged")
        try expectSucceeds(["merge", "--base", Self.fixture("base").path, "--lora", Self.fixture("model.pkl").path, "--output", merged.path])
        let unet = merged.appendingPathComponent("unet/diffusion_pytorch_model.safetensors")
        try Self.poison(unet, tensor: "conv_out.weight", value: 70000)
        let out = folder.appendingPathComponent("model.dlrt")
        try expectRefused(["quantize", merged.path, "--weights", "fp16", "--output", out.path],
                          output: out, mentions: ["unet.conv_out.weight", "70000", "65504", "--keep 'unet.conv_out.weight'"])
        try expectSucceeds(["quantize", merged.path, "--weights", "fp16", "--keep", "unet.conv_out.weight", "--output", out.path])
        try? Self.fm.removeItem(at: out)
        try Self.poison(unet, tensor: "conv_out.weight", value: 65000)
        try expectSucceeds(["quantize", merged.path, "--weights", "fp16", "--output", out.path])
    }

    /// A NaN or inf in a source weight or in the prompt embeddings is refused by every scheme,
    /// naming the file, the tensor and the count (int8 would otherwise hide it in a scale).
    @Test func quantizeRefusesNonFiniteSources() throws {
        let folder = try Self.temporaryFolder()
        defer { try? Self.fm.removeItem(at: folder) }
        let merged = folder.appendingPathComponent("merged")
        try expectSucceeds(["merge", "--base", Self.fixture("base").path, "--lora", Self.fixture("model.pkl").path, "--output", merged.path])
        let vae = merged.appendingPathComponent("vae/diffusion_pytorch_model.safetensors")
        try Self.poison(vae, tensor: "decoder.conv_in.weight", value: .nan)
        let out = folder.appendingPathComponent("model.dlrt")
        for weights in ["int8", "fp16", "fp32"] {
            try expectRefused(["quantize", merged.path, "--weights", weights, "--output", out.path],
                              output: out, mentions: ["vae/diffusion_pytorch_model.safetensors", "vae.decoder.conv_in.weight", "1 non-finite"])
        }
        try Self.poison(vae, tensor: "decoder.conv_in.weight", value: 0.5)

        let base = folder.appendingPathComponent("base")
        try Self.fm.copyItem(at: Self.fixture("base"), to: base)
        try Self.poison(base.appendingPathComponent("vae/diffusion_pytorch_model.safetensors"), tensor: "decoder.conv_in.weight", value: -.infinity)
        let remerged = folder.appendingPathComponent("remerged")
        try expectRefused(["merge", "--base", base.path, "--lora", Self.fixture("model.pkl").path, "--output", remerged.path],
                          output: remerged, mentions: ["vae/diffusion_pytorch_model.safetensors", "decoder.conv_in.weight", "1 non-finite", "-inf"])

        let embeds = folder.appendingPathComponent("pe_nan.safetensors")
        var table = TensorTable()
        var values = [Float](repeating: 0.25, count: 77 * 32)
        values[5] = .infinity
        values[9] = .nan
        try table.insert("prompt_embeds", Self.view(values, [1, 77, 32]), file: "test")
        try SafetensorsWriter.write(to: embeds.path, tensors: table)
        try expectRefused(["quantize", merged.path, "--weights", "fp16", "--prompt-embeds", embeds.path, "--output", out.path],
                          output: out, mentions: ["pe_nan.safetensors", "prompt_embeds", "2 non-finite"])
    }

    /// dloral-run and dloral-verify refuse non-finite prompt embeddings (--prompt-embeds, input.prompt_embeds)
    /// and reference frames, naming the file, the tensor and the count, before running.
    @Test func verifyRefusesNonFiniteInputs() throws {
        let folder = try Self.temporaryFolder()
        defer { try? Self.fm.removeItem(at: folder) }
        let dlrt = try VerifyCommandTests.build("nonfinite-inputs")
        let embeds = folder.appendingPathComponent("pe_nan.safetensors")
        var table = TensorTable()
        var values = [Float](repeating: 0.25, count: 77 * 32)
        values[3] = .nan
        try table.insert("prompt_embeds", Self.view(values, [1, 77, 32]), file: "test")
        try SafetensorsWriter.write(to: embeds.path, tensors: table)
        let frames = folder.appendingPathComponent("frames")
        try CLIHardeningTests.writeFrames(frames, count: 2, width: 16, height: 16)
        let out = folder.appendingPathComponent("out")
        let r1 = try CommandRunner.run("dloral-run", [dlrt, "--input", frames.path, "--output", out.path, "--prompt-embeds", embeds.path])
        #expect(r1.status == 2, "\(r1.stderr)")
        #expect(r1.stderr.contains("\(embeds.path): tensor 'prompt_embeds': holds 1 non-finite value"), "\(r1.stderr)")
        #expect(!Self.fm.fileExists(atPath: out.path))

        let reference = folder.appendingPathComponent("reference_inf.safetensors")
        try Self.fm.copyItem(at: CommandRunner.fixtures.appendingPathComponent("tiny/reference_full.safetensors"), to: reference)
        try Self.poison(reference, tensor: "input.frames", value: .infinity)
        let r2 = try CommandRunner.run("dloral-verify", [dlrt, "--reference", reference.path])
        #expect(r2.status == 2, "\(r2.stderr)")
        #expect(r2.stderr.contains("\(reference.path): tensor 'input.frames': holds 1 non-finite value"), "\(r2.stderr)")
    }

    /// A plain SD LoRA merged into the base keeps the 4-channel UNet; DLoRAL's step needs
    /// 2 × the VAE's 4 latent channels = 8, so quantize refuses it rather than writing a file
    /// dloral-verify cannot run.
    @Test func quantizeRefusesANonDLoRALModel() throws {
        let folder = try Self.temporaryFolder()
        defer { try? Self.fm.removeItem(at: folder) }
        let merged = folder.appendingPathComponent("merged")
        try expectSucceeds(["merge", "--base", Self.fixture("base").path, "--lora", Self.fixture("lora/peft").path, "--output", merged.path])
        let out = folder.appendingPathComponent("model.dlrt")
        try expectRefused(["quantize", merged.path, "--weights", "fp32", "--output", out.path],
                          output: out, mentions: ["unet/config.json", "not a DLoRAL model", "takes 4 channels", "2 × the VAE's 4"])
    }

    @Test func quantizeValidatesTheConfigs() throws {
        let folder = try Self.temporaryFolder()
        defer { try? Self.fm.removeItem(at: folder) }
        let merged = folder.appendingPathComponent("merged")
        try expectSucceeds(["merge", "--base", Self.fixture("base").path, "--lora", Self.fixture("model.pkl").path, "--output", merged.path])
        let configURL = merged.appendingPathComponent("unet/config.json")
        let original = try Data(contentsOf: configURL)
        let out = folder.appendingPathComponent("model.dlrt")
        for (value, mention) in [(1e9 as Any, "layers_per_block"), (3 as Any, "down_blocks.0.resnets.2")] {
            var config = try #require(try JSONSerialization.jsonObject(with: original) as? [String: Any])
            config["layers_per_block"] = value
            try Self.writeJSON(config, to: configURL)
            try expectRefused(["quantize", merged.path, "--weights", "fp16", "--output", out.path],
                              output: out, mentions: ["unet/config.json", mention])
        }
        let cfrURL = merged.appendingPathComponent("cfr/config.json")
        var cfr = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: cfrURL)) as? [String: Any])
        try original.write(to: configURL)
        cfr["spynet_levels"] = 1000
        try Self.writeJSON(cfr, to: cfrURL)
        try expectRefused(["quantize", merged.path, "--weights", "fp16", "--output", out.path],
                          output: out, mentions: ["cfr/config.json", "spynet_levels"])
        cfr["spynet_levels"] = 6
        cfr["lq_downsample"] = 0
        try Self.writeJSON(cfr, to: cfrURL)
        try expectRefused(["quantize", merged.path, "--weights", "fp16", "--output", out.path],
                          output: out, mentions: ["cfr/config.json", "lq_downsample"])
    }

    /// Item 9 (configs part): a .dlrt whose metadata configs were forged, with the header
    /// digest recomputed as a forger would, is refused when opened, naming the key.
    @Test(arguments: [
        ("\"block_out_channels\":[8,16,24,24]", "\"block_out_channels\":[1000000000,16,24,24]", ["configs.unet", "block_out_channels"]),
        ("\"block_out_channels\":[8,16,24,24]", "\"block_out_channels\":[-8,16,24,24]", ["configs.unet", "block_out_channels"]),
        ("\"layers_per_block\":2", "\"layers_per_block\":1000000000", ["configs.unet", "layers_per_block"]),
        ("\"spynet_levels\":6", "\"spynet_levels\":1000", ["configs.cfr", "spynet_levels"]),
        ("\"spynet_levels\":6", "\"spynet_levels\":5", ["configs.cfr", "spynet.basic_module.5"]),
        ("\"lq_downsample\":8", "\"lq_downsample\":0", ["configs.cfr", "lq_downsample"]),
        ("\"norm_num_groups\":4", "\"norm_num_groups\":3", ["configs.unet", "norm_num_groups"]),
    ])
    func forgedDLRTConfigsAreRefused(_ replace: String, _ with: String, _ mentions: [String]) throws {
        let folder = try Self.temporaryFolder()
        defer { try? Self.fm.removeItem(at: folder) }
        let merged = folder.appendingPathComponent("merged")
        let good = folder.appendingPathComponent("good.dlrt")
        try expectSucceeds(["merge", "--base", Self.fixture("base").path, "--lora", Self.fixture("model.pkl").path, "--output", merged.path])
        try expectSucceeds(["quantize", merged.path, "--weights", "fp32", "--output", good.path])
        let bytes = try [UInt8](Data(contentsOf: good))
        let header = try DLRTFile(path: good.path).header
        var text = String(decoding: bytes[128..<(128 + header.metadataBytes)], as: UTF8.self)
        #expect(text.contains(replace), "\(replace) not in the metadata")
        // Room for the longer value: shorten one of the merge's drop reasons.
        let reason = "CFR module DLoRAL does not run at inference"
        let at = try #require(text.range(of: reason))
        text.replaceSubrange(at, with: "x")
        if let range = text.range(of: replace) { text.replaceSubrange(range, with: with) }
        let copy = DLRTForgery.resealed(bytes, header: header, metadata: text)
        let forged = folder.appendingPathComponent("forged.dlrt")
        try Data(copy).write(to: forged)

        for (tool, arguments) in [("dloral-verify", [forged.path, "--reference", Self.fixture("reference_full.safetensors").path]),
                                  ("dloral-convert", ["inspect", forged.path])] {
            let result = try CommandRunner.run(tool, arguments)
            #expect(result.status == 2, "\(tool): exit \(result.status): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
            for text in ["forged.dlrt"] + mentions { #expect(result.stderr.contains(text), "\(tool): '\(text)' not in: \(result.stderr)") }
        }
    }

    // MARK: - Item 14: outputs do not depend on the paths typed

    /// The same inputs, copied to two different folders, merged once with relative paths from
    /// one working directory and once with absolute paths from another, give byte-identical
    /// folders, and quantizing them gives byte-identical .dlrt files.
    @Test func outputsDoNotDependOnThePathsTyped() throws {
        let folder = try Self.temporaryFolder()
        defer { try? Self.fm.removeItem(at: folder) }
        let a = folder.appendingPathComponent("a")
        let b = folder.appendingPathComponent("b/deeper/still")
        for place in [a, b] {
            try Self.fm.createDirectory(at: place.appendingPathComponent("in"), withIntermediateDirectories: true)
            try Self.fm.copyItem(at: Self.fixture("base"), to: place.appendingPathComponent("in/base"))
            try Self.fm.copyItem(at: Self.fixture("model.pkl"), to: place.appendingPathComponent("in/model.pkl"))
        }
        try expectSucceeds(["merge", "--base", "in/base/", "--lora", "./in/model.pkl", "--output", "out"], directory: a)
        try expectSucceeds(["merge", "--base", b.appendingPathComponent("in/base").path,
                            "--lora", b.appendingPathComponent("in/model.pkl").path, "--output", b.appendingPathComponent("out").path])
        let outA = a.appendingPathComponent("out"), outB = b.appendingPathComponent("out")
        let files = try Self.fm.subpathsOfDirectory(atPath: outA.path).sorted()
        #expect(files == (try Self.fm.subpathsOfDirectory(atPath: outB.path).sorted()))
        for file in files where !file.hasSuffix("unet") && !file.hasSuffix("vae") && !file.hasSuffix("cfr") {
            #expect(try Data(contentsOf: outA.appendingPathComponent(file)) == Data(contentsOf: outB.appendingPathComponent(file)), "\(file) differs")
        }
        let provenance = try String(contentsOf: outA.appendingPathComponent("dloral.json"), encoding: .utf8)
        #expect(!provenance.contains(folder.path) && !provenance.contains("./"), "\(provenance)")
        #expect(provenance.contains("\"base/unet/config.json\"") && provenance.contains("\"model.pkl\""))

        try expectSucceeds(["quantize", "out", "--weights", "int8", "--output", "model.dlrt"], directory: a)
        try expectSucceeds(["quantize", outB.path, "--weights", "int8", "--output", b.appendingPathComponent("model.dlrt").path])
        #expect(try Data(contentsOf: a.appendingPathComponent("model.dlrt")) == Data(contentsOf: b.appendingPathComponent("model.dlrt")))

        // The same content under another folder name, and through a symlink, gives the same bytes.
        let renamed = folder.appendingPathComponent("a-much-longer-folder-name")
        try Self.fm.copyItem(at: outA, to: renamed)
        let link = folder.appendingPathComponent("lnk")
        try Self.fm.createSymbolicLink(at: link, withDestinationURL: renamed)
        try expectSucceeds(["quantize", renamed.path, "--weights", "int8", "--output", folder.appendingPathComponent("renamed.dlrt").path])
        try expectSucceeds(["quantize", link.path, "--weights", "int8", "--output", folder.appendingPathComponent("link.dlrt").path])
        let reference = try Data(contentsOf: a.appendingPathComponent("model.dlrt"))
        #expect(try Data(contentsOf: folder.appendingPathComponent("renamed.dlrt")) == reference)
        #expect(try Data(contentsOf: folder.appendingPathComponent("link.dlrt")) == reference)
    }
}
