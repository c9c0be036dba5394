@testable import DLoRALFormats
import Foundation
import Testing

/// A small `.dlrt` laid out by hand from Formats/dlrt.md (§1–§3.1), not by `DLRTWriter`, so that
/// the tests can forge any field and reseal the header digest as the spec defines it.
private struct HandMadeDLRT {
    /// Top-level metadata; `tensors` is filled in from `entries`.
    var metadata: [String: Any] = [
        "format": "dlrt",
        "configs": ["unet": ["in_channels": 8], "vae": ["scaling_factor": 0.18215], "cfr": [
            "_class_name": "DLoRALCFR", "latent_channels": 4, "attention_heads": 1, "attention_head_dim": 4,
            "spynet_levels": 6,
        ]],
        "quantization": ["weights": "int8", "int8_granularity": "channel", "activations": "fp32", "keep": [String](), "policy": "test"],
        "provenance": ["tool": "test"],
        "default_prompt_embeds": NSNull(),
    ]
    var entries: [[String: Any]] = []
    /// The regions in list order (each entry's data, then its scales).
    var regions: [[UInt8]] = []
    var minor: UInt16 = 0

    static func floats(_ values: [Float]) -> [UInt8] { values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) } }
    static func sha(_ bytes: [UInt8]) -> String { bytes.withUnsafeBytes { DLRT.sha256Hex($0) } }

    init() {
        // unet.a.weight: int8_channel [2, 3], K 3 padded to 32 (§4), one F32 scale per row.
        var q = [UInt8](repeating: 0, count: 64)
        for (i, v) in [Int8(127), -64, 1].enumerated() { q[i] = UInt8(bitPattern: v); q[32 + i] = UInt8(bitPattern: -v) }
        let scales = Self.floats([0.5, 0.25])
        entries.append([
            "name": "unet.a.weight", "shape": [2, 3], "dtype": "I8", "scheme": "int8_channel", "layout": "rows_k32",
            "block": 0, "k": 3, "k_padded": 32, "bytes": 64, "raw_bytes": 64, "compression": "none", "sha256": Self.sha(q),
            "scales": ["dtype": "F32", "shape": [2], "bytes": 8, "sha256": Self.sha(scales)] as [String: Any], "sqnr_db": 40.0,
        ])
        regions += [q, scales]
        for (name, shape, values) in [("unet.a.bias", [2], [Float(1), 2]), ("vae.b.weight", [2, 2], [1, 2, 3, 4]), ("cfr.c.weight", [1, 1], [5])] {
            let data = Self.floats(values)
            entries.append([
                "name": name, "shape": shape, "dtype": "F32", "scheme": "none", "layout": "torch", "block": 0, "k": 0,
                "k_padded": 0, "bytes": data.count, "raw_bytes": data.count, "compression": "none", "sha256": Self.sha(data),
                "scales": NSNull(), "sqnr_db": NSNull(),
            ])
            regions.append(data)
        }
    }

    /// §1: regions packed in list order from payload_offset, each at the next multiple of 64;
    /// returns the file with its offsets filled in and the header digest computed per §2.
    func bytes(edit: (inout [String: Any]) -> Void = { _ in }, payloadPadding: Int = 0) throws -> [UInt8] {
        func align(_ x: Int) -> Int { (x + 63) / 64 * 64 }
        var payloadOffset = 0
        while true {
            var md = metadata
            var list = entries
            var at = payloadOffset
            var r = 0
            for i in list.indices {
                list[i]["offset"] = at
                at = align(at + regions[r].count)
                r += 1
                if var s = list[i]["scales"] as? [String: Any] {
                    s["offset"] = at
                    list[i]["scales"] = s
                    at = align(at + regions[r].count)
                    r += 1
                }
            }
            md["tensors"] = list
            edit(&md)
            let json = try JSONSerialization.data(withJSONObject: md, options: [.sortedKeys, .withoutEscapingSlashes])
            let needed = align(128 + json.count) + payloadPadding
            guard payloadOffset >= needed else {
                payloadOffset = needed
                continue
            }
            var file = [UInt8](repeating: 0, count: at)
            file.replaceSubrange(128..<(128 + json.count), with: json)
            at = payloadOffset
            for region in regions {
                file.replaceSubrange(at..<(at + region.count), with: region)
                at = align(at + region.count)
            }
            Self.writeHeader(&file, minor: minor, metadataBytes: json.count, payloadOffset: payloadOffset)
            return file
        }
    }

    /// The header fields and header_sha256 = SHA-256(header[0, 96) ‖ metadata) (§2).
    static func writeHeader(_ file: inout [UInt8], minor: UInt16, metadataBytes: Int, payloadOffset: Int) {
        var head: [UInt8] = [0x89, 0x44, 0x4C, 0x52, 0x54, 0x0D, 0x0A, 0x1A]
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { head.append(contentsOf: $0) } }
        put(UInt16(1)); put(minor); put(UInt32(128))
        put(UInt64(file.count)); put(UInt64(128)); put(UInt64(metadataBytes)); put(UInt64(payloadOffset))
        put(UInt64(file.count - payloadOffset)); put(UInt64(0))
        head += [UInt8](repeating: 0, count: 32)
        let digest = sha(head + Array(file[128..<(128 + metadataBytes)]))
        head += stride(from: 0, to: 64, by: 2).map { i in
            UInt8(digest[digest.index(digest.startIndex, offsetBy: i)...].prefix(2), radix: 16)!
        }
        file.replaceSubrange(0..<128, with: head)
    }

    static func metadataRange(_ file: [UInt8]) -> Range<Int> {
        let length = file[32..<40].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        return 128..<(128 + length)
    }
}

