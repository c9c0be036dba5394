import DLoRALFormats
import Foundation
import Testing

/// `dloral-convert quantize` and the `.dlrt` file: contents checked by the independent Python
/// reader, determinism, and corruption refused with exit 2.
@Suite("quantize command", .serialized)
struct QuantizeCommandTests {
    /// A merged tiny model, made once.
    static let merged: URL = {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("dloral-q-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let out = folder.appendingPathComponent("merged")
        let result = try! CommandRunner.run("dloral-convert", ["merge", "--base", "Tests/Fixtures/tiny/base", "--lora", "Tests/Fixtures/tiny/model.pkl", "--output", out.path])
        precondition(result.status == 0, result.stderr)
        return out
    }()

    static func quantize(_ arguments: [String], name: String) throws -> (URL, CommandRunner.Result) {
        let out = merged.deletingLastPathComponent().appendingPathComponent(name)
        try? FileManager.default.removeItem(at: out)
        let result = try CommandRunner.run("dloral-convert", ["quantize", merged.path, "--output", out.path] + arguments)
        return (out, result)
    }

    /// Every scheme, read back by Tools/dlrt/check_dlrt.py (numpy's rounding of the stored
    /// scales, numpy's float16 cast, exact fp32), written from the spec alone.
    @Test(arguments: [
        ["--weights", "int8"], ["--weights", "int8", "--int8-granularity", "block32"],
        ["--weights", "int8", "--int8-granularity", "block64", "--compress", "zstd"],
        ["--weights", "int8", "--int8-granularity", "block32", "--activations", "int8"],
        ["--weights", "fp16"], ["--weights", "fp16", "--compress", "zstd"], ["--weights", "fp32"],
        ["--weights", "fp16", "--prompt-embeds", "PROMPT"], ["--weights", "int8", "--keep", "unet.conv_in.*", "--keep", "cfr.*"],
    ])
    func pythonReaderAgrees(_ arguments: [String]) throws {
        let prompt = Self.merged.deletingLastPathComponent().appendingPathComponent("prompt.safetensors")
        var table = TensorTable()
        try table.insert("prompt_embeds", TensorView(dtype: .float32, shape: [1, 77, 32],
                         storage: .copying((0..<(77 * 32)).map { Float($0 % 97) / 50 - 1 }, origin: "test")), file: "test")
        try SafetensorsWriter.write(to: prompt.path, tensors: table)
        let args = arguments.map { $0 == "PROMPT" ? prompt.path : $0 }
        let (out, result) = try Self.quantize(args + ["--json"], name: "q-\(arguments.joined(separator: "-")).dlrt")
        #expect(result.status == 0, "\(result.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        #expect((json?["bytes"] as? Int) == (try FileManager.default.attributesOfItem(atPath: out.path)[.size] as? Int))
        let withPrompt = arguments.contains("PROMPT")
        #expect(((json?["tensors"] as? [[String: Any]]) ?? []).count == (withPrompt ? 1003 : 1002))
        let check = try CommandRunner.run("/usr/bin/env", ["python3", "Tools/dlrt/check_dlrt.py", out.path, Self.merged.path]
                                          + (withPrompt ? ["--prompt-embeds", prompt.path] : []))
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains(" passed, 0 failed"), "\(check.stdout)")
    }

    @Test func identicalInputsGiveIdenticalFiles() throws {
        let (a, r1) = try Self.quantize(["--weights", "int8", "--compress", "zstd"], name: "det-a.dlrt")
        let (b, r2) = try Self.quantize(["--weights", "int8", "--compress", "zstd"], name: "det-b.dlrt")
        #expect(r1.status == 0 && r2.status == 0)
        #expect(try Data(contentsOf: a) == Data(contentsOf: b))
    }

    /// The scalar kernels give the same bytes as the SIMD ones (so files do not depend on the CPU).
    @Test(arguments: [["--weights", "int8"], ["--weights", "int8", "--int8-granularity", "block32"], ["--weights", "fp16"]])
    func scalarKernelsGiveIdenticalFiles(_ arguments: [String]) throws {
        let (simd, r1) = try Self.quantize(arguments, name: "simd-\(arguments.joined()).dlrt")
        let out = Self.merged.deletingLastPathComponent().appendingPathComponent("scalar-\(arguments.joined()).dlrt")
        let r2 = try CommandRunner.run("dloral-convert", ["quantize", Self.merged.path, "--output", out.path] + arguments,
                                       environment: ["DLORAL_KERNELS": "scalar"])
        #expect(r1.status == 0 && r2.status == 0, "\(r1.stderr)\(r2.stderr)")
        #expect(try Data(contentsOf: simd) == Data(contentsOf: out))
    }

