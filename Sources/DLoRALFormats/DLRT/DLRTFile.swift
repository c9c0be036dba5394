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

    public init(file: MappedFile) throws {
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
        guard let list = metadata["tensors"]?.arrayValue else {
            throw fail("metadata has no \"tensors\" list")
        }
        var entries: [DLRTTensorEntry] = []
        var index: [String: Int] = [:]
        var unsupported: [String: String] = [:]
        var regions: [(Int, Int, String)] = []
        for item in list {
            let entry: DLRTTensorEntry
            do {
                entry = try Self.entry(item, file: path)
            } catch let error as FormatError where error.kind == .unsupported {
                let name = item["name"]?.stringValue ?? "?"
                guard unsupported[name] == nil, index[name] == nil else { throw fail("the name appears twice in the tensor list", tensor: name) }
                unsupported[name] = error.message
                continue
            }
            guard index[entry.name] == nil, unsupported[entry.name] == nil else { throw fail("the name appears twice in the tensor list", tensor: entry.name) }
            index[entry.name] = entries.count
            for region in [entry.data] + (entry.scales.map { [$0] } ?? []) {
                guard region.offset % DLRT.alignmentBytes == 0, region.offset >= h.payloadOffset,
                    region.bytes <= file.count - region.offset
                else {
                    throw fail("data region \(region.offset)+\(region.bytes) is misaligned or outside the payload", tensor: entry.name)
                }
                regions.append((region.offset, region.bytes, entry.name))
            }
            entries.append(entry)
        }
        regions.sort { $0.0 < $1.0 }
        for i in regions.indices.dropFirst() where regions[i].0 < regions[i - 1].0 + regions[i - 1].1 {
            throw fail("data region overlaps that of '\(regions[i - 1].2)'", tensor: regions[i].2)
        }
        if case let .string(prompt)? = metadata["default_prompt_embeds"], index[prompt] == nil, unsupported[prompt] == nil {
            throw fail("default_prompt_embeds names '\(prompt)', which is not in the tensor list")
        }
        try Self.validateConfigs(metadata, entries: entries, unsupported: unsupported, file: path)
        self.entries = entries
        self.index = index
        self.unsupported = unsupported
    }

    static func entry(_ json: JSONValue, file: String) throws -> DLRTTensorEntry {
        let name = json["name"]?.stringValue ?? "?"
        func fail(_ message: String) -> FormatError { FormatError(.malformed, file: file, tensor: name, message) }
        func int(_ key: String, _ object: JSONValue = json) throws -> Int {
            guard let v = object[key]?.intValue, v >= 0 else { throw fail("\"\(key)\" must be a non-negative integer") }
            return v
        }
        guard json["name"]?.stringValue != nil, let shape = json["shape"]?.intArray, shape.allSatisfy({ $0 >= 0 }),
            let dtypeName = json["dtype"]?.stringValue
        else { throw fail("tensor entry needs name, shape and dtype") }
        guard let dtype = DType(rawValue: dtypeName), [.float32, .float16, .int8].contains(dtype) else {
            throw FormatError(.unsupported, file: file, tensor: name, "dtype \(dtypeName) is not one this reader knows")
        }
        guard let scheme = DLRTScheme(rawValue: json["scheme"]?.stringValue ?? "") else {
            throw FormatError(.unsupported, file: file, tensor: name, "scheme \(json["scheme"]?.serialized() ?? "missing") is not one this reader knows")
        }
        guard let layout = DLRTLayout(rawValue: json["layout"]?.stringValue ?? "") else {
            throw FormatError(.unsupported, file: file, tensor: name, "layout \(json["layout"]?.serialized() ?? "missing") is not one this reader knows")
        }
        guard let compression = DLRTCompression(rawValue: json["compression"]?.stringValue ?? "") else {
            throw FormatError(.unsupported, file: file, tensor: name, "compression \(json["compression"]?.serialized() ?? "missing") is not one this reader knows")
        }
        guard let digest = json["sha256"]?.stringValue, digest.count == 64 else { throw fail("\"sha256\" must be 64 hex digits") }
        var entry = DLRTTensorEntry(
            name: name, shape: shape, dtype: dtype, scheme: scheme, layout: layout,
            data: DLRTRegion(offset: try int("offset"), bytes: try int("bytes"), sha256: digest),
            rawBytes: try int("raw_bytes"), compression: compression)
        entry.block = try int("block")
        entry.k = try int("k")
        entry.kPadded = try int("k_padded")
        entry.sqnrDB = json["sqnr_db"]?.doubleValue
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
        switch layout {
        case .torch:
            guard entry.rawBytes == count * dtype.byteSize else {
                throw fail("raw_bytes \(entry.rawBytes) ≠ \(count) elements × \(dtype.byteSize)")
            }
        case .rowsK32:
            let k = shape.dropFirst().reduce(1, *)
            guard dtype == .int8, shape.count >= 2, entry.k == k, entry.kPadded >= k, entry.kPadded % DLRT.rowPaddingColumns == 0,
                entry.rawBytes == entry.rows * entry.kPadded
            else { throw fail("rows_k32 fields are inconsistent (k \(entry.k), k_padded \(entry.kPadded), raw_bytes \(entry.rawBytes))") }
        }
        if compression == .none, entry.data.bytes != entry.rawBytes {
            throw fail("uncompressed data of \(entry.data.bytes) bytes, raw_bytes \(entry.rawBytes)")
        }
        if case let .object(scales)? = json["scales"] {
            let object = JSONValue.object(scales)
            guard let sshape = object["shape"]?.intArray, let sdigest = object["sha256"]?.stringValue, sdigest.count == 64 else {
                throw fail("scales need shape and sha256")
            }
            guard object["dtype"]?.stringValue == "F32" else {
                throw FormatError(.unsupported, file: file, tensor: name, "scales dtype \(object["dtype"]?.serialized() ?? "missing") is not F32")
            }
            entry.scales = DLRTRegion(offset: try int("offset", object), bytes: try int("bytes", object), sha256: sdigest)
            entry.scalesShape = sshape
            let expected = scheme == .int8Channel ? [entry.rows] : [entry.rows, entry.block > 0 ? entry.kPadded / entry.block : -1]
            guard sshape == expected, entry.scales!.bytes == sshape.reduce(1, *) * 4 else {
                throw fail("scales shape \(sshape) does not fit scheme \(scheme.rawValue)")
            }
        } else if scheme != .none {
            throw fail("int8 tensor without scales")
        }
        return entry
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
    /// multi-GB file does not make it resident). Tensors are hashed on all cores, largest first;
    /// a failure reports the first bad tensor in file order.
    public func verifyAll() throws {
        let order = entries.indices.sorted { entries[$0].data.bytes > entries[$1].data.bytes }
        let threads = max(1, min(8, ProcessInfo.processInfo.activeProcessorCount, order.count))
        let lock = NSLock()
        var next = 0
        var failures: [(Int, Error)] = []
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            while true {
                lock.lock()
                let taken = next
                next += 1
                lock.unlock()
                guard taken < order.count else { return }
                let index = order[taken]
                do {
                    try verify(entries[index].name, releasePages: true)
                } catch {
                    lock.lock()
                    failures.append((index, error))
                    lock.unlock()
                }
            }
        }
        if let first = failures.min(by: { $0.0 < $1.0 }) { throw first.1 }
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