@Suite("DLRT checks on open")
struct DLRTValidationTests {
    /// Opens a file expected to be valid. Its few tensors are not a whole model, so its configs
    /// are checked by value only (configs against tensors: ConfigHardeningTests).
    static func open(_ bytes: [UInt8], name: String = "forged.dlrt") throws -> (DLRTFile, URL) {
        let folder = try TestPaths.temporaryFolder()
        let path = try TestPaths.write(bytes, name: name, in: folder)
        return (try DLRTFile(file: try MappedFile(path: path), configsAgainstTensors: false), folder)
    }

    /// The error opening `bytes` (nil if it opens), after checking it names the file. Configs are
    /// checked by value only here too, so that the check a case forges for is the one that fails.
    static func openError(_ bytes: [UInt8]) throws -> FormatError? {
        let folder = try TestPaths.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = try TestPaths.write(bytes, name: "forged.dlrt", in: folder)
        do {
            _ = try DLRTFile(file: try MappedFile(path: path), configsAgainstTensors: false)
            return nil
        } catch let error as FormatError {
            #expect(error.description.hasPrefix(path), "\(error)")
            return error
        }
    }

    @Test func handMadeFileOpensAndVerifies() throws {
        let (file, folder) = try Self.open(try HandMadeDLRT().bytes(payloadPadding: 128))
        defer { try? FileManager.default.removeItem(at: folder) }
        try file.verifyAll()
        #expect(file.entries.map(\.name) == ["unet.a.weight", "unet.a.bias", "vae.b.weight", "cfr.c.weight"])
        #expect(try file.dequantized("unet.a.weight") == [63.5, -32, 0.5, -31.75, 16, -0.25])
    }

    /// §1: every byte outside the digested header, metadata and regions is padding that must be
    /// zero, and the file ends right after the last region's padding.
    @Test func everyPaddingByteIsChecked() throws {
        let clean = try HandMadeDLRT().bytes(payloadPadding: 128)
        let metadataEnd = HandMadeDLRT.metadataRange(clean).upperBound
        let payload = Int(clean[40]) | Int(clean[41]) << 8
        // Regions: a.weight 64 @ p, scales 8 @ p+64, bias 8 @ p+128, vae 16 @ p+192, cfr 4 @ p+256; end p+320.
        let places = [
            (metadataEnd, "after the metadata"), (payload - 1, "after the metadata"),
            (payload + 64 + 8, "before the data of 'unet.a.bias'"), (payload + 192 + 16, "before the data of 'cfr.c.weight'"),
            (payload + 256 + 4, "after the last region"), (clean.count - 1, "after the last region"),
        ]
        #expect(clean.count == payload + 320)
        for (at, what) in places {
            var bytes = clean
            bytes[at] ^= 0x01
            let error = try #require(try Self.openError(bytes), "a flipped padding byte at \(at) (\(what)) was accepted")
            #expect(error.message.contains("byte \(at)") && error.message.contains(what), "\(error)")
        }
        // 64 more zero bytes at the end, with file_bytes, payload_bytes and the digest updated.
        var longer = clean + [UInt8](repeating: 0, count: 64)
        HandMadeDLRT.writeHeader(&longer, minor: 0, metadataBytes: HandMadeDLRT.metadataRange(clean).count, payloadOffset: payload)
        let error = try #require(try Self.openError(longer))
        #expect(error.message.contains("must end at \(clean.count)"), "\(error)")
    }

