import DLoRALFormats
import FuzzSupport

#if canImport(Glibc)
import Glibc
#endif

/// The `.dlrt` reader: header, metadata JSON and its tensor entries, region layout, per-tensor
/// digests, zstd decompression, unshuffling and int8 dequantization.
///
/// A random mutation would almost never keep the SHA-256 digests right, and the reader would
/// refuse every input at the first digest check. So the target repairs them as a writer would
/// (file_bytes, the header digest, and each tensor's digest recorded in the metadata) before
/// opening: what is fuzzed is everything that a digest does not already protect.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDLRT(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var bytes = size > 0 ? [UInt8](UnsafeBufferPointer(start: data, count: size)) : []
    DLRTRepair.header(&bytes)
    var path = Fuzz.write(bytes, name: "input.dlrt")
    if let file = try? DLRTFile(path: path), DLRTRepair.tensorDigests(&bytes, file) {
        DLRTRepair.header(&bytes)
        path = Fuzz.write(bytes, name: "input.dlrt")
    }
    Fuzz.expectReadOrRefused("DLRTFile(path:)") {
        let file = try DLRTFile(path: path)
        try file.verifyAll()
        for entry in file.entries {
            Fuzz.expectReadOrRefused("DLRTFile.tensor(_:) of '\(entry.name)'") {
                Fuzz.touch(try file.tensor(entry.name))
                _ = try file.scales(entry.name)
                _ = try file.int8RowsView(entry.name)
                if entry.shape.reduce(1, &*) <= 1 << 16 {
                    _ = try file.dequantized(entry.name)
                }
            }
        }
    }
    return 0
}

enum DLRTRepair {
    static func load64(_ b: [UInt8], _ at: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 | UInt64(b[at + $1]) << (8 * UInt64($1)) }
    }

    static func store64(_ b: inout [UInt8], _ at: Int, _ v: UInt64) {
        for i in 0..<8 { b[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
    }

    static func unhex(_ text: String) -> [UInt8] {
        let digits = Array(text.utf8).map { $0 <= 0x39 ? $0 &- 0x30 : $0 &- 0x57 }
        return stride(from: 0, to: digits.count - 1, by: 2).map { digits[$0] << 4 | digits[$0 + 1] }
    }

    /// Sets file_bytes to the input's length and the header digest to that of the header and
    /// the metadata range the header names (when that range is inside the input).
    static func header(_ b: inout [UInt8]) {
        guard b.count >= DLRT.headerBytes, Array(b[0..<8]) == DLRT.magic else { return }
        store64(&b, 16, UInt64(b.count))
        let offset = load64(b, 24), length = load64(b, 32)
        guard offset <= UInt64(b.count), length <= UInt64(b.count) - offset else { return }
        let covered = Array(b[0..<96]) + b[Int(offset)..<Int(offset + length)]
        let digest = unhex(covered.withUnsafeBytes { DLRT.sha256Hex($0) })
        b.replaceSubrange(96..<128, with: digest)
    }

    /// Rewrites, inside the metadata, each tensor's recorded digest that does not match its
    /// region. Returns whether anything changed.
    static func tensorDigests(_ b: inout [UInt8], _ file: DLRTFile) -> Bool {
        let start = file.header.metadataOffset, end = start + file.header.metadataBytes
        var changed = false
        for entry in file.entries {
            for region in [entry.data] + (entry.scales.map { [$0] } ?? []) {
                let actual = b[region.offset..<(region.offset + region.bytes)].withUnsafeBytes { DLRT.sha256Hex($0) }
                guard actual != region.sha256 else { continue }
                let old = Array(region.sha256.utf8), new = Array(actual.utf8)
                guard old.count == new.count, end - start >= old.count else { continue }
                var i = start
                while i <= end - old.count {
                    if b[i..<(i + old.count)].elementsEqual(old) {
                        b.replaceSubrange(i..<(i + old.count), with: new)
                        changed = true
                        i += old.count
                    } else {
                        i += 1
                    }
                }
            }
        }
        return changed
    }
}

/// Seeds: small files written by the real writer with every storage kind (fp32, fp16, zstd,
/// zstd_shuffle, int8 per channel and per block with activations) and metadata shaped like
/// `dloral-convert quantize`'s, configs taken from the tiny fixture when
/// `DLORAL_FUZZ_FIXTURES` names Tests/Fixtures.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzDLRTInitialize(
    _ argc: UnsafeMutablePointer<Int32>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?
) -> Int32 {
    guard let folder = Fuzz.seedFolder else { return 0 }
    do {
        try DLRTSeeds.write(to: folder)
    } catch {
        fatalError("cannot write the .dlrt seeds to \(folder): \(error)")
    }
    exit(0)
}

