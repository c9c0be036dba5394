@testable import DLoRALFormats
import Foundation
import Testing

/// SHA-256 (FIPS 180-4) written out here, so that the digests the writer records are checked
/// against an implementation other than the one it uses.
private enum ReferenceSHA256 {
    static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    static func hex(_ message: [UInt8]) -> String {
        var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
        var data = message + [0x80]
        while data.count % 64 != 56 { data.append(0) }
        let bits = UInt64(message.count) * 8
        for shift in stride(from: 56, through: 0, by: -8) { data.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift))) }
        func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
        var w = [UInt32](repeating: 0, count: 64)
        for chunk in stride(from: 0, to: data.count, by: 64) {
            for i in 0..<16 {
                w[i] = (0..<4).reduce(0) { $0 << 8 | UInt32(data[chunk + 4 * i + $1]) }
            }
            for i in 16..<64 {
                let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
                let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
            for i in 0..<64 {
                let t1 = hh &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ ((e & f) ^ (~e & g)) &+ k[i] &+ w[i]
                let t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ ((a & b) ^ (a & c) ^ (b & c))
                (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
            }
            for (i, v) in [a, b, c, d, e, f, g, hh].enumerated() { h[i] = h[i] &+ v }
        }
        return h.map { String(format: "%08x", $0) }.joined()
    }
}

/// `DLRTWriter` → bytes → `DLRTFile`, with the bytes checked against Formats/dlrt.md as computed
/// here: header fields (§2), metadata key order (§3, §3.1), the region layout and zero padding
/// (§1), every digest, the byte shuffle (§5) and the minor version (§4.1, §4.3).
@Suite("DLRT writer and reader round trip")
struct DLRTRoundTripTests {
    /// One tensor to write: its plan and the raw stored bytes `produce` hands the writer.
    struct Item {
        var plan: DLRTTensorEntry
        var data: [UInt8]
        var scales: [Float]?
    }

    /// A file of one weights scheme: what the quantization block says and the tensors it holds.
    struct Case: CustomStringConvertible, Sendable {
        var weights: DLRTWeights
        var granularity: DLRTGranularity
        var activations: DLRTActivationPolicy
        /// Expected minor version (§4.1, §4.3).
        var minor: UInt16
        var description: String { "\(weights.rawValue) \(granularity.rawValue) \(activations.rawValue)" }
    }

    static let cases: [Case] = [
        Case(weights: .fp32, granularity: .channel, activations: .fp32, minor: 0),
        Case(weights: .fp16, granularity: .channel, activations: .fp32, minor: 0),
        Case(weights: .int8, granularity: .channel, activations: .fp32, minor: 0),
        Case(weights: .int8, granularity: .channel, activations: .int16, minor: 1),
        Case(weights: .int8, granularity: .channel, activations: .auto, minor: 1),
        Case(weights: .int8, granularity: .block32, activations: .int8, minor: 2),
        Case(weights: .int8, granularity: .block64, activations: .fp32, minor: 0),
    ]

