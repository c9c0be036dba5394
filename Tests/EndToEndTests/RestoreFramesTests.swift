import DLoRALFormats
import Foundation
import Testing

/// `dloral-run` on a folder: real (here synthetic) low-quality PNG frames in, restored frames out
/// at 4× the size, one per frame after the first, named after their inputs; `dloral-verify
/// --frames <folder>` (where this lived before) points to it.
@Suite("restore frames", .serialized)
struct RestoreFramesTests {
    /// Writes `count` w×h RGB PNGs (smooth gradients shifting by one pixel per frame) with a
    /// stdlib-only encoder, independent of our PNG code.
    static func writeFrames(_ folder: URL, count: Int, width: Int, height: Int, startIndex: Int = 0) throws {
        let script = """
            import struct, sys, zlib, os
            folder, count, w, h, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
            def chunk(t, d):
                return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
            for f in range(count):
                rows = b''.join(b'\\x00' + bytes(v for x in range(w) for v in ((x * 7 + f) % 256, (y * 19) % 256, ((x + y) * 5) % 256)) for y in range(h))
                png = b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b'')
                open(os.path.join(folder, 'frame_%04d.png' % (start + f)), 'wb').write(png)
            """
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let r = try CommandRunner.run("/usr/bin/env", ["python3", "-c", script, folder.path, "\(count)", "\(width)", "\(height)", "\(startIndex)"])
        guard r.status == 0 else { throw CommandFailed(message: r.stderr) }
    }

    /// Width and height from a PNG's IHDR.
    static func pngSize(_ path: String) throws -> (Int, Int) {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)).prefix(24))
        #expect(Array(bytes[0..<8]) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        func be(_ at: Int) -> Int { bytes[at..<(at + 4)].reduce(0) { $0 << 8 | Int($1) } }
        return (be(16), be(20))
    }

    static func promptFile(_ folder: URL) throws -> String {
        var table = TensorTable()
        try table.insert("prompt_embeds", TensorView(dtype: .float32, shape: [1, 77, 32],
                         storage: .copying((0..<(77 * 32)).map { Float($0 % 13) / 13 - 0.5 }, origin: "test")), file: "test")
        let path = folder.appendingPathComponent("prompt.safetensors").path
        try SafetensorsWriter.write(to: path, tensors: table)
        return path
    }

    @Test func restoresEachFrameAfterTheFirstAtFourTimesTheSize() throws {
        let work = VerifyCommandTests.work.appendingPathComponent("restore-\(UUID().uuidString)")
        let input = work.appendingPathComponent("lq")
        try Self.writeFrames(input, count: 3, width: 20, height: 14)
        let dlrt = try VerifyCommandTests.build("restore", quantize: ["--weights", "fp16"])
        let out = work.appendingPathComponent("restored")
        // --process-size 32: 20×14 is not enlarged (20 and 14 ≥ 32 / 4), so the model runs at 80×56.
        let r = try CommandRunner.run("dloral-run", [dlrt, "--input", input.path, "--output", out.path, "--prompt-embeds", try Self.promptFile(work), "--process-size", "32", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
        #expect(files == ["frame_0001.png", "frame_0002.png"])
        for file in files {
            let (w, h) = try Self.pngSize(out.appendingPathComponent(file).path)
            #expect(w == 80 && h == 56, "\(file) is \(w)×\(h); 4× of 20×14 is 80×56")
        }
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        #expect(json?["width"] as? Int == 80 && json?["height"] as? Int == 56)
    }

    @Test func badFrameFoldersExitTwo() throws {
        let work = VerifyCommandTests.work.appendingPathComponent("restore-bad-\(UUID().uuidString)")
        let dlrt = try VerifyCommandTests.build("restore-bad")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        let prompt = try Self.promptFile(work)
        let one = work.appendingPathComponent("one")
        try Self.writeFrames(one, count: 1, width: 8, height: 8)
        let r1 = try CommandRunner.run("dloral-run", [dlrt, "--input", one.path, "--output", work.appendingPathComponent("o1").path, "--prompt-embeds", prompt])
        #expect(r1.status == 2 && r1.stderr.contains("at least 2"), "\(r1.stderr)")
        let mixed = work.appendingPathComponent("mixed")
        try Self.writeFrames(mixed, count: 1, width: 8, height: 8)
        try Self.writeFrames(mixed, count: 1, width: 12, height: 8, startIndex: 1)
        let r2 = try CommandRunner.run("dloral-run", [dlrt, "--input", mixed.path, "--output", work.appendingPathComponent("o2").path, "--prompt-embeds", prompt])
        #expect(r2.status == 2 && r2.stderr.contains("must share one size"), "\(r2.stderr)")
        let two = work.appendingPathComponent("two")
        try Self.writeFrames(two, count: 2, width: 8, height: 8)
        let r3 = try CommandRunner.run("dloral-run", [dlrt, "--input", two.path, "--output", work.appendingPathComponent("o3").path])
        #expect(r3.status == 2 && r3.stderr.contains("--prompt-embeds"), "\(r3.stderr)")
        #expect(!FileManager.default.fileExists(atPath: work.appendingPathComponent("o1").path))
    }

    /// Restoring moved to dloral-run: the old spelling is a usage error that says so.
    @Test func verifyFramesFolderPointsToDLoRALRun() throws {
        let work = VerifyCommandTests.work.appendingPathComponent("restore-moved-\(UUID().uuidString)")
        let input = work.appendingPathComponent("lq")
        try Self.writeFrames(input, count: 2, width: 8, height: 8)
        for extra in [[], ["--output", work.appendingPathComponent("out").path]] {
            let r = try CommandRunner.run("dloral-verify", ["model.dlrt", "--frames", input.path] + extra)
            #expect(r.status == 2, "\(r.stderr)")
            #expect(r.stderr.hasPrefix("dloral-verify: error: ") && r.stderr.contains("dloral-run <file.dlrt> --input"), "\(r.stderr)")
            #expect(r.stderr.contains("Usage: dloral-verify"), "\(r.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: work.appendingPathComponent("out").path))
    }
}
