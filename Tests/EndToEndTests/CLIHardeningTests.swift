import DLoRALFormats
import Foundation
import Testing

/// Issue 16, items 4, 5, 13, 15 and 16: frames too small or too large for the model or the
/// machine, options that do not apply, the error and usage style, and README against `--help`.
@Suite("CLI hardening", .serialized)
struct CLIHardeningTests {
    static let work: URL = {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("dloral-cli-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }()

    /// An fp16 `.dlrt` of the tiny model, built once.
    nonisolated(unsafe) static var model: String?
    static func dlrt() throws -> String {
        if let model { return model }
        let path = try VerifyCommandTests.build("hardening", quantize: ["--weights", "fp16"])
        model = path
        return path
    }

    /// Writes `count` uniform grey w×h RGB PNGs with Python's zlib (rows compressed one by one,
    /// so an 8000×8000 frame is written in about a second and is ~200 KB).
    static func writeFrames(_ folder: URL, count: Int, width: Int, height: Int) throws {
        let script = """
            import struct, sys, zlib, os
            folder, count, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
            def chunk(t, d):
                return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
            row = b'\\x00' + b'\\x80' * (3 * w)
            c = zlib.compressobj()
            data = b''.join(c.compress(row) for _ in range(h)) + c.flush()
            png = b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) + chunk(b'IDAT', data) + chunk(b'IEND', b'')
            for f in range(count):
                open(os.path.join(folder, 'frame_%04d.png' % f), 'wb').write(png)
            """
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let r = try CommandRunner.run("/usr/bin/env", ["python3", "-c", script, folder.path, "\(count)", "\(width)", "\(height)"])
        guard r.status == 0 else { throw CommandFailed(message: r.stderr) }
    }

    /// The VAE's downsampling factor from the tiny model's own config: 2^(blocks − 1).
    static func vaeFactor() throws -> Int {
        let url = CommandRunner.fixtures.appendingPathComponent("tiny/base/vae/config.json")
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        return 1 << ((config["block_out_channels"] as! [Int]).count - 1)
    }

    static func restore(_ frames: URL, _ extra: [String] = []) throws -> (CommandRunner.Result, URL) {
        let out = frames.deletingLastPathComponent().appendingPathComponent(frames.lastPathComponent + "-out")
        let r = try CommandRunner.run("dloral-run", [try dlrt(), "--input", frames.path, "--output", out.path,
                                                      "--prompt-embeds", try RestoreFramesTests.promptFile(work)] + extra)
        return (r, out)
    }

    /// Item 4: 1×1 frames (0×0 after the ×4 upscale and the resize to a multiple of 8) are refused
    /// with the minimum, one latent pixel: f×f for VAE factor f (from input frames of ⌈f / 4⌉);
    /// that minimum itself runs. --process-size 4 keeps upstream's enlargement of small inputs off.
    @Test func framesTooSmallForTheModelExitTwoWithTheMinimum() throws {
        let factor = try Self.vaeFactor()
        let minimum = (factor + 3) / 4
        let small = Self.work.appendingPathComponent("small")
        try Self.writeFrames(small, count: 2, width: minimum - 1, height: minimum - 1)
        let (r, out) = try Self.restore(small, ["--process-size", "4"])
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.hasPrefix("dloral-run: error: \(small.path): frames are \(minimum - 1)×\(minimum - 1)"), "\(r.stderr)")
        #expect(r.stderr.contains("at least \(factor)×\(factor)"), "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1)
        #expect(!FileManager.default.fileExists(atPath: out.path))

        let smallest = Self.work.appendingPathComponent("smallest")
        try Self.writeFrames(smallest, count: 2, width: minimum, height: minimum)
        let (ok, restored) = try Self.restore(smallest, ["--process-size", "4"])
        #expect(ok.status == 0, "\(ok.stderr)")
        let (w, h) = try RestoreFramesTests.pngSize(restored.appendingPathComponent("frame_0001.png").path)
        #expect(w == factor && h == factor, "\(w)×\(h)")
        // Plural right for one restored frame (item 15).
        #expect(ok.stderr.contains("restored 1 frame ("), "\(ok.stderr)")
    }

    /// Item 5: two 8000×8000 frames restore at 32000×32000; their input tensor alone is
    /// 2 × 3 × 32000² × 4 bytes = 24.6 GB, and the VAE's activations many times that. Refused
    /// before any allocation, naming the frame, its size and the memory.
    @Test func framesTooLargeForTheMachineExitTwoBeforeAllocating() throws {
        let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        let totalKB = meminfo.split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
            .flatMap { Int($0.split(separator: " ")[1]) } ?? 0
        guard totalKB < 500_000_000 else { return }  // a machine with 500 GB could run it
        let large = Self.work.appendingPathComponent("large")
        try Self.writeFrames(large, count: 2, width: 8000, height: 8000)
        let (r, out) = try Self.restore(large)
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.hasPrefix("dloral-run: error: \(large.path): frames are 8000×8000"), "\(r.stderr)")
        #expect(r.stderr.contains("8000×8000") && r.stderr.contains("32000×32000"), "\(r.stderr)")
        #expect(r.stderr.contains("working memory") && r.stderr.contains("this machine has"), "\(r.stderr)")
        #expect(r.stderr.contains("smaller frames"), "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1)
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }

    /// Item 13: options of --against given with --reference are usage errors (exit 2) saying why,
    /// not silently ignored; --output is dloral-run's.
    @Test(arguments: [["--input", "clip"], ["--prompt-embeds", "p.safetensors"], ["--color-fix", "wavelet"], ["--latent-tile", "64"]])
    func againstOptionsWithReferenceAreUsageErrors(option: [String]) throws {
        let r = try CommandRunner.run("dloral-verify", [try Self.dlrt(), "--reference", "Tests/Fixtures/tiny/reference_full.safetensors"] + option)
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.hasPrefix("dloral-verify: error: \(option[0]) applies only with --against"), "\(r.stderr)")
    }

    @Test func outputWithReferenceIsAUsageError() throws {
        let out = Self.work.appendingPathComponent("never")
        let r = try CommandRunner.run("dloral-verify", [try Self.dlrt(), "--reference", "Tests/Fixtures/tiny/reference_full.safetensors", "--output", out.path])
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.hasPrefix("dloral-verify: error: --output is dloral-run's now"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }

    /// Item 15: --version on every binary prints the version the tools record in provenance.
    @Test func versionOnBothBinaries() throws {
        let merged = Self.work.appendingPathComponent("version-merged")
        let m = try CommandRunner.run("dloral-convert", ["merge", "--base", "Tests/Fixtures/tiny/base", "--lora", "Tests/Fixtures/tiny/model.pkl", "--output", merged.path])
        #expect(m.status == 0, "\(m.stderr)")
        let record = try JSONSerialization.jsonObject(with: Data(contentsOf: merged.appendingPathComponent("dloral.json"))) as! [String: Any]
        let recorded = try #require((record["provenance"] as? [String: Any])?["version"] as? String ?? record["version"] as? String,
                                    "dloral.json records no version: \(record.keys.sorted())")
        for tool in ["dloral-convert", "dloral-verify", "dloral-run"] {
            let r = try CommandRunner.run(tool, ["--version"])
            #expect(r.status == 0, "\(tool): \(r.stderr)")
            #expect(r.stdout == recorded + "\n", "\(tool) --version printed '\(r.stdout)', provenance records \(recorded)")
        }
    }

    /// Item 15: one error style, with the usage of the subcommand that was given.
    @Test(arguments: [
        (["merge", "--base", "a", "--lora", "b", "--output", "c", "--stage", "bad"], "--stage", "dloral-convert merge"),
        (["quantize", "x", "--output", "y", "--weights", "int3"], "--weights", "dloral-convert quantize"),
        (["quantize", "x"], "--output", "dloral-convert quantize"),
        (["inspect"], "<path>", "dloral-convert inspect"),
        (["--bogus"], "--bogus", "dloral-convert"),
    ])
    func usageErrorsUseOneStyleAndTheSubcommandsUsage(arguments: [String], mentions: String, usage: String) throws {
        let r = try CommandRunner.run("dloral-convert", arguments)
        #expect(r.status == 2, "\(r.stderr)")
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.first?.hasPrefix("dloral-convert: error: ") == true && lines[0].contains(mentions), "\(r.stderr)")
        #expect(!r.stderr.contains("Error:"), "\(r.stderr)")
        #expect(lines.contains { $0.hasPrefix("Usage: \(usage) ") || $0 == "Usage: \(usage) <subcommand>" }, "\(r.stderr)")
    }

    /// Item 15: a file given as --frames, and prompt embeddings of the wrong shape, name the file.
    @Test func framesFileAndPromptShapeErrorsNameTheFile() throws {
        let (r1, _) = try Self.restore(CommandRunner.root.appendingPathComponent("README.md"))
        #expect(r1.status == 2, "\(r1.stderr)")
        // A file is taken for a video: ffprobe cannot read it (or is missing), and the error names it.
        #expect(r1.stderr.hasPrefix("dloral-run: error: \(CommandRunner.root.appendingPathComponent("README.md").path): "), "\(r1.stderr)")
        #expect(!r1.stderr.contains("NSCocoaErrorDomain"))

        var table = TensorTable()
        try table.insert("prompt_embeds", TensorView(dtype: .float32, shape: [1, 77, 16],
                         storage: .copying([Float](repeating: 0, count: 77 * 16), origin: "test")), file: "test")
        let prompt = Self.work.appendingPathComponent("narrow-prompt.safetensors").path
        try SafetensorsWriter.write(to: prompt, tensors: table)
        let frames = Self.work.appendingPathComponent("prompt-frames")
        try Self.writeFrames(frames, count: 2, width: 4, height: 4)
        let r2 = try CommandRunner.run("dloral-run", [try Self.dlrt(), "--input", frames.path, "--output", Self.work.appendingPathComponent("p-out").path, "--prompt-embeds", prompt])
        #expect(r2.status == 2, "\(r2.stderr)")
        #expect(r2.stderr.hasPrefix("dloral-run: error: \(prompt): tensor 'prompt_embeds': shape [1, 77, 16]"), "\(r2.stderr)")

        let one = Self.work.appendingPathComponent("one-frame")
        try Self.writeFrames(one, count: 1, width: 4, height: 4)
        let (r3, _) = try Self.restore(one)
        #expect(r3.stderr.contains("holds 1 PNG or JPEG frame;"), "\(r3.stderr)")
    }

    /// Item 15: metrics printed to 2 decimals in dB (stderr, JSON, HTML), not 15 digits.
    @Test func metricsArePrintedWithSensiblePrecision() throws {
        let report = Self.work.appendingPathComponent("precision-report")
        let r = try CommandRunner.run("dloral-verify", [try Self.dlrt(), "--reference", "Tests/Fixtures/tiny/reference_full.safetensors",
                                                         "--min-psnr", "200", "--json", "--report", report.path])
        #expect(r.status == 1, "\(r.stderr)")
        let psnr = try #require(r.stderr.firstMatch(of: try Regex(#"PSNR (\d+\.\d+) dB < 200\.00 dB"#)), "\(r.stderr)")
        let psnrText = String(psnr.output[1].substring ?? "")
        #expect(psnrText.split(separator: ".").last?.count == 2, "\(r.stderr)")
        let frames = try #require(r.stdout.firstMatch(of: try Regex(#""psnr_db" *: *([0-9.]+)"#)), "\(r.stdout)")
        #expect((frames.output[1].substring ?? "").split(separator: ".").last!.count <= 2, "\(r.stdout)")
        for match in r.stdout.matches(of: try Regex(#""(max_abs|mean_abs)" *: *([0-9.e+-]+)"#)) {
            let mantissa = (match.output[2].substring ?? "").split(separator: "e")[0].filter(\.isNumber).drop { $0 == "0" }
            #expect(mantissa.count <= 4, "\(match.output[0].substring ?? ""): more than 4 significant digits")
        }
        let html = try String(contentsOf: report.appendingPathComponent("index.html"), encoding: .utf8)
        #expect(html.contains("PSNR \(psnrText) dB &lt; 200.00 dB"), "the HTML report's failure text")
    }

    /// Item 15: the quantize summary names the source's dtype, not always fp32.
    @Test func quantizeSummaryNamesTheSourceDType() throws {
        let merged = Self.work.appendingPathComponent("fp16-merged")
        let m = try CommandRunner.run("dloral-convert", ["merge", "--base", "Tests/Fixtures/tiny/base", "--lora", "Tests/Fixtures/tiny/model.pkl", "--output", merged.path, "--dtype", "fp16"])
        #expect(m.status == 0, "\(m.stderr)")
        let q = try CommandRunner.run("dloral-convert", ["quantize", merged.path, "--weights", "int8", "--output", Self.work.appendingPathComponent("from-fp16.dlrt").path])
        #expect(q.status == 0, "\(q.stderr)")
        #expect(!q.stderr.contains("of the fp32 source"), "\(q.stderr)")
        #expect(q.stderr.contains("of the fp16 source") || q.stderr.contains("of the source (fp16, fp32)"), "\(q.stderr)")
    }

    /// Item 16: every option `--help` lists is documented, in README.md or the command's page
    /// under docs/; DLORAL_KERNELS is in dloral-verify's help; nothing cites the design document kept outside the repository,
    /// which is not in the repository.
    @Test(arguments: [("dloral-convert", ["inspect", "--help"]), ("dloral-convert", ["merge", "--help"]),
                      ("dloral-convert", ["quantize", "--help"]), ("dloral-verify", ["--help"]), ("dloral-convert", ["--help"])])
    func helpAgreesWithTheReadme(tool: String, arguments: [String]) throws {
        let readme = try ["README.md", "docs/convert.md", "docs/verify.md", "docs/run.md"].map {
            try String(contentsOf: CommandRunner.root.appendingPathComponent($0), encoding: .utf8)
        }.joined(separator: "\n")
        let r = try CommandRunner.run(tool, arguments)
        #expect(r.status == 0, "\(r.stderr)")
        let options = Set(r.stdout.matches(of: try Regex(#"(--[a-z][a-z0-9-]+)"#)).map { String($0.output[1].substring ?? "") })
        for option in options.subtracting(["--help", "--version"]).sorted() {
            #expect(readme.contains("`\(option)") || readme.contains(" \(option) ") || readme.contains("[\(option)"),
                    "\(tool) \(arguments.joined(separator: " ")) lists \(option), neither README.md nor docs/ does")
        }
        #expect(!r.stdout.contains("DESIGN"), "\(r.stdout)")
        if tool == "dloral-verify" { #expect(r.stdout.contains("DLORAL_KERNELS"), "\(r.stdout)") }
    }

    @Test func nothingCitesADocumentOutsideTheRepository() throws {
        var citing: [String] = []
        for folder in ["Sources", "Tools", "Tests", "Formats", "docs"] {
            let root = CommandRunner.root.appendingPathComponent(folder)
            let files = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil)?.compactMap { $0 as? URL } ?? []
            for file in files where ["swift", "py", "md", "c", "h", "sh", "proto"].contains(file.pathExtension) {
                guard file.lastPathComponent != "CLIHardeningTests.swift" else { continue }
                if let text = try? String(contentsOf: file, encoding: .utf8), text.contains("DESIGN §") || text.contains("DESIGN's") {
                    citing.append(file.path.replacingOccurrences(of: CommandRunner.root.path + "/", with: ""))
                }
            }
        }
        for document in ["README.md", "BENCHMARKS.md", "FUZZING.md"] {
            let text = try String(contentsOf: CommandRunner.root.appendingPathComponent(document), encoding: .utf8)
            if text.contains("DESIGN §") { citing.append(document) }
        }
        #expect(citing.isEmpty, "cite a design document that is not in the repository: \(citing)")
    }
}
