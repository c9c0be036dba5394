import Foundation
import Testing

/// `dloral-verify --against` on a real (synthetic) clip, sharded with --frames and combined with
/// --merge-results: the merged verdict and sums are those of the unsharded run; shards that do not
/// tile the clip once, or come from different runs, are exit 2.
@Suite("clip verification", .serialized)
struct ClipVerifyTests {
    static let fp32: String = RunCommandTests.dlrt
    static let fp16: String = try! VerifyCommandTests.build("against-fp16", quantize: ["--weights", "fp16"])

    static func verify(_ arguments: [String]) throws -> (CommandRunner.Result, [String: Any]) {
        let r = try CommandRunner.run("dloral-verify", arguments)
        return (r, (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:])
    }

    static func stage(_ json: [String: Any], _ name: String) -> [String: Any] {
        ((json["stages"] as? [String: Any])?[name] as? [String: Any]) ?? [:]
    }

    /// The same file on both sides: every stage identical, 0 levels apart.
    @Test func fp32AgainstItselfIsIdentical() throws {
        let input = RunCommandTests.fresh("against-same-in")
        try RestoreFramesTests.writeFrames(input, count: 3, width: 16, height: 12)
        let (r, json) = try Self.verify([Self.fp32, "--against", Self.fp32, "--input", input.path, "--process-size", "16",
                                         "--prompt-embeds", RunCommandTests.prompt, "--json"])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        for name in ["latents", "unet_output", "x0", "frames"] {
            #expect(Self.stage(json, name)["max_abs"] as? Double == 0, "\(name): \(Self.stage(json, name))")
        }
        #expect((json["final_frames"] as? [String: Any])?["max_levels"] as? Int == 0)
        #expect((json["per_frame"] as? [Any])?.count == 2)
    }

    @Test func shardsMergeToTheUnshardedVerdict() throws {
        let input = RunCommandTests.fresh("against-shards-in")
        try RestoreFramesTests.writeFrames(input, count: 7, width: 16, height: 12)
        let common = ["--against", Self.fp32, "--input", input.path, "--process-size", "16", "--prompt-embeds", RunCommandTests.prompt, "--json"]
        let (whole, wholeJSON) = try Self.verify([Self.fp16] + common)
        #expect(whole.status == 0 || whole.status == 1, "\(whole.stderr)")
        var files: [String] = []
        for (i, range) in ["1:3", "3:6", "6:"].enumerated() {
            let (r, _) = try Self.verify([Self.fp16] + common + ["--frames", range])
            #expect(r.status == 0 || r.status == 1, "\(r.stderr)")
            let file = RunCommandTests.work.appendingPathComponent("shard-\(i).json")
            try Data(r.stdout.utf8).write(to: file)
            files.append(file.path)
        }
        let (merged, mergedJSON) = try Self.verify(["--merge-results"] + files.reversed() + ["--json"])
        #expect(merged.status == whole.status, "\(merged.stdout)\(merged.stderr)")
        for name in ["latents", "unet_output", "x0", "frames"] {
            for key in ["max_abs", "mean_abs", "cosine", "psnr_db"] {
                #expect("\(Self.stage(mergedJSON, name)[key] ?? "none")" == "\(Self.stage(wholeJSON, name)[key] ?? "none")", "\(name).\(key)")
            }
        }
        let (mergedFinal, wholeFinal) = (mergedJSON["final_frames"] as? [String: Any] ?? [:], wholeJSON["final_frames"] as? [String: Any] ?? [:])
        for key in ["max_levels", "differing_fraction", "psnr_db", "passed"] {
            #expect("\(mergedFinal[key] ?? "none")" == "\(wholeFinal[key] ?? "none")", "final_frames.\(key)")
        }
        #expect((mergedJSON["per_frame"] as? [Any])?.count == 6)

        // Overlapping, incomplete, and mixed shards are not one verification.
        let (overlap, _) = try Self.verify(["--merge-results", files[0], files[0], files[1], files[2]])
        #expect(overlap.status == 2 && overlap.stderr.contains("overlap"), "\(overlap.stderr)")
        let (gap, _) = try Self.verify(["--merge-results", files[0], files[2]])
        #expect(gap.status == 2 && gap.stderr.contains("in no shard"), "\(gap.stderr)")
        let (other, _) = try Self.verify([Self.fp32] + common + ["--frames", "3:6"])
        let otherFile = RunCommandTests.work.appendingPathComponent("shard-fp32.json")
        try Data(other.stdout.utf8).write(to: otherFile)
        let (mixed, _) = try Self.verify(["--merge-results", files[0], otherFile.path, files[2]])
        #expect(mixed.status == 2 && mixed.stderr.contains("\"scheme\""), "\(mixed.stderr)")
        let (notJSON, _) = try Self.verify(["--merge-results", CommandRunner.root.appendingPathComponent("README.md").path])
        #expect(notJSON.status == 2 && notJSON.stderr.contains("README.md: is not JSON"), "\(notJSON.stderr)")
    }

    @Test func badAgainstUsesExitTwo() throws {
        let input = RunCommandTests.fresh("against-bad-in")
        try RestoreFramesTests.writeFrames(input, count: 2, width: 8, height: 8)
        let (r1, _) = try Self.verify([Self.fp16, "--against", Self.fp32])
        #expect(r1.status == 2 && r1.stderr.contains("--against needs --input"), "\(r1.stderr)")
        let (r2, _) = try Self.verify([Self.fp32, "--against", Self.fp16, "--input", input.path, "--prompt-embeds", RunCommandTests.prompt])
        #expect(r2.status == 2 && r2.stderr.contains("fp16 file; --against takes the fp32"), "\(r2.stderr)")
        let (r3, _) = try Self.verify([Self.fp32, "--reference", "Tests/Fixtures/tiny/reference_full.safetensors", "--frames", "1:2"])
        #expect(r3.status == 2 && r3.stderr.contains("no dloral_run_options"), "\(r3.stderr)")
        let (r4, _) = try Self.verify([Self.fp32, "--merge-results", "a.json"])
        #expect(r4.status == 2 && r4.stderr.contains("--merge-results combines shard results alone"), "\(r4.stderr)")
    }
}
