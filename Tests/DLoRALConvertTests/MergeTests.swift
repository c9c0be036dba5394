import DLoRALConvert
import DLoRALFormats
import Foundation
import Testing

/// `merge` equals peft's own merge for every LoRA dialect and every base form.
///
/// The expected folders were written by the fixture generator with peft's merge APIs
/// (`merge_adapter` / `merge_and_unload`) and diffusers' `fuse_lora`, not by our arithmetic.
@Suite("merge equals peft")
struct MergeTests {
    struct Case: CustomStringConvertible, Sendable {
        var base: String
        var lora: String
        var stage: MergeOptions.Stage
        var expected: String
        var description: String { "\(lora) into \(base) (\(stage.rawValue))" }
    }

    static let cases: [Case] = {
        var cases = [
            Case(base: "base", lora: "model.pkl", stage: .full, expected: "merged/full/unet"),
            Case(base: "base", lora: "model.pkl", stage: .consistency, expected: "merged/consistency/unet"),
            Case(base: "base.ldm.safetensors", lora: "model.pkl", stage: .full, expected: "merged/full/unet"),
            Case(base: "onnx", lora: "model.pkl", stage: .consistency, expected: "merged/consistency/unet"),
        ]
        for base in ["base", "base.ldm.safetensors", "onnx"] {
            for (lora, dialect) in [("lora/kohya.safetensors", "kohya"), ("lora/peft", "peft"), ("lora/diffusers.safetensors", "diffusers")] {
                cases.append(Case(base: base, lora: lora, stage: .full, expected: "lora/expected/\(dialect)/unet"))
            }
        }
        return cases
    }()

