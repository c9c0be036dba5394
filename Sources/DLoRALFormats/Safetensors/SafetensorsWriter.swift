/// Writes safetensors files with deterministic bytes, streaming one tensor at a time.
///
/// Layout: tensors ordered by element size (largest first) then by name, so every tensor is
/// aligned to its element size; the JSON header is padded with spaces so tensor data starts at
/// a multiple of `alignmentBytes` in the file. The same entries and bytes always give the same
/// file. The output is written atomically.
public enum SafetensorsWriter {
    public static let alignmentBytes = 64

    /// One tensor to write: its name, dtype, shape.
    public struct Entry: Sendable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        public init(name: String, dtype: DType, shape: [Int]) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
        }
        public var byteCount: Int { checkedByteCount(shape, dtype) ?? 0 }
    }

    /// The order tensors are stored in.
    public static func storageOrder(_ entries: [Entry]) -> [Entry] {
        entries.sorted { a, b in
            a.dtype.byteSize != b.dtype.byteSize ? a.dtype.byteSize > b.dtype.byteSize : a.name < b.name
        }
    }

    /// The header bytes (length prefix included) for `entries` in storage order.
    public static func header(entries ordered: [Entry], metadata: [(String, String)]) -> [UInt8] {
        var pairs: [(String, JSONValue)] = []
        if !metadata.isEmpty {
            pairs.append(("__metadata__", .object(metadata.sorted { $0.0 < $1.0 }.map { ($0.0, .string($0.1)) })))
        }
        var offset = 0
        for entry in ordered {
            let size = entry.byteCount
            pairs.append((entry.name, .object([
                ("dtype", .string(entry.dtype.rawValue)),
                ("shape", .array(entry.shape.map { .number(String($0)) })),
                ("data_offsets", .array([.number(String(offset)), .number(String(offset + size))])),
            ])))
            offset += size
        }
        var json = Array(JSONValue.object(pairs).serialized().utf8)
        let padded = (8 + json.count + alignmentBytes - 1) / alignmentBytes * alignmentBytes - 8
        json.append(contentsOf: repeatElement(UInt8(ascii: " "), count: padded - json.count))
        var out = [UInt8]()
        out.reserveCapacity(8 + json.count)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: json)
        return out
    }

    /// Writes `entries` to `path`; `produce` is called once per entry, in storage order, and
    /// must pass exactly that entry's bytes (row-major, little-endian) to `sink`, in one or more
    /// calls.
    public static func write(
        to path: String,
        entries: [Entry],
        metadata: [(String, String)] = [],
        produce: (Entry, (UnsafeRawBufferPointer) throws -> Void) throws -> Void
    ) throws {
        var seen = Set<String>()
        for entry in entries {
            guard seen.insert(entry.name).inserted else {
                throw FormatError(.invalidModel, file: path, tensor: entry.name, "two tensors to write share this name")
            }
            guard checkedByteCount(entry.shape, entry.dtype) != nil else {
                throw FormatError(.invalidModel, file: path, tensor: entry.name, "shape \(entry.shape) overflows")
            }
        }
        let ordered = storageOrder(entries)
        let writer = try AtomicFileWriter(path: path)
        try writer.write(header(entries: ordered, metadata: metadata))
        for entry in ordered {
            let before = writer.bytesWritten
            try produce(entry) { try writer.write($0) }
            let written = writer.bytesWritten - before
            guard written == entry.byteCount else {
                throw FormatError(.invalidModel, file: path, tensor: entry.name, "produced \(written) bytes, expected \(entry.byteCount)")
            }
        }
        try writer.commit()
    }

    /// Writes in-memory views (converted to each entry's dtype is the caller's business: views
    /// are written as stored, made contiguous).
    public static func write(to path: String, tensors: TensorTable) throws {
        let entries = tensors.tensors.map { Entry(name: $0.key, dtype: $0.value.dtype, shape: $0.value.shape) }
        try write(to: path, entries: entries, metadata: Array(tensors.metadata.elements.map { ($0.key, $0.value) })) { entry, sink in
            let view = tensors[entry.name]!
            if let bytes = view.contiguousBytes {
                try sink(bytes)
            } else {
                try view.contiguousData().withUnsafeBytes { try sink($0) }
            }
        }
    }
}
