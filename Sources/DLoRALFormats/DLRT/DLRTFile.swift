import Crypto
import Dispatch
import Foundation

/// A `.dlrt` file, mapped and checked (Formats/dlrt.md).
///
/// Opening verifies the header digest (header + metadata) and the layout of every region; a
/// tensor's own digest is verified before it is first handed out (`tensor(_:)`), or all at once
/// with `verifyAll()`. Nothing is ever read from a region that failed its check.
public final class DLRTFile: @unchecked Sendable {
    public let path: String
    public let file: MappedFile
    public let header: DLRTHeader
    /// The metadata object, as parsed.
    public let metadata: JSONValue
    public let entries: [DLRTTensorEntry]
    /// Tensors stored in a way this reader does not know (a newer minor version, §6), with the
    /// reason; only these tensors are unreadable.
    public let unsupported: [String: String]
    /// The regions of the unsupported tensors, so `verifyAll()` checks their digests too.
    private let unsupportedRegions: [String: [DLRTRegion]]
    private let index: [String: Int]
    private var verified = Set<String>()
    private var decompressed: [String: TensorStorage] = [:]
    private let lock = NSLock()

    public static func looksLikeDLRT(_ prefix: [UInt8]) -> Bool {
        prefix.count >= 8 && Array(prefix.prefix(8)) == DLRT.magic
    }

    public convenience init(path: String) throws {
        try self.init(file: try MappedFile(path: path))
    }

    public convenience init(file: MappedFile) throws {
        try self.init(file: file, configsAgainstTensors: true)
    }

