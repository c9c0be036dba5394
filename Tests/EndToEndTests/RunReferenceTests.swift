import DLoRALFormats
import Foundation
import Testing

/// The fp32 tiny model against the committed references of the PyTorch reference maker
/// (Tools/reference/make_reference.py, Tests/Fixtures/references): `dloral-verify` with the
/// options each records, shards merged, and the PNGs `dloral-run` writes for the same clips.
@Suite("run references", .serialized)
struct RunReferenceTests {
    static let references = CommandRunner.fixtures.appendingPathComponent("references")
    static let clips = CommandRunner.fixtures.appendingPathComponent("clips")

    static func verify(_ arguments: [String]) throws -> (CommandRunner.Result, [String: Any]) {
        let r = try CommandRunner.run("dloral-verify", arguments)
        return (r, (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:])
    }

    static func checkPasses(_ name: String) throws {
        let (r, json) = try Self.verify([RunCommandTests.dlrt, "--reference", Self.references.appendingPathComponent("\(name).safetensors").path, "--json"])
        #expect(r.status == 0, "\(name): \(r.stdout)\(r.stderr)")
        let stages = json["stages"] as? [String: Any] ?? [:]
        #expect((stages["input_frames"] as? [String: Any])?["max_abs"] as? Double == 0, "\(name): the preparation differs")
        #expect(((stages["frames"] as? [String: Any])?["max_abs"] as? Double ?? 1) <= 1e-4, "\(name): \(stages["frames"] ?? "")")
        let final = json["final_frames"] as? [String: Any]
        #expect((final?["worst_excess"] as? Int ?? 1) <= 0, "\(name): \(json["final_frames"] ?? "")")
    }

    @Test(arguments: ["untiled_12x8", "latent_tiled_18x12", "vae_encoder_tiled_20x20", "vae_decoder_tiled_50x8", "enlarged_22x15"])
    func fp32MatchesTheReferenceMaker(name: String) throws {
        try Self.checkPasses(name)
    }

    /// Shards 1:2 and 2: of the untiled reference merge to the unsharded verdict and sums.
    @Test func shardsOfAReferenceMerge() throws {
        let reference = Self.references.appendingPathComponent("untiled_12x8.safetensors").path
        let (whole, wholeJSON) = try Self.verify([RunCommandTests.dlrt, "--reference", reference, "--json"])
        #expect(whole.status == 0, "\(whole.stderr)")
        var files: [String] = []
        for (i, range) in ["1:2", "2:"].enumerated() {
            let (r, _) = try Self.verify([RunCommandTests.dlrt, "--reference", reference, "--frames", range, "--json"])
            #expect(r.status == 0, "\(r.stderr)")
            let file = RunCommandTests.work.appendingPathComponent("ref-shard-\(i).json")
            try Data(r.stdout.utf8).write(to: file)
            files.append(file.path)
        }
        let (merged, mergedJSON) = try Self.verify(["--merge-results"] + files + ["--json"])
        #expect(merged.status == 0, "\(merged.stdout)\(merged.stderr)")
        let (a, b) = (mergedJSON["stages"] as? [String: Any] ?? [:], wholeJSON["stages"] as? [String: Any] ?? [:])
        for stage in ["input_frames", "latents", "unet_input", "unet_output", "x0", "frames"] {
            #expect("\((a[stage] as? [String: Any])?["max_abs"] ?? "none")" == "\((b[stage] as? [String: Any])?["max_abs"] ?? "none")", "\(stage)")
            #expect("\((a[stage] as? [String: Any])?["psnr_db"] ?? "none")" == "\((b[stage] as? [String: Any])?["psnr_db"] ?? "none")", "\(stage)")
        }
    }

    /// dloral-run on the reference's clip with its options writes what the reference maker saved
    /// (output.final_frames), to within one level; the PNGs are decoded by a stdlib-only decoder.
    @Test func runWritesTheReferenceMakersFrames() throws {
        let reference = try SafetensorsFile(path: Self.references.appendingPathComponent("untiled_12x8.safetensors").path)
        let finals = try #require(reference.table["output.final_frames"])
        let options = try JSONSerialization.jsonObject(with: Data((reference.table.metadata["dloral_run_options"] ?? "{}").utf8)) as? [String: Any] ?? [:]
        let names = options["frame_names"] as? [String] ?? []
        let out = RunCommandTests.fresh("reference-run")
        let r = try CommandRunner.run("dloral-run", [RunCommandTests.dlrt, "--input", Self.clips.appendingPathComponent("12x8").path, "--output", out.path,
                                                     "--prompt-embeds", Self.clips.appendingPathComponent("prompt_embeds.safetensors").path,
                                                     "--process-size", "\(options["process_size"] ?? 512)", "--color-fix", "\(options["color_fix"] ?? "adain")"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(RunCommandTests.files(out) == Array(names.dropFirst()))
        let (h, w) = (finals.shape[1], finals.shape[2])
        let expected = try #require(finals.contiguousBytes)
        for (i, name) in RunCommandTests.files(out).enumerated() {
            let decode = """
                import struct, sys, zlib
                data = open(sys.argv[1], 'rb').read()
                pos, idat, w, h = 8, b'', 0, 0
                while pos < len(data):
                    n, t = struct.unpack('>I4s', data[pos:pos + 8]); body = data[pos + 8:pos + 8 + n]; pos += 12 + n
                    if t == b'IHDR': w, h, depth, colour = struct.unpack('>IIBB', body[:10]); assert (depth, colour) == (8, 2)
                    if t == b'IDAT': idat += body
                raw, stride, out, prev = zlib.decompress(idat), w * 3, bytearray(), bytearray(w * 3)
                for y in range(h):
                    f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
                    for x in range(stride):
                        a = line[x - 3] if x >= 3 else 0; b = prev[x]; c = prev[x - 3] if x >= 3 else 0
                        if f == 1: line[x] = (line[x] + a) & 255
                        elif f == 2: line[x] = (line[x] + b) & 255
                        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
                        elif f == 4:
                            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
                    out += line; prev = line
                print(w, h, out.hex())
                """
            let d = try CommandRunner.run("/usr/bin/env", ["python3", "-c", decode, out.appendingPathComponent(name).path])
            let fields = d.stdout.split(separator: " ")
            #expect(fields.count == 3 && Int(fields[0]) == w && Int(fields[1]) == h, "\(name): \(d.stdout.prefix(40))\(d.stderr)")
            guard fields.count == 3 else { continue }
            let hex = Array(fields[2].trimmingCharacters(in: .whitespacesAndNewlines).utf8)
            var worst = 0
            for j in 0..<(w * h * 3) {
                let byte = Int(String(decoding: hex[(2 * j)..<(2 * j + 2)], as: UTF8.self), radix: 16) ?? -1000
                worst = max(worst, abs(byte - Int(expected[i * w * h * 3 + j])))
            }
            #expect(worst <= 1, "\(name) differs from output.final_frames[\(i)] by \(worst) levels")
        }
    }
}
