import DLoRALFormats
import Foundation
import Testing

/// Issue 16, items 10 and 12: small inputs that used to be accepted or printed raw, and
/// `--activations auto` without calibration inputs of the user's own.
@Suite("hardening: small cases and calibration inputs")
struct HardeningInputTests {
    static func temporaryFolder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("dloral-h-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func writeTensors(_ tensors: [(String, [Int])], to path: String) throws {
        var table = TensorTable()
        for (name, shape) in tensors {
            let count = shape.reduce(1, *)
            try table.insert(name, TensorView(dtype: .float32, shape: shape,
                                              storage: .copying((0..<count).map { Float($0 % 13) / 13 - 0.5 }, origin: "test")), file: "test")
        }
        try SafetensorsWriter.write(to: path, tensors: table)
    }

    /// A file or tensor name with control characters is escaped: one line, no raw terminal control.
    @Test func controlCharactersInFileNamesAreEscaped() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let name = "evil\nname\u{1B}[2J.safetensors"
        let path = folder.appendingPathComponent(name).path
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        let r = try CommandRunner.run("dloral-convert", ["inspect", path])
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1, "\(r.stderr.debugDescription)")
        #expect(r.stderr.contains(#"evil\nname\u{1B}[2J.safetensors"#), "\(r.stderr.debugDescription)")
        #expect(!r.stderr.contains("\u{1B}"))
    }

    /// A sharded index whose weight_map lists nothing is not a model.
    @Test func emptyWeightMapIsRefused() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let unet = folder.appendingPathComponent("unet")
        try FileManager.default.createDirectory(at: unet, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "Tests/Fixtures/tiny/base/unet/config.json", toPath: unet.appendingPathComponent("config.json").path)
        let index = unet.appendingPathComponent("diffusion_pytorch_model.safetensors.index.json")
        try Data(#"{"metadata":{"total_size":0},"weight_map":{}}"#.utf8).write(to: index)
        let r = try CommandRunner.run("dloral-convert", ["inspect", folder.path])
        #expect(r.status == 2, "\(r.stdout)\(r.stderr)")
        #expect(r.stderr.contains(index.path) && r.stderr.contains("\"weight_map\" is empty"), "\(r.stderr)")
    }

    /// `--activations auto` needs the user's calibration frames and prompt embeddings, of the
    /// UNet's width; it no longer falls back to the test fixtures or to zero embeddings.
    @Test func autoNeedsCalibrationInputsThatFit() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let merged = "Tests/Fixtures/tiny/merged/full"
        let out = folder.appendingPathComponent("auto.dlrt").path
        let framesOnly = folder.appendingPathComponent("frames-only.safetensors").path
        try Self.writeTensors([("input.frames", [2, 3, 16, 16])], to: framesOnly)
        let narrowReference = folder.appendingPathComponent("narrow-reference.safetensors").path
        try Self.writeTensors([("input.frames", [2, 3, 16, 16]), ("input.prompt_embeds", [1, 77, 16])], to: narrowReference)
        let narrow = folder.appendingPathComponent("narrow.safetensors").path
        try Self.writeTensors([("prompt_embeds", [1, 77, 16])], to: narrow)
        let cases: [([String], [String])] = [
            ([], ["--calibration", "--prompt-embeds"]),
            (["--calibration", framesOnly], [framesOnly, "--prompt-embeds"]),
            (["--calibration", narrowReference], [narrowReference, "input.prompt_embeds", "[1, 77, 16]", "cross_attention_dim 32"]),
            (["--calibration", framesOnly, "--prompt-embeds", narrow], [narrow, "[1, 77, 16]", "cross_attention_dim 32"]),
        ]
        for (args, mentions) in cases {
            let r = try CommandRunner.run("dloral-convert", ["quantize", merged, "--weights", "int8", "--activations", "auto", "--output", out] + args)
            #expect(r.status == 2, "\(args): exit \(r.status) \(r.stderr)")
            for text in mentions { #expect(r.stderr.contains(text), "\(args): '\(text)' not in \(r.stderr)") }
            #expect(!FileManager.default.fileExists(atPath: out))
        }
    }
}
