import DLoRALFormats
import Foundation
import Testing

/// The integer path end to end: `quantize --activations int8|int16|auto` records the precision per
/// layer, and `dloral-verify` runs those layers on the integer kernels and meets the
/// bounds of docs/quality.md against the PyTorch reference.
@Suite("integer path", .serialized)
struct IntegerPathTests {
    typealias V = VerifyCommandTests

    static func quantizeJSON(_ args: [String]) throws -> (CommandRunner.Result, [String: Any]) {
        let r = try CommandRunner.run("dloral-convert", ["quantize"] + args + ["--json"])
        let json = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:]
        return (r, json)
    }

    static func entries(_ dlrt: String) throws -> [DLRTTensorEntry] {
        try DLRTFile(path: dlrt).entries
    }

    /// A W8A8 simulation figure the generator stored in the reference (Tools/fixtures/simulate_quant.py):
    /// `quant_sim_w8a8_channel_row` (per-row activations) or `quant_sim_w8a8_block32`.
    static func simulatedW8A8FramesPSNR(_ reference: String, key: String = "quant_sim_w8a8_channel_row") throws -> Double? {
        let table = try SafetensorsFile(path: reference).table
        guard let text = table.metadata[key] else { return nil }
        let record = try StrictJSONParser.parse(text)
        // The lowest of the plain run and the dithered reruns (W8A8 at tiny sizes swings ±0.5 dB
        // with float-rounding-sized changes).
        let runs = [record["frames_psnr_db"]?.doubleValue, record["dither"]?["frames"]?["psnr_db"]?["min"]?.doubleValue]
        return runs.compactMap { $0 }.min()
    }

    /// Verifies a W8A8 `dlrt` against `reference` and expects it no worse than the simulation's
    /// lowest run − 0.5 dB, and worse than fp32 activations; returns verify's JSON.
    static func verifyAgainstSimulation(_ dlrt: String, reference: String, simulated: Double) throws -> [String: Any] {
        let (r, json) = try V.verify(dlrt, reference: reference)
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(json["activations"] as? String == "int8")
        let psnr = V.stage(json, "frames")["psnr_db"] as? Double ?? 0
        #expect(psnr >= simulated - 0.5, "frames \(psnr) dB vs simulation \(simulated) dB")
        // int8 activations cost quality: if these matched the int16 figure, the integer path did not run.
        #expect(psnr < 41, "frames \(psnr) dB: as good as fp32 activations")
        return json
    }

    @Test func int16ActivationsReachThirtyNineDecibels() throws {
        let dlrt = try V.build("a16", quantize: ["--weights", "int8", "--activations", "int16"])
        let entries = try Self.entries(dlrt)
        let integer = entries.filter { $0.activations != nil }
        #expect(!integer.isEmpty && integer.allSatisfy { $0.activations == .int16 })
        // Every UNet/VAE int8 weight runs integer; the CFR never does.
        #expect(entries.filter { $0.scheme == .int8Channel && !$0.name.hasPrefix("cfr.") }.allSatisfy { $0.activations == .int16 })
        #expect(entries.filter { $0.name.hasPrefix("cfr.") }.allSatisfy { $0.activations == nil })
        #expect(try DLRTFile(path: dlrt).header.minor == 1)
        let (r, json) = try V.verify(dlrt)
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(json["activations"] as? String == "int16")
        #expect((V.stage(json, "frames")["psnr_db"] as? Double ?? 0) >= 39)
    }

    /// W8A8 is no worse than PyTorch's fake-quant simulation of the same arithmetic on the same
    /// inputs (stored in the reference's metadata), within 0.5 dB of its lowest run, on every reference.
    @Test(arguments: [("full", "reference_full.safetensors"), ("consistency", "reference_consistency.safetensors"),
                      ("full", "reference_full_48x80.safetensors")])
    func int8ActivationsMatchTheSimulation(stage: String, reference: String) throws {
        let path = "Tests/Fixtures/tiny/\(reference)"
        let simulated = try #require(try Self.simulatedW8A8FramesPSNR(path), "\(reference) has no quant_sim_w8a8_channel_row metadata")
        let dlrt = try V.build("a8-\(stage)-\(reference)", merge: ["--stage", stage], quantize: ["--weights", "int8", "--activations", "int8"])
        _ = try Self.verifyAgainstSimulation(dlrt, reference: path, simulated: simulated)
    }

    /// W8A8 with blocks of 32 (weights int8_block, activations per row and block, Formats/dlrt.md
    /// §4.3) is no worse than PyTorch's fake-quant simulation of blocks of 32, within 0.5 dB of its
    /// lowest run, on every reference; the file is version 1.2 and the CFR stays fp32.
    @Test(arguments: [("full", "reference_full.safetensors"), ("consistency", "reference_consistency.safetensors"),
                      ("full", "reference_full_48x80.safetensors")])
    func blockActivationsMatchTheSimulation(stage: String, reference: String) throws {
        let path = "Tests/Fixtures/tiny/\(reference)"
        let simulated = try #require(try Self.simulatedW8A8FramesPSNR(path, key: "quant_sim_w8a8_block32"), "\(reference) has no quant_sim_w8a8_block32 metadata")
        let dlrt = try V.build("a8b32-\(stage)-\(reference)", merge: ["--stage", stage],
                               quantize: ["--weights", "int8", "--int8-granularity", "block32", "--activations", "int8"])
        let file = try DLRTFile(path: dlrt)
        #expect(file.header.minor == 2)
        let blocks = file.entries.filter { $0.scheme == .int8Block }
        #expect(!blocks.isEmpty && blocks.allSatisfy { ($0.activations == .int8) == !$0.name.hasPrefix("cfr.") && $0.block == 32 })
        let json = try Self.verifyAgainstSimulation(dlrt, reference: path, simulated: simulated)
        // dloral-verify's own default bound is the block simulation's, not the per-row one.
        let bound = (json["thresholds"] as? [String: Any])?["frames_min_psnr_db"] as? Double ?? 0
        #expect(abs(bound - (simulated - 0.5)) < 1e-9, "verify's bound \(bound) dB, simulation \(simulated) dB")
    }

    @Test func autoMeetsItsTargetWithFewerWideLayersAndIsDeterministic() throws {
        let merged = V.work.appendingPathComponent("auto-merged").path
        let m = try CommandRunner.run("dloral-convert", ["merge", "--base", "Tests/Fixtures/tiny/base", "--lora", "Tests/Fixtures/tiny/model.pkl", "--output", merged])
        #expect(m.status == 0, "\(m.stderr)")
        var outputs: [String] = []
        for run in 0..<2 {
            let dlrt = V.work.appendingPathComponent("auto-\(run).dlrt").path
            let (r, json) = try Self.quantizeJSON([merged, "--weights", "int8", "--activations", "auto", "--target-psnr", "38",
                                                   "--calibration", "Tests/Fixtures/tiny/reference_full.safetensors", "--output", dlrt])
            #expect(r.status == 0, "\(r.stderr)")
            let activations = try #require(json["activations"] as? [String: Any])
            #expect(activations["policy"] as? String == "auto")
            let wide = activations["int16_layers"] as? Int ?? -1, narrow = activations["int8_layers"] as? Int ?? -1
            #expect(wide > 0 && narrow > 0, "\(activations)")
            #expect((activations["calibration_psnr_db"] as? Double ?? 0) >= 38)
            outputs.append(dlrt)
        }
        #expect(FileManager.default.contents(atPath: outputs[0]) == FileManager.default.contents(atPath: outputs[1]))
        let file = try DLRTFile(path: outputs[0])
        #expect(file.metadata["quantization"]?["activations"]?.stringValue == "auto")
        #expect(file.metadata["quantization"]?["calibration"]?["target_psnr_db"]?.doubleValue == 38)
        // No scratch file is left beside the output.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: V.work.path).filter { $0.contains("calibration") }
        #expect(leftovers.isEmpty, "\(leftovers)")
        let (r, json) = try V.verify(outputs[0])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect((json["activations"] as? String ?? "").hasPrefix("mixed"))
        #expect((V.stage(json, "frames")["psnr_db"] as? Double ?? 0) >= 37)
    }

    @Test func inspectShowsEachLayersActivations() throws {
        let dlrt = try V.build("a8-inspect", quantize: ["--weights", "int8", "--activations", "int8"])
        let r = try CommandRunner.run("dloral-convert", ["inspect", dlrt, "--json"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let tensors = json["tensors"] as? [[String: Any]] ?? []
        let conv = tensors.first { $0["name"] as? String == "unet.conv_in.weight" }
        #expect(conv?["activations"] as? String == "int8")
        let bias = tensors.first { $0["name"] as? String == "unet.conv_in.bias" }
        #expect(bias?["activations"] is NSNull)
    }

    @Test(arguments: [
        (["--weights", "fp16", "--activations", "int8"], "--weights int8"),
        (["--weights", "int8", "--int8-granularity", "block32", "--activations", "int16"], "--int8-granularity channel"),
        (["--weights", "int8", "--int8-granularity", "block64", "--activations", "auto"], "int8 activations only"),
        (["--weights", "int8", "--activations", "int4"], "fp32, int8, int16 or auto"),
        (["--weights", "int8", "--activations", "auto", "--calibration", "/nonexistent/frames"], "/nonexistent/frames"),
    ])
    func badPoliciesExitTwo(args: [String], mentions: String) throws {
        let out = V.work.appendingPathComponent("bad-policy.dlrt").path
        let r = try CommandRunner.run("dloral-convert", ["quantize", "Tests/Fixtures/tiny/merged/full"] + args + ["--output", out])
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.contains(mentions), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }
}
