import DLoRALFormats
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `dloral-run` end to end on the tiny model: names and sizes as upstream's test_DLoRAL.py gives
/// them, a resumed run and a sharded run equal to one run byte for byte, memory flat in the clip's
/// length, videos through ffmpeg, and bad inputs refused with exit 2.
@Suite("run command", .serialized)
struct RunCommandTests {
    static let work: URL = {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("dloral-run-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }()

    /// The tiny model quantized to fp32, built once.
    static let dlrt: String = try! VerifyCommandTests.build("run-fp32")
    static let prompt: String = try! RestoreFramesTests.promptFile(work)

    static func fresh(_ name: String) -> URL {
        let folder = work.appendingPathComponent(name)
        try? FileManager.default.removeItem(at: folder)
        return folder
    }

    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> CommandRunner.Result {
        try CommandRunner.run("dloral-run", [dlrt] + arguments + ["--prompt-embeds", prompt], environment: environment)
    }

    /// Visible files of a folder, sorted.
    static func files(_ folder: URL) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    static func contents(_ folder: URL) -> [String: Data] {
        var out: [String: Data] = [:]
        for name in files(folder) { out[name] = try? Data(contentsOf: folder.appendingPathComponent(name)) }
        return out
    }

    static var ffmpegInstalled: Bool { ["/usr/bin/ffmpeg", "/usr/local/bin/ffmpeg"].contains { FileManager.default.isExecutableFile(atPath: $0) } }

    /// Upstream's sizes (UPSTREAM.md, test_DLoRAL.py), computed here from its formulas: the
    /// size the model runs at and the size written.
    static func upstreamSizes(width w: Int, height h: Int, upscale: Int = 4, processSize: Int = 512)
        -> (model: (Int, Int), output: (Int, Int))
    {
        var (sw, sh) = (w, h)
        let least = processSize / upscale
        let enlarged = w < least || h < least
        if enlarged {
            let scale = Double(least) / Double(min(w, h))
            (sw, sh) = (Int(scale * Double(w)), Int(scale * Double(h)))
        }
        let (uw, uh) = (sw * upscale, sh * upscale)
        let model = (uw - uw % 8, uh - uh % 8)
        return (model, enlarged ? (w * upscale, h * upscale) : model)
    }

    @Test(arguments: [(21, 15, 32), (6, 4, 32), (20, 14, 40)])
    func outputsAreNamedAndSizedAsUpstream(width: Int, height: Int, processSize: Int) throws {
        let input = Self.fresh("sizes-\(width)x\(height)-in")
        try RestoreFramesTests.writeFrames(input, count: 3, width: width, height: height, startIndex: 7)
        let out = Self.fresh("sizes-\(width)x\(height)-out")
        let r = try Self.run(["--input", input.path, "--output", out.path, "--process-size", "\(processSize)", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        // Pairs (7, 8) and (8, 9): outputs for the current frames, under the input names.
        #expect(Self.files(out) == ["frame_0008.png", "frame_0009.png"])
        let expected = Self.upstreamSizes(width: width, height: height, processSize: processSize)
        for name in Self.files(out) {
            let (w, h) = try RestoreFramesTests.pngSize(out.appendingPathComponent(name).path)
            #expect((w, h) == expected.output, "\(name) is \(w)×\(h); upstream writes \(expected.output)")
        }
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(json["model_width"] as? Int == expected.model.0 && json["model_height"] as? Int == expected.model.1, "\(json)")
        #expect(json["frames"] as? Int == 2)
        #expect((json["outputs"] as? [String])?.count == 2)
        #expect((json["options"] as? [String: Any])?["color_fix"] as? String == "adain")
        #expect(json["kernels"] is String && json["seconds_per_frame"] is Double)
    }

    /// A run killed with SIGKILL after its first frames, then resumed, writes exactly the frames of
    /// an uninterrupted run.
    @Test func resumeAfterSIGKILLEqualsAnUninterruptedRun() throws {
        let input = Self.fresh("resume-in")
        try RestoreFramesTests.writeFrames(input, count: 7, width: 16, height: 12)
        let whole = Self.fresh("resume-whole")
        let r = try Self.run(["--input", input.path, "--output", whole.path, "--process-size", "16"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(Self.files(whole).count == 6)

        let killed = Self.fresh("resume-killed")
        let process = Process()
        process.executableURL = CommandRunner.binFolder.appendingPathComponent("dloral-run")
        process.arguments = [Self.dlrt, "--input", input.path, "--output", killed.path, "--process-size", "16", "--prompt-embeds", Self.prompt]
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(120)
        while Self.files(killed).count < 2 && process.isRunning && Date() < deadline { usleep(20_000) }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let before = Self.files(killed).count
        #expect(before >= 2 && before < 6, "killed after \(before) frames: the test needs a run stopped midway")

        let resumed = try Self.run(["--input", input.path, "--output", killed.path, "--process-size", "16", "--resume", "--json"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(resumed.stdout.utf8)) as? [String: Any]
        #expect(json?["skipped"] as? Int == before && json?["frames"] as? Int == 6 - before, "\(resumed.stdout)")
        #expect(Self.contents(killed) == Self.contents(whole))
    }

    /// Shards 0:3, 3:5 and 5: of a 7-frame clip give the frames of one run, byte for byte.
    @Test func threeShardsEqualOneRun() throws {
        let input = Self.fresh("shards-in")
        try RestoreFramesTests.writeFrames(input, count: 7, width: 16, height: 12)
        let whole = Self.fresh("shards-whole")
        #expect(try Self.run(["--input", input.path, "--output", whole.path, "--process-size", "16"]).status == 0)
        var merged: [String: Data] = [:]
        for (i, range) in ["0:3", "3:5", "5:"].enumerated() {
            let out = Self.fresh("shards-\(i)")
            let r = try Self.run(["--input", input.path, "--output", out.path, "--process-size", "16", "--frames", range])
            #expect(r.status == 0, "\(r.stderr)")
            merged.merge(Self.contents(out)) { a, _ in a }
        }
        #expect(Self.files(whole).count == 6)
        #expect(merged == Self.contents(whole))
    }

    /// Peak RSS of a 30-frame run is that of a 10-frame run (the clip is never held whole): the
    /// 20 frames more may not add as much as their model inputs alone would (3 × 96 × 96 floats
    /// each, 2.2 MB for 20; measured: the two peaks are within 0.3 MB).
    @Test func memoryIsFlatInClipLength() throws {
        func peakKB(_ count: Int) throws -> Int {
            let input = Self.fresh("memory-\(count)-in")
            try RestoreFramesTests.writeFrames(input, count: count, width: 24, height: 24)
            let out = Self.fresh("memory-\(count)-out")
            // A fresh Python whose only child is the run: RUSAGE_CHILDREN is that run's peak.
            let script = "import resource, subprocess, sys\nr = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\nsys.stderr.write(r.stderr.decode())\nprint(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
            let r = try CommandRunner.run("/usr/bin/env", ["python3", "-c", script, CommandRunner.binFolder.appendingPathComponent("dloral-run").path, Self.dlrt,
                                                           "--input", input.path, "--output", out.path, "--process-size", "24", "--prompt-embeds", Self.prompt])
            let fields = r.stdout.split(separator: " ").map { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1 }
            #expect(fields.first == 0, "\(r.stdout)\(r.stderr)")
            #expect(Self.files(out).count == count - 1)
            return fields.last ?? 0
        }
        let short = try peakKB(10), long = try peakKB(30)
        let twentyInputsKB = 20 * 3 * 96 * 96 * 4 / 1024
        #expect(long < short + twentyInputsKB, "peak RSS \(short) kB for 10 frames, \(long) kB for 30")
    }

    @Test func mp4RoundTrip() throws {
        guard Self.ffmpegInstalled else {
            print("RunCommandTests.mp4RoundTrip: SKIPPED: ffmpeg is not installed (apt-get install ffmpeg)")
            return
        }
        let clip = Self.work.appendingPathComponent("testsrc.mp4")
        try? FileManager.default.removeItem(at: clip)
        let made = try CommandRunner.run("/usr/bin/env", ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=24x16:rate=5", "-frames:v", "4",
                                                          "-pix_fmt", "yuv420p", clip.path])
        #expect(made.status == 0, "\(made.stderr)")
        let folder = Self.fresh("mp4-frames")
        let r1 = try Self.run(["--input", clip.path, "--output", folder.path, "--process-size", "16"])
        #expect(r1.status == 0, "\(r1.stderr)")
        #expect(Self.files(folder) == ["frame_0001.png", "frame_0002.png", "frame_0003.png"])
        let (w, h) = try RestoreFramesTests.pngSize(folder.appendingPathComponent("frame_0001.png").path)
        #expect(w == 96 && h == 64, "\(w)×\(h)")

        let video = Self.work.appendingPathComponent("restored.mp4")
        try? FileManager.default.removeItem(at: video)
        let r2 = try Self.run(["--input", clip.path, "--output", video.path, "--process-size", "16"])
        #expect(r2.status == 0, "\(r2.stderr)")
        let probe = try CommandRunner.run("/usr/bin/env", ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                                                           "-show_entries", "stream=width,height,nb_read_frames", "-of", "csv=p=0", video.path])
        #expect(probe.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "96,64,3", "\(probe.stdout)\(probe.stderr)")
        #expect(Self.files(Self.work).allSatisfy { !$0.contains(".tmp-") })
        let again = try Self.run(["--input", clip.path, "--output", video.path, "--process-size", "16"])
        #expect(again.status == 2 && again.stderr.contains("already exists"), "\(again.stderr)")
    }

    @Test func aVideoWithoutFFmpegNamesTheProgramAndItsPackage() throws {
        let clip = Self.work.appendingPathComponent("not-decodable.mp4")
        try Data("not a video".utf8).write(to: clip)
        let r = try Self.run(["--input", clip.path, "--output", Self.fresh("no-ffmpeg").path], environment: ["PATH": "/nonexistent"])
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.hasPrefix("dloral-run: error: \(clip.path): "), "\(r.stderr)")
        #expect(r.stderr.contains("ffprobe") && r.stderr.contains("apt-get install ffmpeg"), "\(r.stderr)")
        // A video output: refused before the model loads, nothing written.
        let frames = Self.fresh("no-ffmpeg-in")
        try RestoreFramesTests.writeFrames(frames, count: 2, width: 8, height: 8)
        let video = Self.work.appendingPathComponent("no-ffmpeg.mp4")
        let w = try Self.run(["--input", frames.path, "--output", video.path], environment: ["PATH": "/nonexistent"])
        #expect(w.status == 2 && w.stderr.hasPrefix("dloral-run: error: \(video.path): writing a video needs ffmpeg"), "\(w.stderr)")
        #expect(w.stderr.contains("apt-get install ffmpeg") && !FileManager.default.fileExists(atPath: video.path), "\(w.stderr)")
    }

    /// JPEG frames are decoded in-process to Pillow's bytes: with no ffmpeg on PATH, the run on
    /// the JPEG folder writes exactly what the run on Pillow's PNG decodes of the same frames
    /// writes (Tests/Fixtures/jpeg, Tools/fixtures/make_jpeg_references.py).
    @Test func aFolderOfJPEGFramesNeedsNoFFmpegAndRunsOnPillowsPixels() throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/jpeg")
        let jpegs = Self.fresh("jpeg-in"), pngs = Self.fresh("jpeg-png-in")
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("clip"), to: jpegs)
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("clip_png"), to: pngs)
        #expect(Self.files(jpegs) == ["frame_0000.jpg", "frame_0001.jpg", "frame_0002.jpg"])
        #expect(Self.files(pngs) == ["frame_0000.png", "frame_0001.png", "frame_0002.png"])

        let fromJPEG = Self.fresh("jpeg-out"), fromPNG = Self.fresh("jpeg-png-out")
        let r = try Self.run(["--input", jpegs.path, "--output", fromJPEG.path, "--process-size", "32"], environment: ["PATH": "/nonexistent"])
        #expect(r.status == 0, "\(r.stderr)")
        let p = try Self.run(["--input", pngs.path, "--output", fromPNG.path, "--process-size", "32"])
        #expect(p.status == 0, "\(p.stderr)")
        #expect(Self.files(fromJPEG) == ["frame_0001.png", "frame_0002.png"])
        #expect(Self.contents(fromJPEG) == Self.contents(fromPNG), "the JPEG frames did not decode to Pillow's pixels")

        // A truncated last frame: its header is whole, so it is found when decoded: exit 2 naming
        // it, the frame before it written whole and nothing else in the folder.
        let damaged = Self.fresh("jpeg-damaged-in")
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("clip"), to: damaged)
        let last = damaged.appendingPathComponent("frame_0002.jpg")
        let bytes = [UInt8](try Data(contentsOf: last))
        // Cut in the middle of the scan data (after the SOS marker FF DA), past the header.
        let sos = try #require((0..<(bytes.count - 1)).first { bytes[$0] == 0xFF && bytes[$0 + 1] == 0xDA })
        try Data(bytes.prefix((sos + bytes.count) / 2)).write(to: last)
        let damagedOut = Self.fresh("jpeg-damaged-out")
        let d = try Self.run(["--input", damaged.path, "--output", damagedOut.path, "--process-size", "32"], environment: ["PATH": "/nonexistent"])
        #expect(d.status == 2 && d.stderr.contains(last.path) && d.stderr.contains("Premature end of JPEG file"), "\(d.stderr)")
        #expect(!d.stderr.contains("Fatal error") && !d.stderr.contains("ffmpeg"), "\(d.stderr)")
        let left = try FileManager.default.contentsOfDirectory(atPath: damagedOut.path)
        #expect(left == ["frame_0001.png"], "\(left)")
        #expect(try Data(contentsOf: damagedOut.appendingPathComponent("frame_0001.png")) == Self.contents(fromPNG)["frame_0001.png"])
        // Cut inside its header: refused when the headers are read, before anything is written.
        try Data(bytes.prefix(sos / 2)).write(to: last)
        let headerOut = Self.fresh("jpeg-header-out")
        let h = try Self.run(["--input", damaged.path, "--output", headerOut.path, "--process-size", "32"])
        #expect(h.status == 2 && h.stderr.contains(last.path) && h.stderr.contains("not a readable JPEG"), "\(h.stderr)")
        #expect(!FileManager.default.fileExists(atPath: headerOut.path))

        // A CMYK frame: refused from its header, before the model runs.
        let cmyk = Self.fresh("jpeg-cmyk-in")
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("clip"), to: cmyk)
        try FileManager.default.removeItem(at: cmyk.appendingPathComponent("frame_0001.jpg"))
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("cmyk.jpg"), to: cmyk.appendingPathComponent("frame_0001.jpg"))
        let cmykOut = Self.fresh("jpeg-cmyk-out")
        let c = try Self.run(["--input", cmyk.path, "--output", cmykOut.path, "--process-size", "32"])
        #expect(c.status == 2 && c.stderr.contains(cmyk.appendingPathComponent("frame_0001.jpg").path) && c.stderr.contains("CMYK"), "\(c.stderr)")
        #expect(Self.files(cmykOut).isEmpty)
    }

    @Test func badInputsExitTwoWithClearMessages() throws {
        let good = Self.fresh("bad-good")
        try RestoreFramesTests.writeFrames(good, count: 3, width: 8, height: 8)
        let one = Self.fresh("bad-one")
        try RestoreFramesTests.writeFrames(one, count: 1, width: 8, height: 8)
        let mixed = Self.fresh("bad-mixed")
        try RestoreFramesTests.writeFrames(mixed, count: 1, width: 8, height: 8)
        try RestoreFramesTests.writeFrames(mixed, count: 1, width: 12, height: 8, startIndex: 1)
        let out = Self.fresh("bad-out")
        let cases: [([String], String)] = [
            (["--input", Self.work.appendingPathComponent("missing").path, "--output", out.path], "no such file or folder"),
            (["--input", one.path, "--output", out.path], "at least 2"),
            (["--input", mixed.path, "--output", out.path], "must share one size"),
            (["--input", good.path, "--output", out.path, "--color-fix", "sepia"], "--color-fix 'sepia' is not a colour fix"),
            (["--input", good.path, "--output", out.path, "--frames", "5:3"], "END must be greater than START"),
            (["--input", good.path, "--output", out.path, "--frames", "a:b"], "--frames takes START:END"),
            (["--input", good.path, "--output", out.path, "--frames=-1:2"], "--frames takes START:END"),
            (["--input", good.path, "--output", out.path, "--frames", "0:1"], "holds no output frame"),
            (["--input", good.path, "--output", out.path, "--frames", "3:"], "starts past its last frame"),
            (["--input", good.path, "--output", good.path], "is the input"),
            (["--input", good.path, "--output", out.path, "--latent-tile", "32", "--latent-overlap", "32"], "--latent-overlap is 32"),
            (["--input", good.path, "--output", out.path, "--vae-encoder-tile", "12"], "multiple of 8"),
            (["--input", good.path, "--output", out.path, "--resume", "--overwrite"], "give one"),
            (["--input", good.path, "--output", out.path, "--bogus"], "--bogus"),
        ]
        for (arguments, message) in cases {
            let r = try Self.run(arguments)
            #expect(r.status == 2, "\(arguments): \(r.stderr)")
            #expect(r.stderr.hasPrefix("dloral-run: error: ") && r.stderr.contains(message), "\(arguments): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out.path), "\(arguments) wrote \(out.path)")
        }
        #expect(Self.files(good).count == 3)
        // An output frame already there: refused unless --overwrite, and nothing written before.
        let existing = Self.fresh("bad-existing")
        try FileManager.default.createDirectory(at: existing, withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: existing.appendingPathComponent("frame_0002.png"))
        let r = try Self.run(["--input", good.path, "--output", existing.path])
        #expect(r.status == 2 && r.stderr.contains("frame_0002.png: already exists"), "\(r.stderr)")
        #expect(Self.files(existing) == ["frame_0002.png"])
        let o = try Self.run(["--input", good.path, "--output", existing.path, "--overwrite"])
        #expect(o.status == 0, "\(o.stderr)")
        #expect(Self.files(existing) == ["frame_0001.png", "frame_0002.png"])
    }

    /// SIGTERM mid-run: the frames written are complete PNGs, no temporary is left, exit 143.
    @Test func sigtermLeavesOnlyCompleteFrames() throws {
        let input = Self.fresh("term-in")
        try RestoreFramesTests.writeFrames(input, count: 12, width: 16, height: 12)
        let out = Self.fresh("term-out")
        let process = Process()
        process.executableURL = CommandRunner.binFolder.appendingPathComponent("dloral-run")
        process.arguments = [Self.dlrt, "--input", input.path, "--output", out.path, "--process-size", "16", "--prompt-embeds", Self.prompt]
        let err = Pipe()
        process.standardError = err
        try process.run()
        let deadline = Date().addingTimeInterval(120)
        while Self.files(out).count < 1 && process.isRunning && Date() < deadline { usleep(10_000) }
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationReason == .exit && process.terminationStatus == 143, "\(process.terminationStatus): \(stderr)")
        let all = (try? FileManager.default.contentsOfDirectory(atPath: out.path)) ?? []
        #expect(all.allSatisfy { !$0.hasPrefix(".") }, "temporaries left: \(all)")
        // The message counts the frames that stay rather than claiming nothing was written.
        let kept = all.count == 1 ? "the 1 output finished before it stays" : "the \(all.count) outputs finished before it stay"
        #expect(stderr.contains("dloral-run: interrupted; \(kept), the one in progress was removed"), "\(all.count) frames: \(stderr)")
        for name in all {
            let data = try Data(contentsOf: out.appendingPathComponent(name))
            // A PNG ends with its IEND chunk: "IEND" and that chunk's CRC.
            #expect(data.suffix(8) == Data([0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82]), "\(name) is not a complete PNG")
        }
    }

    @Test func versionAndHelp() throws {
        let v = try CommandRunner.run("dloral-run", ["--version"])
        let verify = try CommandRunner.run("dloral-verify", ["--version"])
        #expect(v.status == 0 && v.stdout == verify.stdout && !v.stdout.isEmpty)
        let h = try CommandRunner.run("dloral-run", ["--help"])
        #expect(h.status == 0 && h.stdout.contains("--resume") && h.stdout.contains("--frames <START:END>"), "\(h.stdout)")
    }
}
