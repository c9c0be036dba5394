import DLoRALFormats
import Foundation
import Testing

/// Issue 16, item 13 (review of main): options that cannot apply, values outside their range and
/// an unknown DLORAL_KERNELS are usage errors (exit 2) saying why, never silently ignored.
extension CLIHardeningTests {
    static func quantize(_ extra: [String], environment: [String: String] = [:]) throws -> (CommandRunner.Result, URL) {
        let out = Self.work.appendingPathComponent("never-\(UUID().uuidString).dlrt")
        let r = try CommandRunner.run("dloral-convert", ["quantize", "Tests/Fixtures/tiny/base", "--output", out.path] + extra,
                                      environment: environment)
        return (r, out)
    }

    @Test(arguments: [
        (["--weights", "fp16", "--int8-granularity", "block32"], "--int8-granularity block32"),
        (["--weights", "fp32", "--int8-granularity", "block64"], "--int8-granularity block64"),
        (["--target-psnr", "10"], "--target-psnr applies only with --activations auto"),
        (["--activations", "int16", "--calibration", "frames"], "--calibration applies only with --activations auto"),
        (["--calibration", "frames", "--target-psnr", "40"], "--target-psnr and --calibration apply only with --activations auto"),
    ])
    func quantizeOptionsThatCannotApply(extra: [String], message: String) throws {
        let (r, out) = try Self.quantize(extra)
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.hasPrefix("dloral-convert: error: \(message)"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }

    @Test(arguments: ["--min-psnr=nan", "--min-psnr=inf", "--min-psnr=-inf", "--min-cosine=2", "--min-cosine=0", "--min-cosine=nan"])
    func verifyThresholdsOutOfRange(option: String) throws {
        let r = try CommandRunner.run("dloral-verify", ["missing.dlrt", "--reference", "Tests/Fixtures/tiny/reference_full.safetensors", option])
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.hasPrefix("dloral-verify: error: \(option.split(separator: "=")[0]) must be"), "\(r.stderr)")
    }