    static func merge(_ c: Case, dtype: DType = .float32) throws -> (URL, MergeReport) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("dloral-merge-\(UUID().uuidString)")
        var options = MergeOptions()
        options.stage = c.stage
        options.dtype = dtype
        // LDM files and ONNX UNets carry no config, and the tiny model's 4 GroupNorm groups
        // cannot be inferred from shapes: pass the model's own, as a user would with --config.
        switch c.base {
        case "base.ldm.safetensors": options.configPaths = [FixturePaths.tiny("base/unet/config.json"), FixturePaths.tiny("base/vae/config.json")]
        case "onnx": options.configPaths = [FixturePaths.tiny("base/unet/config.json")]
        default: break
        }
        let report = try Merger.merge(base: FixturePaths.tiny(c.base), lora: FixturePaths.tiny(c.lora), output: folder.path, options: options)
        return (folder, report)
    }

    @Test(arguments: cases)
    func fp32MergeMatchesPeft(_ c: Case) throws {
        let (folder, report) = try Self.merge(c)
        defer { try? FileManager.default.removeItem(at: folder) }
        let ours = try SafetensorsFile(path: folder.appendingPathComponent("unet/diffusion_pytorch_model.safetensors").path).table
        let expected = try SafetensorsFile(path: FixturePaths.tiny("\(c.expected)/diffusion_pytorch_model.safetensors")).table
        #expect(Set(ours.names) == Set(expected.names))
        #expect(report.mergedModules > 0)
        for name in expected.names {
            let want = expected[name]!.toFloat32()
            guard let got = ours[name] else { continue }
            #expect(got.shape == expected[name]!.shape, "\(name)")
            let scale = want.map { abs($0) }.max() ?? 0
            let diff = maxAbsDifference(got.toFloat32(), want)
            #expect(diff <= 1e-6 * scale, "\(c): \(name) differs by \(diff) (max |w| \(scale))")
        }
    }

    /// fp16 / bf16 output is peft's fp32 result rounded once: each value is what rounding gives
    /// for some fp32 value within the fp32 merge tolerance of peft's.
    @Test(arguments: [DType.float16, .bfloat16])
    func halfPrecisionIsPeftRoundedOnce(_ dtype: DType) throws {
        let c = Self.cases[0]
        let (folder, report) = try Self.merge(c, dtype: dtype)
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect(report.dtype == (dtype == .float16 ? "fp16" : "bf16"))
        let ours = try SafetensorsFile(path: folder.appendingPathComponent("unet/diffusion_pytorch_model.safetensors").path).table
        let expected = try SafetensorsFile(path: FixturePaths.tiny("\(c.expected)/diffusion_pytorch_model.safetensors")).table
        func round(_ x: Float) -> Float {
            dtype == .float16 ? Float(Float16(x)) : Float(bitPattern: UInt32(DTypeConversion.bfloat16Bits(x)) << 16)
        }
        var exact = 0
        var total = 0
        for name in expected.names {
            let got = try #require(ours[name])
            #expect(got.dtype == dtype)
            let want = expected[name]!.toFloat32()
            let tolerance = 1e-6 * (want.map { abs($0) }.max() ?? 0)
            for (g, w) in zip(got.toFloat32(), want) {
                total += 1
                if g == round(w) { exact += 1; continue }
                #expect(g >= round(w - tolerance) && g <= round(w + tolerance), "\(name): \(g) is not \(w) rounded")
            }
        }
        #expect(Double(exact) / Double(total) > 0.999, "\(exact) of \(total) equal peft's value rounded")
    }

    @Test func identicalInputsGiveIdenticalFolders() throws {
        let (a, _) = try Self.merge(Self.cases[0])
        let (b, _) = try Self.merge(Self.cases[0])
        defer {
            try? FileManager.default.removeItem(at: a)
            try? FileManager.default.removeItem(at: b)
        }
        let files = try FileManager.default.subpathsOfDirectory(atPath: a.path).sorted()
        #expect(files == (try FileManager.default.subpathsOfDirectory(atPath: b.path).sorted()))
        #expect(files.contains("unet/diffusion_pytorch_model.safetensors"))
        #expect(files.contains("dloral.json"))
        for file in files where !file.hasSuffix("unet") && !file.hasSuffix("vae") && !file.hasSuffix("cfr") {
            let x = try Data(contentsOf: a.appendingPathComponent(file))
            let y = try Data(contentsOf: b.appendingPathComponent(file))
            #expect(x == y, "\(file) differs between two runs")
        }
    }

    /// The DLoRAL output: 8-channel UNet config, VAE from the base, CFR inference weights only,
    /// the checkpoint's conv_in reported as overriding the base's.
    @Test func dloralFolderLayout() throws {
        let (folder, report) = try Self.merge(Self.cases[0])
        defer { try? FileManager.default.removeItem(at: folder) }
        let config = try JSONValue.read(path: folder.appendingPathComponent("unet/config.json").path)
        #expect(config["in_channels"]?.intValue == 8)
        #expect(config["_class_name"]?.stringValue == "UNet2DConditionModel")
        #expect(report.overridden.contains("conv_in.weight"))
        #expect(!report.overridden.contains("conv_out.weight"), "identical tensors are not overrides")
        let vae = try SafetensorsFile(path: folder.appendingPathComponent("vae/diffusion_pytorch_model.safetensors").path).table
        let baseVAE = try SafetensorsFile(path: FixturePaths.tiny("base/vae/diffusion_pytorch_model.safetensors")).table
        #expect(Set(vae.names) == Set(baseVAE.names))
        for name in baseVAE.names { #expect(vae[name]!.toFloat32() == baseVAE[name]!.toFloat32()) }
        let cfr = try SafetensorsFile(path: folder.appendingPathComponent("cfr/model.safetensors").path).table
        #expect(cfr.names.allSatisfy { $0.hasPrefix("spynet.") || $0.hasPrefix("cross_attn_module.") })
        #expect(cfr.names.contains("cross_attn_module.threshold_fc.weight"))
        #expect(cfr.names.filter { $0.hasPrefix("spynet.basic_module.") }.count == 60)
        #expect(report.dropped.contains { $0.name == "cfr.conv_last.weight" })
        let cfrConfig = try JSONValue.read(path: folder.appendingPathComponent("cfr/config.json").path)
        #expect(cfrConfig["attention_heads"]?.intValue == 9)
        #expect(cfrConfig["spynet_levels"]?.intValue == 6)
        // Scales: alpha 8 over ranks 4 (quality) and 2 (consistency).
        #expect(report.adapters.first { $0.name == "default_encoder_quality" }?.scale == 2)
        #expect(report.adapters.first { $0.name == "default_others_consistency" }?.scale == 4)
        let provenance = try JSONValue.read(path: folder.appendingPathComponent("dloral.json").path)
        let inputs = provenance["inputs"]?.arrayValue ?? []
        #expect(inputs.contains { $0["path"]?.stringValue?.hasSuffix("model.pkl") == true && $0["sha256"]?.stringValue?.count == 64 })
    }

    /// An adapter weight override changes exactly that adapter's contribution: with the six
    /// adapters at 1.0 except one at 0, the result must differ from the full merge, and with
    /// the three quality adapters at 0 it must equal the consistency stage.
    @Test func adapterWeightsSelectAdapters() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("dloral-merge-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        var options = MergeOptions()
        for part in ["encoder", "decoder", "others"] { options.adapterWeights["default_\(part)_quality"] = 0 }
        _ = try Merger.merge(base: FixturePaths.tiny("base"), lora: FixturePaths.tiny("model.pkl"), output: folder.path, options: options)
        let ours = try SafetensorsFile(path: folder.appendingPathComponent("unet/diffusion_pytorch_model.safetensors").path).table
        let expected = try SafetensorsFile(path: FixturePaths.tiny("merged/consistency/unet/diffusion_pytorch_model.safetensors")).table
        for name in expected.names {
            let want = expected[name]!.toFloat32()
            let scale = want.map { abs($0) }.max() ?? 0
            #expect(maxAbsDifference(ours[name]!.toFloat32(), want) <= 1e-6 * scale, "\(name)")
        }
    }

    @Test func unknownAdapterNameIsRefused() throws {
        var options = MergeOptions()
        options.adapterWeights["default_encoder_qualty"] = 0.5
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("dloral-merge-\(UUID().uuidString)")
        #expect(throws: FormatError.self) {
            try Merger.merge(base: FixturePaths.tiny("base"), lora: FixturePaths.tiny("model.pkl"), output: folder.path, options: options)
        }
        #expect(!FileManager.default.fileExists(atPath: folder.path))
    }
}