    /// §3, §3.1: metadata forged with a correct header digest is refused on what it says.
    @Test(arguments: [
        ("dtype", "tensor 0 dtype Q4", "dtype Q4 is not one this reader knows"),
        ("scheme", "tensor 1 scheme int4", "scheme \"int4\" is not one this reader knows"),
        ("layout", "tensor 1 layout cols", "layout \"cols\" is not one this reader knows"),
        ("compression", "tensor 1 compression lz4", "compression \"lz4\" is not one this reader knows"),
        ("activations", "tensor 0 activations int3", "activations \"int3\" is not one this reader knows"),
        ("empty list", "tensors []", "lists no tensors"),
        ("no cfr config", "configs -cfr", "has no \"cfr\" object"),
        ("no unet config", "configs -unet", "has no \"unet\" object"),
        ("format zip", "format zip", "\"format\" is \"zip\""),
        ("weights int3", "weights int3", "\"weights\" is \"int3\""),
        ("granularity", "int8_granularity block16", "\"int8_granularity\" is \"block16\""),
        ("quantization activations", "activations int2", "\"activations\" is \"int2\""),
        ("fp32 file with int8 tensors", "weights fp32", "int8_channel storage in a file whose weights are fp32"),
        ("block scheme in a channel file", "tensor 0 block-scheme", "of block 32 in a file of int8 weights with granularity channel"),
        ("overlap", "tensor 2 offset=tensor 1", "overlaps the previous region or is out of list order"),
        ("gap", "tensor 2 offset+64", "leaves a gap"),
        ("out of the file", "tensor 3 offset huge", "outside the payload"),
        ("shape vs bytes", "tensor 2 shape [3, 2]", "raw_bytes 16 ≠ 6 elements × 4"),
        ("rows_k32 k", "tensor 0 k_padded 64", "rows_k32 fields are inconsistent"),
        ("scales on scheme none", "tensor 1 scales", "scheme none has no scales"),
        ("torch k", "tensor 1 k 2", "layout torch has k and k_padded 0"),
        ("zero-token prompt", "prompt [1, 0, 2]", "expected F32 [1, tokens ≥ 1, C]"),
        ("uppercase digest", "tensor 1 sha256 upper", "64 lowercase hex digits"),
    ])
    func forgedMetadataIsRefused(name: String, edit: String, expected: String) throws {
        var model = HandMadeDLRT()
        if edit.hasPrefix("prompt") {
            model.entries.append([
                "name": "prompt_embeds", "shape": [1, 0, 2], "dtype": "F32", "scheme": "none", "layout": "torch", "block": 0,
                "k": 0, "k_padded": 0, "bytes": 0, "raw_bytes": 0, "compression": "none", "sha256": HandMadeDLRT.sha([]),
                "scales": NSNull(), "sqnr_db": NSNull(),
            ])
            model.regions.append([])
            model.metadata["default_prompt_embeds"] = "prompt_embeds"
        }
        let bytes = try model.bytes { md in
            var list = md["tensors"] as! [[String: Any]]
            var quantization = md["quantization"] as! [String: Any]
            var configs = md["configs"] as! [String: Any]
            let words = edit.split(separator: " ").map(String.init)
            switch (words[0], words.count) {
            case ("tensor", _):
                let i = Int(words[1])!
                switch words[2] {
                case "block-scheme": list[i]["scheme"] = "int8_block"; list[i]["block"] = 32; list[i]["scales"] = ["dtype": "F32", "shape": [2, 1], "offset": (list[i]["scales"] as! [String: Any])["offset"]!, "bytes": 8, "sha256": HandMadeDLRT.sha(HandMadeDLRT.floats([0.5, 0.25]))]
                case "offset=tensor": list[i]["offset"] = list[Int(words[3])!]["offset"]
                case "offset+64": list[i]["offset"] = (list[i]["offset"] as! Int) + 64
                case "offset": list[i]["offset"] = 1 << 40
                case "shape": list[i]["shape"] = [3, 2]
                case "k_padded": list[i]["k_padded"] = 64
                case "k": list[i]["k"] = 2
                case "scales": list[i]["scales"] = ["dtype": "F32", "shape": [1], "offset": 0, "bytes": 4, "sha256": HandMadeDLRT.sha([])]
                case "sha256": list[i]["sha256"] = (list[i]["sha256"] as! String).uppercased()
                default: list[i][words[2]] = words[3]
                }
            case ("tensors", _): list = []
            case ("configs", _): configs[String(words[1].dropFirst())] = nil
            case ("format", _): md["format"] = words[1]
            case ("prompt", _): break
            default: quantization[words[0]] = words[1]
            }
            md["tensors"] = list
            md["quantization"] = quantization
            md["configs"] = configs
        }
        let error = try #require(try Self.openError(bytes), "\(name): the forged file was accepted")
        #expect(error.description.contains(expected), "\(name): \(error)")
    }

    /// §6: in a file of a newer minor version an unknown value only makes its tensor unreadable,
    /// and `verifyAll` still checks that tensor's digest.
    @Test func newerMinorVersionsKeepTheirUnknownTensorsChecked() throws {
        var model = HandMadeDLRT()
        model.minor = 3
        let clean = try model.bytes { md in
            var list = md["tensors"] as! [[String: Any]]
            list[2]["dtype"] = "BF8"
            md["tensors"] = list
        }
        let (file, folder) = try Self.open(clean)
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect(file.unsupported["vae.b.weight"]?.contains("BF8") == true)
        try file.verifyAll()
        var flipped = clean
        let payload = Int(clean[40]) | Int(clean[41]) << 8
        flipped[payload + 192] ^= 0x01  // vae.b.weight's first byte
        let (bad, badFolder) = try Self.open(flipped, name: "flipped.dlrt")
        defer { try? FileManager.default.removeItem(at: badFolder) }
        #expect(throws: FormatError.self) { try bad.verifyAll() }
    }
}