    /// An unknown level would mean "automatic" in the C dispatcher; both tools refuse it listing
    /// the levels docs/kernel-levels.md names.
    @Test(arguments: ["bogus", "avx3"])
    func unknownKernelLevelIsRefused(value: String) throws {
        let levels = "scalar, avx2, avxvnni, avx512, amx, neon"
        let v = try CommandRunner.run("dloral-verify", ["missing.dlrt", "--reference", "Tests/Fixtures/tiny/reference_full.safetensors"],
                                      environment: ["DLORAL_KERNELS": value])
        #expect(v.status == 2, "\(v.stderr)")
        #expect(v.stderr.hasPrefix("dloral-verify: error: DLORAL_KERNELS=\(value) is not a kernel level"), "\(v.stderr)")
        #expect(v.stderr.contains(levels), "\(v.stderr)")
        let (q, out) = try Self.quantize([], environment: ["DLORAL_KERNELS": value])
        #expect(q.status == 2, "\(q.stderr)")
        #expect(q.stderr.hasPrefix("dloral-convert: error: DLORAL_KERNELS=\(value) is not a kernel level"), "\(q.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }

    /// DLORAL_KERNELS=SCALAR (any case) caps the level, and dloral-verify reports the level it ran at.
    @Test func kernelLevelIsReportedAndCaseInsensitive() throws {
        let r = try CommandRunner.run("dloral-verify", [try Self.dlrt(), "--reference", "Tests/Fixtures/tiny/reference_full.safetensors", "--json"],
                                      environment: ["DLORAL_KERNELS": "SCALAR"])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        #expect(json?["kernels"] as? String == "scalar", "\(r.stdout)")
        let t = try CommandRunner.run("dloral-verify", [try Self.dlrt(), "--reference", "Tests/Fixtures/tiny/reference_full.safetensors"])
        #expect(t.status == 0, "\(t.stderr)")
        let levels = ["scalar", "avx2", "avxvnni", "avx512", "amx", "neon"]
        #expect(levels.contains { t.stdout.contains(", kernels \($0);") }, "\(t.stdout)")
    }

    /// Item 3 of the review: a hidden file is not a frame. Here it is not even a PNG, so reading it
    /// as frame 0 would fail; skipped, the two real frames restore.
    @Test func hiddenFilesAreNotFrames() throws {
        let frames = Self.work.appendingPathComponent("hidden")
        try Self.writeFrames(frames, count: 2, width: 4, height: 4)
        try Data().write(to: frames.appendingPathComponent(".f00.png"))
        try Data("not a png".utf8).write(to: frames.appendingPathComponent("._frame_0000.png"))
        let (r, out) = try Self.restore(frames, ["--process-size", "16"])
        #expect(r.status == 0, "\(r.stderr)")
        let written = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
        #expect(written == ["frame_0001.png"], "\(written)")
    }
}

extension CLIHardeningTests {
    /// Review item 2: a summary line names the output as the error lines do, its control bytes
    /// escaped (BEL as \u{7}, ESC as \u{1B}), so the name cannot ring or recolour the terminal.
    @Test func summaryLinesEscapeFileNames() throws {
        let merged = Self.work.appendingPathComponent("cc\u{07}\u{1B}[31m-merged")
        let r = try CommandRunner.run("dloral-convert", ["merge", "--base", "Tests/Fixtures/tiny/base", "--lora", "Tests/Fixtures/tiny/model.pkl",
                                                         "--output", merged.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(!r.stderr.unicodeScalars.contains { $0.value == 0x07 || $0.value == 0x1B }, "\(r.stderr.debugDescription)")
        #expect(r.stderr.contains("cc\\u{7}\\u{1B}[31m-merged"), "\(r.stderr.debugDescription)")
    }
}

extension CLIHardeningTests {
    /// Review item 2: open(2) of a socket fails with ENXIO ("No such device or address") before
    /// fstat can tell what it is; the message says what the path is instead.
    @Test func socketAsModelIsNotARegularFile() throws {
        let socket = Self.work.appendingPathComponent("m.sock")
        let made = try CommandRunner.run("/usr/bin/env", ["python3", "-c", "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", socket.path])
        #expect(made.status == 0, "\(made.stderr)")
        let r = try CommandRunner.run("dloral-verify", [socket.path, "--reference", "Tests/Fixtures/tiny/reference_full.safetensors"])
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr == "dloral-verify: error: \(socket.path): is not a regular file (a socket); give a file\n", "\(r.stderr)")
    }
}

extension CLIHardeningTests {
    /// Review item 2: an empty frame, or one that is not a PNG, is named as such (libpng alone
    /// says "Read Error"); the signature is PNG specification §5.2's.
    @Test(arguments: [(Data(), "not a PNG file (it is empty)"),
                      (Data("GIF89a..".utf8), "not a PNG file (it starts with 47 49 46 38 39 61 2E 2E, not the PNG signature 89 50 4E 47 0D 0A 1A 0A)"),
                      (Data([0x89, 0x50]), "not a PNG file (it starts with 89 50, not the PNG signature")])
    func notAPNGFrameIsNamed(content: Data, message: String) throws {
        let frames = Self.work.appendingPathComponent("notpng-\(UUID().uuidString)")
        try Self.writeFrames(frames, count: 2, width: 4, height: 4)
        let bad = frames.appendingPathComponent("frame_0001.png")
        try content.write(to: bad)
        let (r, out) = try Self.restore(frames)
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.hasPrefix("dloral-run: error: \(bad.path): \(message)"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }
}

extension CLIHardeningTests {
    /// The tiny reference with `edit` applied, written next to the other hostile inputs.
    static func editedReference(_ name: String, _ edit: (inout TensorTable) throws -> Void) throws -> String {
        var table = try SafetensorsFile(path: "Tests/Fixtures/tiny/reference_full.safetensors").table
        try edit(&table)
        let path = Self.work.appendingPathComponent("\(name).safetensors").path
        try SafetensorsWriter.write(to: path, tensors: table)
        return path
    }

    /// Review item 1: a tensor the reference layout does not have is not silently ignored.
    @Test func unknownReferenceTensorIsWarnedAbout() throws {
        let reference = try Self.editedReference("bogus") { table in
            try table.insert("output.bogus", TensorView(dtype: .float32, shape: [2], storage: .copying([1, 2], origin: "test")), file: "test")
        }
        let r = try CommandRunner.run("dloral-verify", [try Self.dlrt(), "--reference", reference])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("dloral-verify: warning: \(reference): ignoring 'output.bogus'"), "\(r.stderr)")
    }

    /// Review item 1: output.frames of the wrong shape is bad input (exit 2) naming the tensor,
    /// the shape it has and the shape input.frames implies ([T − 1, 3, H, W]: frames 1 … T−1).
    @Test func wrongReferenceOutputShapeIsBadInput() throws {
        var expected: [Int] = []
        let reference = try Self.editedReference("wrong-frames") { table in
            let input = try #require(table["input.frames"]).shape
            expected = [input[0] - 1, input[1], input[2], input[3]]
            let count = 3 * 4 * 4
            table.set("output.frames", TensorView(dtype: .float32, shape: [1, 3, 4, 4], storage: .copying([Float](repeating: 0, count: count), origin: "test")))
        }
        let r = try CommandRunner.run("dloral-verify", [try Self.dlrt(), "--reference", reference])
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.hasPrefix("dloral-verify: error: \(reference): tensor 'output.frames': shape [1, 3, 4, 4]; expected \(expected)"), "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
    }
}
