import DLoRALFormats
import Foundation
import Testing

/// `dloral-convert merge` from the command line: outputs, and refusals that leave nothing behind.
@Suite("merge command")
struct MergeCommandTests {
    static func temporaryFolder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("dloral-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Writes a kohya LoRA holding the given modules (stem → (down shape, up shape, fill)).
    static func kohyaFile(_ modules: [(String, [Int], [Int], Float)], in folder: URL) throws -> String {
        var table = TensorTable()
        for (stem, downShape, upShape, fill) in modules {
            let down = [Float](repeating: 0.01, count: downShape.reduce(1, *))
            var up = [Float](repeating: 0.02, count: upShape.reduce(1, *))
            up[0] = fill
            try table.insert("lora_unet_\(stem).lora_down.weight", TensorView(dtype: .float32, shape: downShape, storage: .copying(down, origin: "test")), file: "test")
            try table.insert("lora_unet_\(stem).lora_up.weight", TensorView(dtype: .float32, shape: upShape, storage: .copying(up, origin: "test")), file: "test")
        }
        let path = folder.appendingPathComponent("lora.safetensors").path
        try SafetensorsWriter.write(to: path, tensors: table)
        return path
    }

    func expectRefused(_ arguments: [String], output: URL, mentions: [String]) throws {
        let result = try CommandRunner.run("dloral-convert", arguments)
        #expect(result.status == 2, "exit \(result.status): \(result.stderr)")
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        for text in mentions { #expect(result.stderr.contains(text), "'\(text)' not in: \(result.stderr)") }
        #expect(!FileManager.default.fileExists(atPath: output.path), "an output folder was left behind")
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: output.deletingLastPathComponent().path)) ?? []
        #expect(!leftovers.contains { $0.hasPrefix(".\(output.lastPathComponent).tmp") }, "temporary folder left: \(leftovers)")
    }

    @Test func mergesAndReportsJSON() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let out = folder.appendingPathComponent("merged")
        let result = try CommandRunner.run("dloral-convert", [
            "merge", "--base", "Tests/Fixtures/tiny/base", "--lora", "Tests/Fixtures/tiny/model.pkl",
            "--output", out.path, "--stage", "consistency", "--json",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        #expect(json?["stage"] as? String == "consistency")
        #expect(json?["output"] as? String == out.path)
        let adapters = json?["adapters"] as? [[String: Any]] ?? []
        #expect(adapters.count == 6)
        #expect(adapters.filter { ($0["weight"] as? Double) == 1 }.count == 3)
        #expect((json?["merged_modules"] as? Int ?? 0) == 258)
        #expect((json?["tensors_written"] as? Int ?? 0) > 0)
        let dropped: [String] = (json?["dropped"] as? [String]) ?? []
        #expect(dropped.contains("cfr.conv_last.weight"))
        // The CI-level interoperability check: names, shapes and values against peft's merge,
        // read by the reference safetensors package.
        let check = try CommandRunner.run("/usr/bin/env", ["python3", "Tools/interop/check_merged.py", out.path, "Tests/Fixtures/tiny/merged/consistency"])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains(" passed, 0 failed"), "\(check.stdout)")
    }

    @Test func missingInputs() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let out = folder.appendingPathComponent("merged")
        try expectRefused(["merge", "--base", "no/such/base", "--lora", "Tests/Fixtures/tiny/model.pkl", "--output", out.path],
                          output: out, mentions: ["no/such/base", "no such file"])
        try expectRefused(["merge", "--base", "Tests/Fixtures/tiny/base", "--lora", "missing.pkl", "--output", out.path],
                          output: out, mentions: ["missing.pkl"])
    }

    @Test func unmatchedModulesAreListed() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let lora = try Self.kohyaFile([
            ("down_blocks_0_attentions_0_proj_in", [2, 8], [8, 2], 0.02),
            ("down_blocks_7_attentions_0_proj_in", [2, 8], [8, 2], 0.02),
        ], in: folder)
        let out = folder.appendingPathComponent("merged")
        try expectRefused(["merge", "--base", "Tests/Fixtures/tiny/base", "--lora", lora, "--output", out.path],
                          output: out, mentions: ["1 LoRA modules have no matching weight", "lora_unet_down_blocks_7_attentions_0_proj_in", "--allow-unmatched"])
        let allowed = try CommandRunner.run("dloral-convert", ["merge", "--base", "Tests/Fixtures/tiny/base", "--lora", lora, "--output", out.path, "--allow-unmatched", "--json"])
        #expect(allowed.status == 0, "\(allowed.stderr)")
        #expect(allowed.stderr.contains("warning"))
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("unet/config.json").path))
    }

    @Test func shapeMismatchNamesTheTensor() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let lora = try Self.kohyaFile([("down_blocks_0_attentions_0_proj_in", [2, 16], [8, 2], 0.02)], in: folder)
        let out = folder.appendingPathComponent("merged")
        try expectRefused(["merge", "--base", "Tests/Fixtures/tiny/base", "--lora", lora, "--output", out.path],
                          output: out, mentions: ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", "[2, 16]", "do not fit"])
    }

    @Test func nonFiniteAdapterIsRefused() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let lora = try Self.kohyaFile([("down_blocks_0_attentions_0_proj_in", [2, 8], [8, 2], .nan)], in: folder)
        let out = folder.appendingPathComponent("merged")
        try expectRefused(["merge", "--base", "Tests/Fixtures/tiny/base", "--lora", lora, "--output", out.path],
                          output: out, mentions: ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight", "non-finite"])
    }

    @Test func unwritableOutputLocation() throws {
        let out = URL(fileURLWithPath: "/nonexistent-dloral/merged")
        try expectRefused(["merge", "--base", "Tests/Fixtures/tiny/base", "--lora", "Tests/Fixtures/tiny/model.pkl", "--output", out.path],
                          output: out, mentions: ["/nonexistent-dloral", "does not exist"])
    }

    @Test func existingOutputNeedsOverwrite() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let out = folder.appendingPathComponent("merged")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let result = try CommandRunner.run("dloral-convert", ["merge", "--base", "Tests/Fixtures/tiny/base", "--lora", "Tests/Fixtures/tiny/model.pkl", "--output", out.path])
        #expect(result.status == 2)
        #expect(result.stderr.contains("--overwrite"))
        let again = try CommandRunner.run("dloral-convert", ["merge", "--base", "Tests/Fixtures/tiny/base", "--lora", "Tests/Fixtures/tiny/model.pkl", "--output", out.path, "--overwrite"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("dloral.json").path))
    }

    /// A full disk, simulated with a file-size limit: the write fails, the run exits 2 and
    /// leaves no output and no temporary folder.
    @Test func diskFullLeavesNothing() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let out = folder.appendingPathComponent("merged")
        let bin = CommandRunner.binFolder.appendingPathComponent("dloral-convert").path
        let result = try CommandRunner.run("/bin/sh", ["-c", "ulimit -f 200; exec \"$0\" \"$@\"", bin,
            "merge", "--base", "Tests/Fixtures/tiny/base", "--lora", "Tests/Fixtures/tiny/model.pkl", "--output", out.path])
        #expect(result.status == 2, "exit \(result.status): \(result.stderr)")
        #expect(result.stderr.contains("write failed"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out.path))
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).isEmpty)
    }

    @Test func badOptionsAreUsageErrors() throws {
        let result = try CommandRunner.run("dloral-convert", ["merge", "--base", "a", "--lora", "b", "--output", "c", "--stage", "half"])
        #expect(result.status == 2, "exit \(result.status)")
        #expect(result.stderr.contains("--stage"))
    }
}