    /// `configsAgainstTensors: false` checks the configs' values but not that they describe the
    /// tensors: for the spec tests' hand-made files, whose few tensors are not a whole model.
    init(file: MappedFile, configsAgainstTensors: Bool) throws {
        self.file = file
        path = file.path
        let path = file.path
        func fail(_ message: String, tensor: String? = nil) -> FormatError {
            FormatError(.malformed, file: path, tensor: tensor, message)
        }
        guard file.count >= DLRT.headerBytes else {
            throw fail("\(file.count) bytes is too short for a .dlrt header (128 bytes); truncated or not a .dlrt file")
        }
        guard Array(file.bytes[0..<8]) == DLRT.magic else {
            throw fail("wrong magic number; not a .dlrt file")
        }
        var h = DLRTHeader()
        h.major = file.loadLE(UInt16.self, at: 8)
        h.minor = file.loadLE(UInt16.self, at: 10)
        guard h.major == DLRT.majorVersion else {
            throw FormatError(.unsupported, file: path,
                              "format version \(h.major).\(h.minor) is newer than this reader (1.x); use a newer dloral toolchain")
        }
        guard file.loadLE(UInt32.self, at: 12) == UInt32(DLRT.headerBytes) else {
            throw fail("header_bytes must be 128")
        }
        func int(_ at: Int) throws -> Int {
            let v = file.loadLE(UInt64.self, at: at)
            guard v <= UInt64(Int.max) else { throw fail("header field at byte \(at) is out of range") }
            return Int(v)
        }
        h.fileBytes = try int(16)
        h.metadataOffset = try int(24)
        h.metadataBytes = try int(32)
        h.payloadOffset = try int(40)
        h.payloadBytes = try int(48)
        h.flags = file.loadLE(UInt64.self, at: 56)
        h.digest = Array(file.bytes[96..<128])
        guard h.fileBytes == file.count else {
            throw fail("header says \(h.fileBytes) bytes but the file has \(file.count) (truncated or appended to)")
        }
        guard h.metadataOffset == DLRT.headerBytes, h.metadataBytes <= file.count - h.metadataOffset,
            h.payloadOffset % DLRT.alignmentBytes == 0, h.payloadOffset >= h.metadataOffset + h.metadataBytes,
            h.payloadOffset <= file.count, h.payloadBytes == file.count - h.payloadOffset
        else {
            throw fail("header ranges are inconsistent (metadata \(h.metadataOffset)+\(h.metadataBytes), payload \(h.payloadOffset)+\(h.payloadBytes), file \(file.count))")
        }
        guard h.flags == 0 else {
            throw FormatError(.unsupported, file: path, "header flags \(h.flags) are not known to this reader")
        }
        let metadataBytes = UnsafeRawBufferPointer(rebasing: file.bytes[h.metadataOffset..<(h.metadataOffset + h.metadataBytes)])
        var hasher = SHA256()
        hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: file.bytes[0..<96]))
        hasher.update(bufferPointer: metadataBytes)
        guard Array(hasher.finalize()) == h.digest else {
            throw FormatError(.malformed, file: path, "header/metadata checksum mismatch: the header or metadata is corrupted; do not use this file")
        }
        header = h
        do {
            metadata = try StrictJSONParser.parse(metadataBytes)
        } catch {
            throw fail("metadata is not valid JSON: \(error)")
        }
        let list = try Self.checkTopLevel(metadata, file: path)
        // §6: values this reader does not know are a newer minor version's additions only in a
        // file of a newer minor version; in a file of a version this reader knows, they are damage.
        let knowsEveryValue = h.minor <= DLRT.minorVersion
        var entries: [DLRTTensorEntry] = []
        var index: [String: Int] = [:]
        var unsupported: [String: String] = [:]
        var unsupportedRegions: [String: [DLRTRegion]] = [:]
        var regions: [(region: DLRTRegion, what: String, tensor: String)] = []
        for item in list {
            let entry: DLRTTensorEntry
            do {
                entry = try Self.entry(item, file: path)
            } catch let error as FormatError where error.kind == .unsupported {
                let name = item["name"]?.stringValue ?? "?"
                guard !knowsEveryValue else {
                    throw fail("\(error.message) (the file says version \(h.major).\(h.minor), whose values Formats/dlrt.md lists: the metadata is damaged or forged; do not use this file)", tensor: name)
                }
                guard unsupported[name] == nil, index[name] == nil else { throw fail("the name appears twice in the tensor list", tensor: name) }
                unsupported[name] = error.message
                // Its regions still take part in the layout checks (§6).
                let own = try Self.regions(of: item, file: path, tensor: name)
                unsupportedRegions[name] = own.map(\.0)
                regions += own.map { (region: $0.0, what: $0.1, tensor: name) }
                continue
            }
            guard index[entry.name] == nil, unsupported[entry.name] == nil else { throw fail("the name appears twice in the tensor list", tensor: entry.name) }
            index[entry.name] = entries.count
            regions.append((entry.data, "data", entry.name))
            if let scales = entry.scales { regions.append((scales, "scales", entry.name)) }
            entries.append(entry)
        }
        try Self.checkLayout(regions, header: h, file: file)
        try Self.checkConfigs(metadata["configs"], entries: entries, file: path)
        try Self.checkQuantization(metadata["quantization"], entries: entries, file: path)
        if case let .string(prompt)? = metadata["default_prompt_embeds"] {
            guard index[prompt] != nil || unsupported[prompt] != nil else {
                throw fail("default_prompt_embeds names '\(prompt)', which is not in the tensor list")
            }
            if let i = index[prompt] { try Self.checkPromptEmbeds(entries[i], file: path) }
        }
        try Self.validateConfigs(metadata, entries: entries, unsupported: unsupported, againstTensors: configsAgainstTensors, file: path)
        self.entries = entries
        self.index = index
        self.unsupported = unsupported
        self.unsupportedRegions = unsupportedRegions
    }

    static func entry(_ json: JSONValue, file: String) throws -> DLRTTensorEntry {
        let name = json["name"]?.stringValue ?? "?"
        func fail(_ message: String) -> FormatError { FormatError(.malformed, file: file, tensor: name, message) }
        func int(_ key: String, _ object: JSONValue = json) throws -> Int {
            guard let v = object[key]?.intValue, v >= 0 else { throw fail("\"\(key)\" must be a non-negative integer") }
            return v
        }
        guard json.objectValue != nil else { throw fail("a tensor entry must be a JSON object") }
        guard let given = json["name"]?.stringValue, !given.isEmpty, let shape = json["shape"]?.intArray, shape.allSatisfy({ $0 >= 0 }),
            let dtypeName = json["dtype"]?.stringValue
        else { throw fail("tensor entry needs name, shape and dtype") }
        for key in ["scales", "sqnr_db"] where json[key] == nil {
            throw fail("tensor entry has no \"\(key)\" (null when it does not apply)")
        }
        guard let dtype = DType(rawValue: dtypeName), [.float32, .float16, .int8].contains(dtype) else {
            throw FormatError(.unsupported, file: file, tensor: name, "dtype \(dtypeName) is not one this reader knows (F32, F16, I8)")
        }
        guard let scheme = DLRTScheme(rawValue: json["scheme"]?.stringValue ?? "") else {
            throw FormatError(.unsupported, file: file, tensor: name, "scheme \(json["scheme"]?.serialized() ?? "missing") is not one this reader knows (none, int8_channel, int8_block)")
        }
        guard let layout = DLRTLayout(rawValue: json["layout"]?.stringValue ?? "") else {
            throw FormatError(.unsupported, file: file, tensor: name, "layout \(json["layout"]?.serialized() ?? "missing") is not one this reader knows (torch, rows_k32)")
        }
        guard let compression = DLRTCompression(rawValue: json["compression"]?.stringValue ?? "") else {
            throw FormatError(.unsupported, file: file, tensor: name, "compression \(json["compression"]?.serialized() ?? "missing") is not one this reader knows (none, zstd, zstd_shuffle)")
        }
        if case let .object(scales)? = json["scales"], JSONValue.object(scales)["dtype"]?.stringValue != "F32" {
            throw FormatError(.unsupported, file: file, tensor: name, "scales dtype \(JSONValue.object(scales)["dtype"]?.serialized() ?? "missing") is not one this reader knows (F32)")
        }
        guard let digest = json["sha256"]?.stringValue, isDigest(digest) else { throw fail("\"sha256\" must be 64 lowercase hex digits") }
        var entry = DLRTTensorEntry(
            name: name, shape: shape, dtype: dtype, scheme: scheme, layout: layout,
            data: DLRTRegion(offset: try int("offset"), bytes: try int("bytes"), sha256: digest),
            rawBytes: try int("raw_bytes"), compression: compression)
        entry.block = try int("block")
        entry.k = try int("k")
        entry.kPadded = try int("k_padded")
        switch json["sqnr_db"] {
        case .null?: break
        case let value?:
            guard let db = value.doubleValue, db.isFinite else { throw fail("\"sqnr_db\" must be a number or null, not \(value.serialized())") }
            entry.sqnrDB = db
        case nil: break
        }
        if let value = json["activations"], value != .null {
            guard let text = value.stringValue, let activations = DLRTActivations(rawValue: text) else {
                throw FormatError(.unsupported, file: file, tensor: name, "activations \(value.serialized()) is not one this reader knows (int8, int16)")
            }
            guard layout == .rowsK32, scheme == .int8Channel || scheme == .int8Block else {
                throw fail("\"activations\" is set but the tensor is not an int8 rows_k32 matrix")
            }
            // §4.3: block scales run int8 activations only.
            guard scheme == .int8Channel || activations == .int8 else {
                throw FormatError(.unsupported, file: file, tensor: name, "activations \(activations.rawValue) on an int8_block tensor is not one this reader knows (int8)")
            }
            entry.activations = activations
        }
        guard let count = checkedElementCount(shape) else { throw fail("shape \(shape) overflows") }
        // §3.1/§4: how dtype, scheme, layout, block, k and k_padded go together.
        switch scheme {
        case .none:
            guard layout == .torch, entry.block == 0 else {
                throw fail("scheme none is stored in layout torch with block 0 (this is layout \(layout.rawValue), block \(entry.block))")
            }
        case .int8Channel, .int8Block:
            guard dtype == .int8, layout == .rowsK32 else {
                throw fail("scheme \(scheme.rawValue) is stored as I8 in layout rows_k32 (this is \(dtypeName), \(layout.rawValue))")
            }
            let blocks = scheme == .int8Channel ? [0] : [32, 64]
            guard blocks.contains(entry.block) else {
                throw fail("scheme \(scheme.rawValue) needs block \(scheme == .int8Channel ? "0" : "32 or 64"), not \(entry.block)")
            }
        }
        switch layout {
        case .torch:
            guard entry.k == 0, entry.kPadded == 0 else {
                throw fail("layout torch has k and k_padded 0 (this has \(entry.k), \(entry.kPadded))")
            }
            guard entry.rawBytes == count * dtype.byteSize else {
                throw fail("raw_bytes \(entry.rawBytes) ≠ \(count) elements × \(dtype.byteSize)")
            }
        case .rowsK32:
            guard shape.count == 2 || shape.count == 4 else {
                throw fail("layout rows_k32 holds Linear [N, C] or Conv2d [N, C, KH, KW] weights, not shape \(shape)")
            }
            let k = shape.dropFirst().reduce(1, *)
            let multiple = entry.block == 64 ? 64 : DLRT.rowPaddingColumns
            let product = entry.rows.multipliedReportingOverflow(by: entry.kPadded)
            guard entry.k == k, entry.kPadded == DLRT.alignUp(k, multiple), !product.overflow, product.partialValue == entry.rawBytes
            else {
                throw fail("rows_k32 fields are inconsistent with shape \(shape) (k \(entry.k), k_padded \(entry.kPadded), raw_bytes \(entry.rawBytes); expected k \(k), k_padded \(DLRT.alignUp(k, multiple)))")
            }
        }
        switch compression {
        case .none:
            guard entry.data.bytes == entry.rawBytes else {
                throw fail("uncompressed data of \(entry.data.bytes) bytes, raw_bytes \(entry.rawBytes)")
            }
        case .zstd, .zstdShuffle:
            guard entry.data.bytes > 0 else { throw fail("an empty region is not a zstd frame") }
            guard compression == .zstd || dtype != .int8 else { throw fail("zstd_shuffle is for F32 and F16 tensors; I8 uses zstd") }
        }
        if case let .object(scales)? = json["scales"] {
            let object = JSONValue.object(scales)
            guard scheme != .none else { throw fail("scheme none has no scales (\"scales\": null)") }
            guard let sshape = object["shape"]?.intArray, let sdigest = object["sha256"]?.stringValue, isDigest(sdigest) else {
                throw fail("scales need shape and sha256 (64 lowercase hex digits)")
            }
            entry.scales = DLRTRegion(offset: try int("offset", object), bytes: try int("bytes", object), sha256: sdigest)
            entry.scalesShape = sshape
            let expected = scheme == .int8Channel ? [entry.rows] : [entry.rows, entry.kPadded / entry.block]
            guard sshape == expected, entry.scales!.bytes == expected.reduce(4, *) else {
                throw fail("scales shape \(sshape) (\(entry.scales!.bytes) bytes) does not fit scheme \(scheme.rawValue); expected \(expected) F32")
            }
        } else if scheme != .none {
            throw fail("int8 tensor without scales")
        } else if json["scales"] != .null {
            throw fail("\"scales\" must be an object or null")
        }
        return entry
    }

    static func isDigest(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    public func entry(_ name: String) -> DLRTTensorEntry? { index[name].map { entries[$0] } }

    /// Checks a tensor's stored bytes (and scales) against their digests.
    /// - Throws: `FormatError` naming the tensor on a mismatch.
    public func verify(_ name: String, releasePages: Bool = false) throws {
        lock.lock()
        let done = verified.contains(name)
        lock.unlock()
        if done { return }
        guard let entry = entry(name) else {
            if let reason = unsupported[name] {
                throw FormatError(.unsupported, file: path, tensor: name, "\(reason); this tensor needs a newer reader")
            }
            throw FormatError(.invalidModel, file: path, tensor: name, "no such tensor in this file")
        }
        for (region, what) in [(entry.data, "data")] + (entry.scales.map { [($0, "scales")] } ?? []) {
            let bytes = UnsafeRawBufferPointer(rebasing: file.bytes[region.offset..<(region.offset + region.bytes)])
            let matches = DLRT.sha256Hex(bytes) == region.sha256
            if releasePages { file.releasePages(bytes) }
            guard matches else {
                throw FormatError(.malformed, file: path, tensor: name, "\(what) checksum mismatch: the stored bytes are corrupted; do not run this file")
            }
        }
        lock.lock()
        verified.insert(name)
        lock.unlock()
    }

    /// Verifies every tensor, releasing each region's pages after hashing it (so checking a
    /// multi-GB file does not make it resident). Tensors are hashed on the thread pool
    /// (DLORAL_THREADS), largest first; a failure reports the first bad tensor in file order.
    public func verifyAll() throws {
        let order = entries.indices.sorted { entries[$0].data.bytes > entries[$1].data.bytes }
        let lock = NSLock()
        var failures: [(Int, Error)] = []
        ThreadPool.forEach(order.count) { taken in
            let index = order[taken]
            do {
                try verify(entries[index].name, releasePages: true)
            } catch {
                lock.lock()
                failures.append((index, error))
                lock.unlock()
            }
        }
        if let first = failures.min(by: { $0.0 < $1.0 }) { throw first.1 }
        // Tensors this reader cannot decode still have digests to check (§6, §7).
        for name in unsupportedRegions.keys.sorted() {
            for region in unsupportedRegions[name] ?? [] {
                let bytes = UnsafeRawBufferPointer(rebasing: file.bytes[region.offset..<(region.offset + region.bytes)])
                let matches = DLRT.sha256Hex(bytes) == region.sha256
                file.releasePages(bytes)
                guard matches else {
                    throw FormatError(.malformed, file: path, tensor: name, "checksum mismatch: the stored bytes are corrupted; do not use this file")
                }
            }
        }
    }

    public var verifiedCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return verified.count
    }

    /// The stored elements of a tensor (verified first; decompressed once if compressed):
    /// int8 rows_k32 as [N, Kp], otherwise the logical shape.
    public func tensor(_ name: String) throws -> TensorView {
        try verify(name)
        let entry = entry(name)!
        let shape = entry.layout == .rowsK32 ? [entry.rows, entry.kPadded] : entry.shape
        let storage: TensorStorage
        if entry.compression == .none {
            storage = TensorStorage(file: file, offset: entry.data.offset, count: entry.data.bytes, origin: "\(path):\(name)")
        } else {
            lock.lock()
            let cached = decompressed[name]
            lock.unlock()
            if let cached {
                storage = cached
            } else {
                let stored = UnsafeRawBufferPointer(rebasing: file.bytes[entry.data.offset..<(entry.data.offset + entry.data.bytes)])
                guard var raw = DLRTCodec.decompress(stored, rawBytes: entry.rawBytes) else {
                    throw FormatError(.malformed, file: path, tensor: name, "zstd data does not decompress to \(entry.rawBytes) bytes")
                }
                if entry.compression == .zstdShuffle {
                    raw = raw.withUnsafeBytes { DLRTCodec.unshuffle($0, elementBytes: entry.dtype.byteSize) }
                }
                storage = TensorStorage.copying(raw, origin: "\(path):\(name)")
                lock.lock()
                decompressed[name] = storage
                lock.unlock()
            }
        }
        return TensorView(dtype: entry.dtype, shape: shape, storage: storage)
    }

    /// The int8 `rows_k32` matrix of an `int8_channel` or `int8_block` tensor, zero-copy
    /// ([N, Kp], verified first), with its scales, block and the entry's activation precision
    /// attached (`int8Rows`). nil for other tensors.
    public func int8RowsView(_ name: String) throws -> TensorView? {
        guard let entry = entry(name), entry.layout == .rowsK32,
            entry.scheme == .int8Channel || (entry.scheme == .int8Block && entry.block > 0 && entry.kPadded % entry.block == 0)
        else { return nil }
        var view = try tensor(name)
        view.int8Rows = Int8RowsInfo(
            logicalShape: entry.shape, k: entry.k, kPadded: entry.kPadded,
            block: entry.scheme == .int8Channel ? 0 : entry.block,
            scales: try scales(name) ?? [], activations: entry.activations)
        return view
    }

    /// The F32 scales of an int8 tensor (verified first).
    public func scales(_ name: String) throws -> [Float]? {
        try verify(name)
        guard let entry = entry(name), let region = entry.scales else { return nil }
        let view = TensorView(dtype: .float32, shape: entry.scalesShape,
                              storage: TensorStorage(file: file, offset: region.offset, count: region.bytes, origin: "\(path):\(name).scales"))
        return view.toFloat32()
    }

    /// The tensor as float32 in its logical shape (dequantized and un-arranged for int8).
    public func dequantized(_ name: String) throws -> [Float] {
        let view = try tensor(name)
        let entry = entry(name)!
        guard entry.layout == .rowsK32 else { return view.toFloat32() }
        let scales = try self.scales(name) ?? []
        guard let bytes = view.contiguousBytes, let base = bytes.baseAddress else { return [] }
        return Int8Rows.dequantize(
            base.assumingMemoryBound(to: Int8.self), shape: entry.shape, k: entry.k, kPadded: entry.kPadded,
            block: entry.scheme == .int8Channel ? 0 : entry.block, scales: scales)
    }
}

