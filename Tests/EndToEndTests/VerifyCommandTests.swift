import DLoRALFormats
import Foundation
import Testing

/// `dloral-verify` end to end: the converted tiny model reproduces the PyTorch reference at every
/// stage, and broken models are caught at the first stage that diverges.
@Suite("verify command", .serialized)
struct VerifyCommandTests {
    static let work: URL = {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("dloral-verify-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }()

    /// merge (with extra arguments) then quantize; returns the .dlrt path.
    static func build(_ name: String, merge: [String] = [], quantize: [String] = ["--weights", "fp32"],
                      edit: ((URL) throws -> Void)? = nil) throws -> String {
        let merged = work.appendingPathComponent("\(name)-merged")
        let dlrt = work.appendingPathComponent("\(name).dlrt")
        let m = try CommandRunner.run("dloral-convert", ["merge", "--base", "Tests/Fixtures/tiny/base", "--lora", "Tests/Fixtures/tiny/model.pkl", "--output", merged.path] + merge)
        guard m.status == 0 else { throw CommandFailed(message: m.stderr) }
        try edit?(merged)
        let q = try CommandRunner.run("dloral-convert", ["quantize", merged.path, "--output", dlrt.path] + quantize)
        guard q.status == 0 else { throw CommandFailed(message: q.stderr) }
        return dlrt.path
    }

    static func verify(_ dlrt: String, reference: String = "Tests/Fixtures/tiny/reference_full.safetensors") throws -> (CommandRunner.Result, [String: Any]) {
        let r = try CommandRunner.run("dloral-verify", [dlrt, "--reference", reference, "--json"])
        let json = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:]
        return (r, json)
    }

    static func stage(_ json: [String: Any], _ name: String) -> [String: Any] {
        ((json["stages"] as? [String: Any])?[name] as? [String: Any]) ?? [:]
    }

    @Test(arguments: [("full", "reference_full.safetensors"), ("consistency", "reference_consistency.safetensors"),
                      ("full", "reference_full_48x80.safetensors")])
    func fp32MatchesPyTorch(stage: String, reference: String) throws {
        let dlrt = try Self.build("fp32-\(stage)-\(reference)", merge: ["--stage", stage])
        let (r, json) = try Self.verify(dlrt, reference: "Tests/Fixtures/tiny/\(reference)")
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(json["passed"] as? Bool == true)
        #expect(json["scheme"] as? String == "fp32")
        for name in ["latents", "unet_input", "unet_output", "x0", "frames"] {
            let m = Self.stage(json, name)
            #expect((m["cosine"] as? Double ?? 0) >= 0.99999, "\(name): \(m)")
        }
        #expect((Self.stage(json, "frames")["max_abs"] as? Double ?? 1) <= 1e-4)
    }

    @Test func fp16MeetsItsBounds() throws {
        let dlrt = try Self.build("fp16", quantize: ["--weights", "fp16"])
        let (r, json) = try Self.verify(dlrt)
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(json["scheme"] as? String == "fp16")
        let psnr = Self.stage(json, "frames")["psnr_db"] as? Double ?? 0
        #expect(psnr >= 60, "frames PSNR \(psnr)")
    }

    /// int8 weights (fp32 activations in this engine) reach the weight-only bound (README.md, `dloral-verify`).
    @Test func int8MeetsItsBounds() throws {
        let dlrt = try Self.build("int8", quantize: ["--weights", "int8"])
        let (r, json) = try Self.verify(dlrt)
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(json["scheme"] as? String == "int8")
        #expect((Self.stage(json, "frames")["psnr_db"] as? Double ?? 0) >= 39)
    }

    /// A perturbed UNet weight shows up first at unet_output.
    @Test func perturbedWeightIsCaught() throws {
        let dlrt = try Self.build("perturbed") { merged in
            let path = merged.appendingPathComponent("unet/diffusion_pytorch_model.safetensors").path
            let file = try SafetensorsFile(path: path)
            var table = TensorTable()
            for (name, view) in file.table.tensors {
                if name == "mid_block.resnets.0.conv1.weight" {
                    // The centre tap of output channel 0, input channel 0 (the mid block's latent is
                    // one row tall here, so the other rows of the kernel only ever see padding).
                    var values = view.toFloat32()
                    values[4] += 0.5
                    try table.insert(name, TensorView(dtype: .float32, shape: view.shape, storage: .copying(values, origin: "test")), file: path)
                } else {
                    try table.insert(name, TensorView(dtype: view.dtype, shape: view.shape, storage: .copying(view.contiguousData(), origin: "test")), file: path)
                }
            }
            try SafetensorsWriter.write(to: path, tensors: table)
        }
        let (r, json) = try Self.verify(dlrt)
        #expect(r.status == 1, "\(r.stderr)")
        #expect(json["first_failed_stage"] as? String == "unet_output")
        #expect(r.stderr.contains("first diverging stage is unet_output"))
    }

    /// Swapping the two families' scales (quality 4 instead of 2, consistency 2 instead of 4).
    @Test func swappedAdapterScalesAreCaught() throws {
        var weights: [String] = []
        for part in ["encoder", "decoder", "others"] {
            weights += ["--adapter-weight", "default_\(part)_quality=2", "--adapter-weight", "default_\(part)_consistency=0.5"]
        }
        let dlrt = try Self.build("swapped", merge: weights)
        let (r, json) = try Self.verify(dlrt)
        #expect(r.status == 1, "\(r.stderr)")
        #expect(json["first_failed_stage"] as? String == "unet_output")
    }

    /// Without its CFR the model diverges where the CFR's output enters: unet_input.
    @Test func droppedCFRIsCaught() throws {
        let dlrt = try Self.build("nocfr") { merged in
            try FileManager.default.removeItem(at: merged.appendingPathComponent("cfr"))
        }
        let (r, json) = try Self.verify(dlrt)
        #expect(r.status == 1, "\(r.stderr)")
        #expect(json["first_failed_stage"] as? String == "unet_input")
    }

    /// A merged folder whose configs disagree with its weights (as a buggy converter could
    /// write) is refused by quantize with exit 2 naming the config; forged .dlrt configs are
    /// refused on opening (ConfigHardeningTests).
    @Test(arguments: [("unet", "norm_num_groups", 3, "norm_num_groups"), ("vae", "latent_channels", 8, "latent_channels")])
    func configsThatDoNotFitTheWeightsExitTwo(component: String, key: String, value: Int, mentions: String) throws {
        do {
            _ = try Self.build("config-\(component)-\(key)") { merged in
                let path = merged.appendingPathComponent("\(component)/config.json")
                var config = try JSONSerialization.jsonObject(with: Data(contentsOf: path)) as! [String: Any]
                config[key] = value
                try JSONSerialization.data(withJSONObject: config).write(to: path)
            }
            Issue.record("quantize accepted a \(component) config with \(key) \(value)")
        } catch let failure as CommandFailed {
            #expect(failure.message.contains("\(component)/config.json") && failure.message.contains(mentions), "\(failure.message)")
            #expect(failure.message.split(separator: "\n").count == 1)
        }
    }

    @Test func badInputsExitTwo() throws {
        let r1 = try CommandRunner.run("dloral-verify", ["Tests/Fixtures/tiny/model.pkl", "--reference", "Tests/Fixtures/tiny/reference_full.safetensors"])
        #expect(r1.status == 2, "\(r1.stderr)")
        #expect(r1.stderr.contains("not a .dlrt file"))
        let dlrt = try Self.build("badref")
        let r2 = try CommandRunner.run("dloral-verify", [dlrt, "--reference", "Tests/Fixtures/tiny/cfr.safetensors"])
        #expect(r2.status == 2, "\(r2.stderr)")
        #expect(r2.stderr.contains("input.frames"))
        // Frames whose size is not a multiple of 8 (a reference made for another model).
        var table = TensorTable()
        try table.insert("input.frames", TensorView(dtype: .float32, shape: [2, 3, 52, 52], storage: .copying([Float](repeating: 0.1, count: 2 * 3 * 52 * 52), origin: "test")), file: "test")
        try table.insert("output.frames", TensorView(dtype: .float32, shape: [1, 3, 52, 52], storage: .copying([Float](repeating: 0, count: 3 * 52 * 52), origin: "test")), file: "test")
        let odd = Self.work.appendingPathComponent("odd-reference.safetensors").path
        try SafetensorsWriter.write(to: odd, tensors: table)
        let r3 = try CommandRunner.run("dloral-verify", [dlrt, "--reference", odd])
        #expect(r3.status == 2 && r3.stderr.contains("divisible by 8"), "\(r3.stderr)")
    }
}

/// A set-up step (merge, quantize) of a test failed.
struct CommandFailed: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
