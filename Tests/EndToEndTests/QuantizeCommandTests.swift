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
        ["--weights", "int8", "--int8-cfr"],
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
        func forged(minor: UInt16? = nil, _ edit: (inout String) -> Void) -> [UInt8] {
            var h = file.header
            if let minor { h.minor = minor }
            var text = String(decoding: bytes[128..<(128 + h.metadataBytes)], as: UTF8.self)
            edit(&text)
            return DLRTForgery.resealed(bytes, header: h, metadata: text)
        }

        try expectRefused(flipped(20), "header", mentions: ["bad-header.dlrt"])
        try expectRefused(flipped(70), "reserved", mentions: ["checksum mismatch"])
        try expectRefused(forged { $0 = $0.replacingOccurrences(of: "\"default_prompt_embeds\":null", with: "\"default_prompt_embeds\":\"prompt_embeds\"") },
                          "prompt", mentions: ["default_prompt_embeds", "not in the tensor list"])

        // A tensor stored in a way a newer minor version might use: only that tensor is unreadable
        // (in a file of a version this reader knows, the same value is refused: below).
        let newer = forged(minor: 3) { text in
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
        try expectRefused(forged { text in
            if let range = text.range(of: "\"scheme\":\"int8_channel\"") { text.replaceSubrange(range, with: "\"scheme\":\"int4_future\"") }
        }, "unknown-scheme", mentions: [firstInt8.name, "int4_future", "1.0"])
        let second = file.entries[1]
        try expectRefused(forged { $0 = $0.replacingOccurrences(of: "\"offset\":\(second.data.offset),", with: "\"offset\":\(file.entries[0].data.offset),") },
                          "overlap", mentions: ["overlaps"])
    }

    /// Formats/dlrt.md §1, §3: padding bytes are checked, and metadata forged with a correct
    /// header digest is refused by what it says, by inspect --verify-all and dloral-verify alike.
    @Test func forgedMetadataAndPaddingAreRefusedByBothTools() throws {
        let (good, result) = try Self.quantize(["--weights", "int8"], name: "forge-base.dlrt")
        #expect(result.status == 0, "\(result.stderr)")
        let bytes = try [UInt8](Data(contentsOf: good))
        func le(_ at: Int) -> Int { (0..<8).reduce(0) { $0 | Int(bytes[at + $1]) << (8 * $1) } }
        let metadataBytes = le(32), payloadOffset = le(40)
        let metadata = String(decoding: bytes[128..<(128 + metadataBytes)], as: UTF8.self)
        /// Same-length edits of the metadata, resealed: header_sha256 = SHA-256(header[0, 96) ‖ metadata) (§2).
        func forged(_ from: String, _ to: String) throws -> [UInt8] {
            let text = metadata.replacingOccurrences(of: from, with: to)
            #expect(text != metadata && text.utf8.count == metadata.utf8.count, "\(from) not found")
            var copy = bytes
            copy.replaceSubrange(128..<(128 + metadataBytes), with: Array(text.utf8))
            let digest = (Array(copy[0..<96]) + Array(text.utf8)).withUnsafeBytes { DLRT.sha256Hex($0) }
            let raw = stride(from: 0, to: 64, by: 2).map { UInt8(String(Array(digest)[$0...($0 + 1)]), radix: 16)! }
            copy.replaceSubrange(96..<128, with: raw)
            return copy
        }
        var padding = bytes
        #expect(payloadOffset > 128 + metadataBytes)
        padding[128 + metadataBytes] = 0x20  // a space after the JSON: harmless to a parser, still damage
        var tail = bytes
        tail[bytes.count - 1] ^= 0x01
        let cases: [(String, [UInt8], String)] = [
            ("weights-int3", try forged("\"weights\":\"int8\"", "\"weights\":\"int3\""), "\"weights\" is \"int3\""),
            ("format-zip", try forged("\"format\":\"dlrt\"", "\"format\":\"zipp\""), "\"format\" is \"zipp\""),
            ("dtype", try forged("\"dtype\":\"F32\",\"scheme\"", "\"dtype\":\"Q32\",\"scheme\""), "dtype Q32"),
            ("padding", padding, "padding after the metadata"),
            ("tail", tail, "padding after the last region"),
        ]
        for (label, damaged, mentions) in cases {
            let path = good.deletingLastPathComponent().appendingPathComponent("forged-\(label).dlrt").path
            try Data(damaged).write(to: URL(fileURLWithPath: path))
            let inspect = try CommandRunner.run("dloral-convert", ["inspect", path, "--verify-all"])
            #expect(inspect.status == 2 && inspect.stderr.contains(mentions), "\(label): exit \(inspect.status) \(inspect.stderr)")
            let verify = try CommandRunner.run("dloral-verify", [path, "--reference", "Tests/Fixtures/tiny/reference_full.safetensors"])
            #expect(verify.status == 2 && verify.stderr.contains(mentions), "\(label): exit \(verify.status) \(verify.stderr)")
        }
    }

    /// Issue 11: int8 weights keep the CFR fp32 unless asked (`--int8-cfr`); fp16 makes it fp16.
    @Test func int8KeepsTheCFRWideByDefault() throws {
        for (args, cfrDType, keepsCFR) in [(["--weights", "int8"], DType.float32, true), (["--weights", "int8", "--int8-cfr"], .int8, false),
                                           (["--weights", "fp16"], .float16, false)] {
            let (out, result) = try Self.quantize(args, name: "cfr-\(args.joined()).dlrt")
            #expect(result.status == 0, "\(result.stderr)")
            let file = try DLRTFile(path: out.path)
            let cfrWeights = file.entries.filter { $0.name.hasPrefix("cfr.") && $0.name.hasSuffix(".weight") && $0.shape.count >= 2 }
            #expect(!cfrWeights.isEmpty && cfrWeights.allSatisfy { $0.dtype == cfrDType }, "\(args): \(cfrWeights.map { "\($0.name) \($0.dtype)" })")
            let keep = file.metadata["quantization"]?["keep"]?.arrayValue?.compactMap(\.stringValue) ?? []
            #expect(keep.contains("cfr.*") == keepsCFR, "\(args): keep \(keep)")
            // The UNet is still int8 in both int8 files.
            #expect(file.entry("unet.conv_in.weight")?.dtype == (args.contains("fp16") ? .float16 : .int8))
        }
        let (out, r) = try Self.quantize(["--weights", "fp16", "--int8-cfr"], name: "cfr-bad.dlrt")
        #expect(r.status == 2 && r.stderr.contains("--int8-cfr") && r.stderr.contains("--weights int8"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }

    /// Issue 13: a --keep glob that matches no tensor is an error naming it.
    @Test func keepGlobMatchingNothingIsRefused() throws {
        let (out, r) = try Self.quantize(["--weights", "int8", "--keep", "unet.conv_in.*", "--keep", "conv_in.*"], name: "keep-none.dlrt")
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.contains("--keep 'conv_in.*' matches no tensor") && r.stderr.contains("dloral-convert inspect"), "\(r.stderr)")
        #expect(!r.stderr.contains("'unet.conv_in.*'"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }

    /// Issue 10: prompt embeddings with no token are refused (SD's text encoder gives 77).
    @Test func zeroTokenPromptEmbeddingsAreRefused() throws {
        let prompt = Self.merged.deletingLastPathComponent().appendingPathComponent("prompt-0.safetensors")
        var table = TensorTable()
        try table.insert("prompt_embeds", TensorView(dtype: .float32, shape: [1, 0, 32], storage: .copying([Float](), origin: "test")), file: "test")
        try SafetensorsWriter.write(to: prompt.path, tensors: table)
        let (out, r) = try Self.quantize(["--weights", "int8", "--prompt-embeds", prompt.path], name: "prompt-0.dlrt")
        #expect(r.status == 2 && r.stderr.contains(prompt.path) && r.stderr.contains("at least 1 token"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }

    @Test func badSourceIsRefused() throws {
        let out = Self.merged.deletingLastPathComponent().appendingPathComponent("never.dlrt")
        let r = try CommandRunner.run("dloral-convert", ["quantize", "Tests/Fixtures/tiny/model.pkl", "--weights", "int8", "--output", out.path])
        #expect(r.status == 2)
        #expect(r.stderr.contains("expected a merged model folder"))
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }
}