enum DLRTSeeds {
    static func plans() -> [DLRTTensorEntry] {
        var plans: [DLRTTensorEntry] = []
        plans.append(DLRTTensorEntry(name: "unet.conv_in.bias", shape: [8], dtype: .float32, scheme: .none, layout: .torch, rawBytes: 32, compression: .none))
        plans.append(DLRTTensorEntry(name: "vae.decoder.conv_out.weight", shape: [3, 8, 3, 3], dtype: .float16, scheme: .none, layout: .torch, rawBytes: 432, compression: .zstd))
        plans.append(DLRTTensorEntry(name: "cfr.proj.weight", shape: [8, 8], dtype: .float32, scheme: .none, layout: .torch, rawBytes: 256, compression: .zstdShuffle))
        var conv = DLRTTensorEntry(name: "unet.conv_in.weight", shape: [8, 3, 3, 3], dtype: .int8, scheme: .int8Channel, layout: .rowsK32, rawBytes: 8 * 32, compression: .none)
        conv.k = 27
        conv.kPadded = 32
        conv.scalesShape = [8]
        conv.activations = .int8
        plans.append(conv)
        var linear = DLRTTensorEntry(name: "unet.mid_block.attentions.0.proj_in.weight", shape: [4, 64], dtype: .int8, scheme: .int8Block, layout: .rowsK32, rawBytes: 4 * 64, compression: .zstd)
        linear.k = 64
        linear.kPadded = 64
        linear.block = 32
        linear.scalesShape = [4, 2]
        linear.activations = .int8
        plans.append(linear)
        var wide = DLRTTensorEntry(name: "unet.mid_block.attentions.0.proj_out.weight", shape: [2, 40], dtype: .int8, scheme: .int8Channel, layout: .rowsK32, rawBytes: 2 * 64, compression: .none)
        wide.k = 40
        wide.kPadded = 64
        wide.scalesShape = [2]
        wide.activations = .int16
        plans.append(wide)
        // Named outside unet / vae / cfr: the configs are then checked by value only, so these
        // few tensors open without being a whole model and mutations reach the tensor readers.
        for i in plans.indices { plans[i].name = "seed." + plans[i].name }
        plans.append(DLRTTensorEntry(name: "prompt_embeds", shape: [1, 2, 8], dtype: .float32, scheme: .none, layout: .torch, rawBytes: 64, compression: .none))
        return plans
    }

    static func metadata(prompt: Bool, weights: String, granularity: String, activations: String) -> [(String, JSONValue)] {
        var configs: [(String, JSONValue)] = []
        if let fixtures = getenv("DLORAL_FUZZ_FIXTURES").map({ String(cString: $0) }) {
            for component in ["unet", "vae"] {
                if let config = try? JSONValue.read(path: "\(fixtures)/tiny/base/\(component)/config.json") {
                    configs.append((component, config))
                }
            }
        }
        return [
            ("format", .string("dlrt")),
            ("configs", .object(configs)),
            ("quantization", .object([
                ("weights", .string(weights)), ("int8_granularity", .string(granularity)),
                ("activations", .string(activations)), ("keep", .array([.string("*.norm*")])), ("policy", .string("seed")),
            ])),
            ("provenance", .object([("tool", .string("dloral-convert")), ("command", .string("quantize"))])),
            ("default_prompt_embeds", prompt ? .string("prompt_embeds") : .null),
        ]
    }

    static func produce(_ plan: DLRTTensorEntry) -> DLRTWriter.Produced {
        let data = (0..<plan.rawBytes).map { i -> UInt8 in
            switch plan.dtype {
            case .float32: return [0x00, 0x00, 0x80, 0x3F][i % 4]  // 1.0
            case .float16: return [0x00, 0x3C][i % 2]  // 1.0
            default: return UInt8(truncatingIfNeeded: i &* 37)
            }
        }
        let scales = plan.scalesShape.isEmpty ? nil : [Float](repeating: 0.01, count: plan.scalesShape.reduce(1, *))
        return DLRTWriter.Produced(data: data, scales: scales, sqnrDB: plan.scheme == .none ? nil : 40)
    }

    static func write(to folder: String) throws {
        let all = plans()
        let float32 = all.filter { $0.scheme == .none && $0.dtype == .float32 }
        // Each seed is a file the reader accepts: its quantization block says how its tensors are
        // stored (Formats/dlrt.md §3, §4).
        let sets: [(name: String, weights: String, granularity: String, activations: String, plans: [DLRTTensorEntry])] = [
            ("channel", "int8", "channel", "int8", float32 + all.filter { $0.scheme == .int8Channel }),
            ("block32", "int8", "block32", "int8", float32 + all.filter { $0.scheme == .int8Block }),
            ("fp16", "fp16", "channel", "fp32", all.filter { $0.scheme == .none }),
            ("one", "fp32", "channel", "fp32", [all[0]]),
        ]
        for set in sets {
            let prompt = set.plans.contains { $0.name == "prompt_embeds" }
            let metadata = metadata(prompt: prompt, weights: set.weights, granularity: set.granularity, activations: set.activations)
            _ = try DLRTWriter.write(to: "\(folder)/seed-\(set.name).dlrt", metadata: metadata, plans: set.plans,
                                     produce: { produce($0) })
        }
    }
}

@_cdecl("fuzz_dlrt_main")
public func fuzzDLRTMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Fuzz.main(argc, argv, fuzzDLRT)
}