/// The (kh, kw, in) column order of `rows_k32` (§4) and back.
public enum Int8Rows {
    /// Column of W[n, c, y, x] for a [N, C, KH, KW] weight (Linear: c).
    @inline(__always)
    public static func column(c: Int, y: Int, x: Int, channels: Int, kernelWidth: Int) -> Int {
        (y * kernelWidth + x) * channels + c
    }

    /// ŵ = q · s in the logical torch layout, from the [N, Kp] int8 rows `q` and their scales: one
    /// per row (`block` 0), or one per row and block of `block` columns.
    public static func dequantize(
        _ q: UnsafePointer<Int8>, shape: [Int], k: Int, kPadded: Int, block: Int, scales: [Float]
    ) -> [Float] {
        let rows = shape.first ?? 1
        let perRow = block == 0 ? 1 : kPadded / block
        var rowMajor = [Float](repeating: 0, count: rows * k)
        for n in 0..<rows {
            for col in 0..<k {
                let s = scales[n * perRow + (block == 0 ? 0 : col / block)]
                rowMajor[n * k + col] = Float(q[n * kPadded + col]) * s
            }
        }
        return fromRows(rowMajor, shape: shape)
    }

    /// A row-major [N, K] matrix in (kh, kw, in) column order back to the logical torch layout.
    public static func fromRows(_ rows: [Float], shape: [Int]) -> [Float] {
        guard shape.count == 4 else { return rows }
        let (n, c, kh, kw) = (shape[0], shape[1], shape[2], shape[3])
        var out = [Float](repeating: 0, count: rows.count)
        let k = c * kh * kw
        for o in 0..<n {
            for ci in 0..<c {
                for y in 0..<kh {
                    for x in 0..<kw {
                        out[((o * c + ci) * kh + y) * kw + x] = rows[o * k + column(c: ci, y: y, x: x, channels: c, kernelWidth: kw)]
                    }
                }
            }
        }
        return out
    }
}
