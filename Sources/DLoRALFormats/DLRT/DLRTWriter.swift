/// Writes `.dlrt` files, streaming one tensor at a time with bounded memory.
///
/// The metadata (which records every tensor's stored size and digest) comes before the payload,
/// so the writer first sizes an upper bound of the metadata from placeholders as wide as any real
/// value, writes the payload after that reserve, then fills in the metadata and the header.
/// Identical inputs give identical bytes; the file appears only when complete (atomic rename).
public enum DLRTWriter {
    /// A tensor to write: an entry whose storage fields (name, shape, dtype, scheme, layout,
    /// block, k, compression, raw_bytes, scales shape) are set; the writer fills in the regions,
    /// digests and SQNR.
    public typealias Plan = DLRTTensorEntry

    /// What producing a tensor gives: its raw stored bytes, its scales, its SQNR.
    public struct Produced {
        public var data: [UInt8]
        public var scales: [Float]?
        public var sqnrDB: Double?
        public init(data: [UInt8], scales: [Float]? = nil, sqnrDB: Double? = nil) {
            self.data = data
            self.scales = scales
            self.sqnrDB = sqnrDB
        }
    }

    static let placeholderSQNR = "-999999999999999999.9999"

    static func placeholderEntry(_ plan: Plan) -> JSONValue {
        let big = Int.max
        var entry = plan
        entry.data = DLRTRegion(offset: big, bytes: big, sha256: String(repeating: "0", count: 64))
        entry.rawBytes = big
        if !plan.scalesShape.isEmpty {
            entry.scales = DLRTRegion(offset: big, bytes: big, sha256: String(repeating: "0", count: 64))
        }
        return entry.json(sqnrText: placeholderSQNR)
    }

    /// Writes the file. `metadata` holds the top-level keys before `tensors` (§3), in order.
    /// `produce` is called once per plan, in order. Returns the entries as written and the size.
    public static func write(
        to path: String, metadata: [(String, JSONValue)], plans: [Plan],
        produce: @escaping @Sendable (Plan) throws -> Produced,
        progress: ((Plan, Int) -> Void)? = nil
    ) throws -> (entries: [DLRTTensorEntry], fileBytes: Int) {
        let reserve = JSONValue.object(metadata + [("tensors", .array(plans.map(placeholderEntry)))]).serialized().utf8.count
        let payloadOffset = DLRT.alignUp(DLRT.headerBytes + reserve)
        let writer = try AtomicFileWriter(path: path)
        try writer.write([UInt8](repeating: 0, count: payloadOffset))

        var entries: [DLRTTensorEntry] = []
        entries.reserveCapacity(plans.count)
        let zeros = [UInt8](repeating: 0, count: DLRT.alignmentBytes)
        func pad() throws {
            let rest = DLRT.alignUp(writer.bytesWritten) - writer.bytesWritten
            if rest > 0 { try writer.write(Array(zeros[0..<rest])) }
        }
        /// A tensor ready to write: stored bytes with digests, computed on a worker thread.
        struct Prepared {
            var produced: Produced
            var stored: [UInt8]
            var digest: String
            var scaleBytes: [UInt8]?
            var scaleDigest: String?
        }
        try OrderedPipeline.run(count: plans.count, produce: { index -> Prepared in
            let plan = plans[index]
            let produced = try produce(plan)
            guard produced.data.count == plan.rawBytes else {
                throw FormatError(.invalidModel, file: path, tensor: plan.name, "produced \(produced.data.count) bytes, planned \(plan.rawBytes)")
            }
            let stored: [UInt8]
            switch plan.compression {
            case .none: stored = produced.data
            case .zstd: stored = produced.data.withUnsafeBytes { DLRTCodec.compress($0) }
            case .zstdShuffle:
                let shuffled = produced.data.withUnsafeBytes { DLRTCodec.shuffle($0, elementBytes: plan.dtype.byteSize) }
                stored = shuffled.withUnsafeBytes { DLRTCodec.compress($0) }
            }
            var prepared = Prepared(produced: produced, stored: stored, digest: stored.withUnsafeBytes { DLRT.sha256Hex($0) })
            if !plan.scalesShape.isEmpty {
                guard let scales = produced.scales, scales.count == plan.scalesShape.reduce(1, *) else {
                    throw FormatError(.invalidModel, file: path, tensor: plan.name, "scales missing or of the wrong count")
                }
                let bytes = scales.withUnsafeBytes { [UInt8]($0) }
                prepared.scaleBytes = bytes
                prepared.scaleDigest = bytes.withUnsafeBytes { DLRT.sha256Hex($0) }
            }
            return prepared
        }, consume: { index, prepared in
            let plan = plans[index]
            let dataOffset = writer.bytesWritten
            try writer.write(prepared.stored)
            try pad()
            var entry = plan
            entry.data = DLRTRegion(offset: dataOffset, bytes: prepared.stored.count, sha256: prepared.digest)
            entry.sqnrDB = prepared.produced.sqnrDB
            if let bytes = prepared.scaleBytes, let digest = prepared.scaleDigest {
                let scaleOffset = writer.bytesWritten
                try writer.write(bytes)
                try pad()
                entry.scales = DLRTRegion(offset: scaleOffset, bytes: bytes.count, sha256: digest)
            }
            entries.append(entry)
            progress?(plan, prepared.stored.count)
        })

        let metadataBytes = Array(JSONValue.object(metadata + [("tensors", .array(entries.map { $0.json() }))]).serialized().utf8)
        precondition(metadataBytes.count <= reserve, "metadata outgrew its reserve")
        try writer.write(metadataBytes, at: DLRT.headerBytes)
        var header = DLRTHeader()
        // 1.1 adds per-tensor `activations`, 1.2 allows them on `int8_block` tensors; files
        // without them stay 1.0 (or 1.1), readable by older readers.
        if entries.contains(where: { $0.activations != nil && $0.scheme == .int8Block }) {
            header.minor = 2
        } else {
            header.minor = entries.contains { $0.activations != nil } ? 1 : 0
        }
        header.fileBytes = writer.bytesWritten
        header.metadataBytes = metadataBytes.count
        header.payloadOffset = payloadOffset
        header.payloadBytes = writer.bytesWritten - payloadOffset
        header.digest = metadataBytes.withUnsafeBytes { header.computeDigest(metadata: $0) }
        try writer.write(header.encoded(), at: 0)
        let size = writer.bytesWritten
        try writer.commit()
        return (entries, size)
    }
}