    /// Flips, truncations and forged tables: each refused with exit 2 and a message that says
    /// what is wrong, before anything is used.
    @Test func corruptionIsRefused() throws {
        let (good, result) = try Self.quantize(["--weights", "int8"], name: "good.dlrt")
        #expect(result.status == 0, "\(result.stderr)")
        let bytes = try [UInt8](Data(contentsOf: good))
        let file = try DLRTFile(path: good.path)
        let firstInt8 = try #require(file.entries.first { $0.dtype == .int8 })
        let firstF32 = try #require(file.entries.first { $0.dtype == .float32 })

        func expectRefused(_ damaged: [UInt8], _ label: String, verifyAll: Bool = false, mentions: [String]) throws {
            let path = good.deletingLastPathComponent().appendingPathComponent("bad-\(label).dlrt")
            try Data(damaged).write(to: path)
            let r = try CommandRunner.run("dloral-convert", ["inspect", path.path] + (verifyAll ? ["--verify-all"] : []))
            #expect(r.status == 2, "\(label): exit \(r.status) \(r.stderr)")
            #expect(r.stderr.split(separator: "\n").count == 1, "\(label): \(r.stderr)")
            for text in mentions { #expect(r.stderr.contains(text), "\(label): '\(text)' not in \(r.stderr)") }
        }
        func flipped(_ at: Int) -> [UInt8] {
            var copy = bytes
            copy[at] ^= 0x01
            return copy
        }
        /// Rewrites the metadata and re-signs the header, as a forger would.
        func forged(_ edit: (inout String) -> Void) -> [UInt8] {
            let h = file.header
            var text = String(decoding: bytes[128..<(128 + h.metadataBytes)], as: UTF8.self)
            edit(&text)
            var metadata = Array(text.utf8)
            metadata += [UInt8](repeating: 0x20, count: max(0, h.metadataBytes - metadata.count))
            var header = h
            header.metadataBytes = metadata.count
            header.digest = metadata.withUnsafeBytes { header.computeDigest(metadata: $0) }
            var copy = bytes
            copy.replaceSubrange(0..<128, with: header.encoded())
            copy.replaceSubrange(128..<(128 + metadata.count), with: metadata)
            return copy
        }

        try expectRefused(flipped(20), "header", mentions: ["bad-header.dlrt"])
        try expectRefused(flipped(70), "reserved", mentions: ["checksum mismatch"])
        try expectRefused(forged { $0 = $0.replacingOccurrences(of: "\"default_prompt_embeds\":null", with: "\"default_prompt_embeds\":\"prompt_embeds\"") },
                          "prompt", mentions: ["default_prompt_embeds", "not in the tensor list"])

        // A tensor stored in a way a newer minor version might use: only that tensor is unreadable.
        let newer = forged { text in
            if let range = text.range(of: "\"scheme\":\"int8_channel\"") { text.replaceSubrange(range, with: "\"scheme\":\"int4_future\"") }
        }
        let newerPath = good.deletingLastPathComponent().appendingPathComponent("newer.dlrt")
        try Data(newer).write(to: newerPath)
        let reader = try DLRTFile(path: newerPath.path)
        #expect(reader.unsupported[firstInt8.name]?.contains("int4_future") == true)
        #expect(reader.entries.count == file.entries.count - 1)
        do {
            _ = try reader.tensor(firstInt8.name)
            Issue.record("an unsupported tensor was handed out")
        } catch let error as FormatError {
            #expect(error.kind == .unsupported && error.description.contains(firstInt8.name))
        }
        #expect(try reader.tensor(firstF32.name).shape == firstF32.shape)
        try expectRefused(flipped(130), "metadata", mentions: ["checksum mismatch"])
        try expectRefused(flipped(firstInt8.data.offset + 3), "int8-data", verifyAll: true, mentions: [firstInt8.name, "checksum mismatch"])
        try expectRefused(flipped(firstInt8.scales!.offset), "scales", verifyAll: true, mentions: [firstInt8.name, "scales checksum"])
        try expectRefused(flipped(firstF32.data.offset), "f32-data", verifyAll: true, mentions: [firstF32.name, "checksum mismatch"])
        var magic = bytes
        magic[1] = UInt8(ascii: "X")
        try expectRefused(magic, "magic", mentions: ["not a .dlrt file"])
        var future = bytes
        future[8] = 2
        try expectRefused(future, "future", mentions: ["version 2.0", "newer"])
        try expectRefused(Array(bytes.dropLast(100)), "truncated", mentions: ["truncated"])
        try expectRefused(forged { $0 = $0.replacingOccurrences(of: "\"offset\":\(firstF32.data.offset),", with: "\"offset\":\(bytes.count + 64),") },
                          "outside", mentions: [firstF32.name, "outside the payload"])
        let second = file.entries[1]
        try expectRefused(forged { $0 = $0.replacingOccurrences(of: "\"offset\":\(second.data.offset),", with: "\"offset\":\(file.entries[0].data.offset),") },
                          "overlap", mentions: ["overlaps"])
    }

    @Test func badSourceIsRefused() throws {
        let out = Self.merged.deletingLastPathComponent().appendingPathComponent("never.dlrt")
        let r = try CommandRunner.run("dloral-convert", ["quantize", "Tests/Fixtures/tiny/model.pkl", "--weights", "int8", "--output", out.path])
        #expect(r.status == 2)
        #expect(r.stderr.contains("expected a merged model folder"))
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }
}