    static func floatBytes(_ values: [Float]) -> [UInt8] { values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) } }
    static func halfBytes(_ values: [Float]) -> [UInt8] {
        values.flatMap { withUnsafeBytes(of: Float16($0).bitPattern.littleEndian, Array.init) }
    }

    /// Deterministic values of every sign, some repeated (so that compression has work to do).
    static func values(_ count: Int, seed: Int) -> [Float] {
        (0..<count).map { Float(($0 * 37 + seed * 11) % 23 - 11) * 0.125 }
    }

    static func plain(_ name: String, _ shape: [Int], dtype: DType, compression: DLRTCompression, seed: Int) -> Item {
        let values = Self.values(shape.reduce(1, *), seed: seed)
        let data = dtype == .float16 ? halfBytes(values) : floatBytes(values)
        return Item(plan: DLRTTensorEntry(name: name, shape: shape, dtype: dtype, scheme: .none, layout: .torch,
                                          rawBytes: data.count, compression: compression), data: data)
    }

    /// An int8 rows_k32 tensor: N rows of Kp bytes (K real columns, then zeros) and its scales.
    static func int8(_ name: String, _ shape: [Int], block: Int, activations: DLRTActivations?, compression: DLRTCompression, seed: Int) -> Item {
        let n = shape[0], k = shape.dropFirst().reduce(1, *)
        let multiple = max(32, block)
        let kp = (k + multiple - 1) / multiple * multiple
        var data = [UInt8](repeating: 0, count: n * kp)
        for row in 0..<n {
            for column in 0..<k { data[row * kp + column] = UInt8(bitPattern: Int8((row * 31 + column * 7 + seed) % 255 - 127)) }
        }
        var plan = DLRTTensorEntry(name: name, shape: shape, dtype: .int8, scheme: block == 0 ? .int8Channel : .int8Block,
                                   layout: .rowsK32, rawBytes: data.count, compression: compression)
        plan.block = block
        plan.k = k
        plan.kPadded = kp
        plan.scalesShape = block == 0 ? [n] : [n, kp / block]
        plan.activations = activations
        let scales = (0..<plan.scalesShape.reduce(1, *)).map { Float($0 + 1) / 256 }
        return Item(plan: plan, data: data, scales: scales)
    }

    /// The tensors of a file of `c`'s scheme, in the writer's order (§7), covering every dtype,
    /// scheme, layout and compression the scheme allows.
    static func items(_ c: Case) -> [Item] {
        var items: [Item] = []
        switch c.weights {
        case .fp32:
            items.append(plain("unet.conv.weight", [3, 2, 3, 3], dtype: .float32, compression: .none, seed: 1))
            items.append(plain("unet.linear.weight", [5, 7], dtype: .float32, compression: .zstdShuffle, seed: 2))
        case .fp16:
            items.append(plain("unet.conv.weight", [3, 2, 3, 3], dtype: .float16, compression: .zstdShuffle, seed: 1))
            items.append(plain("unet.linear.weight", [5, 7], dtype: .float16, compression: .zstd, seed: 2))
        case .int8:
            let block = c.granularity.block
            let precision: DLRTActivations? = switch c.activations {
            case .fp32: nil
            case .int8: .int8
            case .int16, .auto: .int16
            }
            items.append(int8("unet.conv.weight", [3, 2, 3, 3], block: block, activations: precision, compression: .none, seed: 1))
            // A second layer: under `auto` it runs int8, so the file mixes precisions.
            items.append(int8("unet.linear.weight", [5, 70], block: block,
                              activations: c.activations == .auto ? .int8 : precision, compression: .zstd, seed: 2))
        }
        items.append(plain("unet.linear.bias", [5], dtype: .float32, compression: .none, seed: 3))
        items.append(plain("vae.norm.weight", [4], dtype: .float32, compression: .zstd, seed: 4))
        items.append(plain("cfr.proj.weight", [4, 6, 1, 1], dtype: .float32, compression: .none, seed: 5))
        items.append(plain("prompt_embeds", [1, 3, 8], dtype: .float32, compression: .none, seed: 6))
        // §7's order: component (unet, vae, cfr, other), then name by code points.
        let rank = ["unet": 0, "vae": 1, "cfr": 2]
        func key(_ item: Item) -> (Int, [UInt32]) {
            let name = item.plan.name
            return (rank[String(name.prefix { $0 != "." })] ?? 3, name.unicodeScalars.map(\.value))
        }
        return items.sorted {
            let (a, b) = (key($0), key($1))
            return a.0 != b.0 ? a.0 < b.0 : a.1.lexicographicallyPrecedes(b.1)
        }
    }

    static func metadata(_ c: Case) -> [(String, JSONValue)] {
        [
            ("format", .string("dlrt")),
            ("configs", .object([
                ("unet", .object([("in_channels", .int(8))])),
                ("vae", .object([("scaling_factor", .number("0.18215"))])),
                ("cfr", .object([
                    ("_class_name", .string("DLoRALCFR")), ("latent_channels", .int(4)), ("attention_heads", .int(1)),
                    ("attention_head_dim", .int(4)), ("spynet_levels", .int(6)),
                ])),
            ])),
            ("quantization", .object([
                ("weights", .string(c.weights.rawValue)), ("int8_granularity", .string(c.granularity.rawValue)),
                ("keep", .array([.string("*norm*")])), ("policy", .string("round trip")),
                ("activations", .string(c.activations.rawValue)),
            ])),
            ("provenance", .object([("tool", .string("test"))])),
            ("default_prompt_embeds", .string("prompt_embeds")),
        ]
    }

    static func write(_ c: Case, to path: String) throws -> [DLRTTensorEntry] {
        let items = Self.items(c)
        let byName = Dictionary(uniqueKeysWithValues: items.map { ($0.plan.name, $0) })
        return try DLRTWriter.write(to: path, metadata: metadata(c), plans: items.map(\.plan)) { plan in
            let item = byName[plan.name]!
            return DLRTWriter.Produced(data: item.data, scales: item.scales)
        }.entries
    }

    static func uint(_ bytes: [UInt8], _ offset: Int, _ size: Int) -> Int {
        (0..<size).reduce(0) { $0 | Int(bytes[offset + $1]) << (8 * $1) }
    }

    /// §5: output byte j·n + i = input byte i·e + j.
    static func shuffled(_ raw: [UInt8], elementBytes e: Int) -> [UInt8] {
        let n = raw.count / e
        var out = [UInt8](repeating: 0, count: raw.count)
        for i in 0..<n { for j in 0..<e { out[j * n + i] = raw[i * e + j] } }
        return out
    }

    @Test("the reference SHA-256 gives FIPS 180-4's examples")
    func referenceDigest() {
        #expect(ReferenceSHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(ReferenceSHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    @Test("bytes as Formats/dlrt.md lays them out, read back", arguments: cases)
    func roundTrip(_ c: Case) throws {
        let folder = try TestPaths.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("model.dlrt").path
        let items = Self.items(c)
        let written = try Self.write(c, to: path)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))

        // §2: the header.
        #expect(Array(bytes[0..<8]) == [0x89, 0x44, 0x4C, 0x52, 0x54, 0x0D, 0x0A, 0x1A])
        #expect(Self.uint(bytes, 8, 2) == 1)
        #expect(Self.uint(bytes, 10, 2) == Int(c.minor))
        #expect(Self.uint(bytes, 12, 4) == 128)
        #expect(Self.uint(bytes, 16, 8) == bytes.count)
        #expect(Self.uint(bytes, 24, 8) == 128)
        let metadataBytes = Self.uint(bytes, 32, 8)
        let payloadOffset = Self.uint(bytes, 40, 8)
        #expect(payloadOffset % 64 == 0 && payloadOffset >= 128 + metadataBytes)
        #expect(Self.uint(bytes, 48, 8) == bytes.count - payloadOffset)
        #expect(Self.uint(bytes, 56, 8) == 0)
        #expect(bytes[64..<96].allSatisfy { $0 == 0 })
        let headerDigest = bytes[96..<128].map { String(format: "%02x", $0) }.joined()
        #expect(headerDigest == ReferenceSHA256.hex(Array(bytes[0..<96]) + Array(bytes[128..<(128 + metadataBytes)])))

        // §3, §3.1, §7: the metadata, compact, keys in the spec's order.
        let text = try #require(String(bytes: bytes[128..<(128 + metadataBytes)], encoding: .utf8))
        #expect(!text.contains(": ") && !text.contains(", ") && !text.contains("\n"))
        let metadata = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let entries = try #require(metadata["tensors"] as? [[String: Any]])
        #expect(entries.map { $0["name"] as? String } == items.map(\.plan.name))
        let entryKeys = ["name", "shape", "dtype", "scheme", "layout", "block", "k", "k_padded", "offset", "bytes",
                         "raw_bytes", "compression", "sha256", "scales", "sqnr_db"]
        var searchFrom = text.range(of: "\"tensors\":")!.upperBound
        for entry in entries {
            // Each key's first occurrence after the previous one: the order of §3.1.
            for key in entryKeys + (entry["activations"] != nil ? ["activations"] : []) {
                let found = try #require(text.range(of: "\"\(key)\":", range: searchFrom..<text.endIndex), "\(key)")
                searchFrom = found.upperBound
            }
        }

        // §1: regions in list order from payload_offset, each at the next multiple of 64, every
        // other byte zero, the file ending at the last region rounded up to 64.
        func align(_ x: Int) -> Int { (x + 63) / 64 * 64 }
        var covered = [Bool](repeating: false, count: bytes.count)
        for i in 0..<(128 + metadataBytes) { covered[i] = true }
        var at = payloadOffset
        for (entry, item) in zip(entries, items) {
            let name = item.plan.name
            let offset = try #require(entry["offset"] as? Int), stored = try #require(entry["bytes"] as? Int)
            #expect(offset == at, "\(name)")
            let region = Array(bytes[offset..<(offset + stored)])
            #expect(entry["sha256"] as? String == ReferenceSHA256.hex(region), "\(name)")
            #expect(entry["raw_bytes"] as? Int == item.data.count)
            switch item.plan.compression {
            case .none:
                #expect(region == item.data, "\(name)")
            case .zstd, .zstdShuffle:
                // One Zstandard frame (RFC 8878 magic), smaller than what it holds.
                #expect(Array(region.prefix(4)) == [0x28, 0xB5, 0x2F, 0xFD], "\(name)")
            }
            for i in offset..<(offset + stored) { covered[i] = true }
            at = align(offset + stored)
            if let scales = item.scales {
                let record = try #require(entry["scales"] as? [String: Any])
                let scaleBytes = Self.floatBytes(scales)
                #expect(record["offset"] as? Int == at && record["bytes"] as? Int == scaleBytes.count, "\(name)")
                #expect(record["shape"] as? [Int] == item.plan.scalesShape && record["dtype"] as? String == "F32")
                #expect(Array(bytes[at..<(at + scaleBytes.count)]) == scaleBytes, "\(name)")
                #expect(record["sha256"] as? String == ReferenceSHA256.hex(scaleBytes), "\(name)")
                for i in at..<(at + scaleBytes.count) { covered[i] = true }
                at = align(at + scaleBytes.count)
            } else {
                #expect(entry["scales"] is NSNull, "\(name)")
            }
        }
        #expect(bytes.count == at)
        #expect(zip(bytes, covered).allSatisfy { $1 || $0 == 0 }, "padding is zero")

        // What the writer returned is what it recorded.
        #expect(written.map(\.data.offset) == entries.map { $0["offset"] as? Int })

        // The reader: every digest, every tensor's stored elements, the scales and the entries.
        let file = try DLRTFile(file: try MappedFile(path: path), configsAgainstTensors: false)
        try file.verifyAll()
        #expect(file.header.minor == c.minor)
        #expect(file.entries == written)
        for item in items {
            let view = try file.tensor(item.plan.name)
            #expect(view.contiguousData() == item.data, "\(item.plan.name)")
            #expect(try file.scales(item.plan.name) == item.scales, "\(item.plan.name)")
            let entry = try #require(file.entry(item.plan.name))
            #expect(entry.activations == item.plan.activations && entry.block == item.plan.block && entry.kPadded == item.plan.kPadded)
        }
    }

    @Test("zstd_shuffle stores the byte planes of §5")
    func shuffle() {
        let raw: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
        #expect(Self.shuffled(raw, elementBytes: 4) == [1, 5, 9, 2, 6, 10, 3, 7, 11, 4, 8, 12])
        #expect(raw.withUnsafeBytes { DLRTCodec.shuffle($0, elementBytes: 4) } == Self.shuffled(raw, elementBytes: 4))
        #expect(raw.withUnsafeBytes { DLRTCodec.shuffle($0, elementBytes: 2) } == Self.shuffled(raw, elementBytes: 2))
        let back = Self.shuffled(raw, elementBytes: 4).withUnsafeBytes { DLRTCodec.unshuffle($0, elementBytes: 4) }
        #expect(back == raw)
    }

    @Test("identical inputs give identical bytes in any folder")
    func deterministic() throws {
        let c = Self.cases[4]
        var files: [[UInt8]] = []
        for _ in 0..<2 {
            let folder = try TestPaths.temporaryFolder()
            defer { try? FileManager.default.removeItem(at: folder) }
            let path = folder.appendingPathComponent("a.dlrt").path
            _ = try Self.write(c, to: path)
            files.append([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))))
        }
        #expect(files[0] == files[1])
    }
}
