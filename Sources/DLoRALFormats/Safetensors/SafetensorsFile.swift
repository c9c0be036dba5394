/// A safetensors file, mapped: header parsed and validated, tensors as zero-copy views.
///
/// Validation follows the reference implementation (header ≤ 100 MB and within the file, UTF-8
/// JSON object, `__metadata__` string→string, offsets contiguous from 0 with no gap or overlap,
/// byte size = element count × dtype size with overflow checks, data ending exactly at end of
/// file) and also rejects duplicate names.
public struct SafetensorsFile: Sendable {
    /// Largest header the reference implementation accepts.
    public static let headerLimitBytes = 100_000_000

    public let path: String
    public let file: MappedFile
    public let table: TensorTable
    /// Byte offset in the file where tensor data starts (8 + header length).
    public let dataStart: Int

    public var tensors: TensorTable { table }

    /// Maps and validates `path`.
    /// - Throws: `FormatError` naming the file (and tensor) on any violation.
    public init(path: String) throws {
        let file = try MappedFile(path: path)
        try self.init(file: file)
    }

    public init(file: MappedFile) throws {
        self.path = file.path
        self.file = file
        let path = file.path
        guard file.count >= 8 else {
            throw FormatError(
                .malformed, file: path,
                "file is \(file.count) bytes, too short for a safetensors header (8-byte length + JSON)")
        }
        let headerLength64 = file.loadLE(UInt64.self, at: 0)
        guard headerLength64 <= UInt64(SafetensorsFile.headerLimitBytes) else {
            throw FormatError(
                .malformed, file: path,
                "header length \(headerLength64) bytes exceeds the 100 MB limit; not a safetensors file or corrupted")
        }
        let headerLength = Int(headerLength64)
        guard 8 + headerLength <= file.count else {
            throw FormatError(
                .malformed, file: path,
                "header length \(headerLength) runs past the end of the \(file.count)-byte file (truncated?)")
        }
        let headerBytes = UnsafeRawBufferPointer(rebasing: file.bytes[8..<(8 + headerLength)])
        let header: JSONValue
        do {
            header = try StrictJSONParser.parse(headerBytes)
        } catch let failure as StrictJSONParser.Failure {
            if let key = failure.duplicateKey {
                if let entry = failure.duplicateKeyPath.first {
                    throw FormatError(.malformed, file: path, tensor: entry, "the key \"\(key)\" appears twice in this tensor's header entry; each key may appear once")
                }
                throw FormatError(.malformed, file: path, tensor: key, "the name appears twice in the header; each tensor name must be unique")
            }
            throw FormatError(.malformed, file: path, "header is not valid JSON: \(failure.reason) at header byte \(failure.offset)")
        }
        guard case let .object(entries) = header else {
            throw FormatError(.malformed, file: path, "header must be a JSON object")
        }
        dataStart = 8 + headerLength
        let dataLength = file.count - dataStart

        var table = TensorTable()
        struct Span { let name: String; let begin: Int; let end: Int; let dtype: DType; let shape: [Int] }
        var spans: [Span] = []
        spans.reserveCapacity(entries.count)
        for (name, value) in entries {
            if name == "__metadata__" {
                guard case let .object(pairs) = value else {
                    throw FormatError(.malformed, file: path, "__metadata__ must be an object of strings")
                }
                for (key, item) in pairs {
                    guard let text = item.stringValue else {
                        throw FormatError(
                            .malformed, file: path,
                            "__metadata__ value for '\(key)' is not a string (safetensors metadata is string→string)")
                    }
                    table.metadata[key] = text
                }
                continue
            }
            guard case .object = value else {
                throw FormatError(.malformed, file: path, tensor: name, "header entry is not an object")
            }
            guard let dtypeName = value["dtype"]?.stringValue else {
                throw FormatError(.malformed, file: path, tensor: name, "missing \"dtype\"")
            }
            guard let dtype = DType(rawValue: dtypeName) else {
                throw FormatError(
                    .unsupported, file: path, tensor: name,
                    "dtype \"\(dtypeName)\" is not supported (expected one of \(DType.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            guard let shapeValues = value["shape"]?.arrayValue else {
                throw FormatError(.malformed, file: path, tensor: name, "missing \"shape\" array")
            }
            var shape: [Int] = []
            for dim in shapeValues {
                guard let d = dim.intValue, d >= 0 else {
                    throw FormatError(.malformed, file: path, tensor: name, "shape entries must be non-negative integers that fit in 64 bits")
                }
                shape.append(d)
            }
            guard let offsets = value["data_offsets"]?.arrayValue, offsets.count == 2,
                let begin = offsets[0].intValue, let end = offsets[1].intValue, begin >= 0, end >= begin
            else {
                throw FormatError(.malformed, file: path, tensor: name, "\"data_offsets\" must be [begin, end] with 0 ≤ begin ≤ end")
            }
            guard let expected = checkedByteCount(shape, dtype) else {
                throw FormatError(.malformed, file: path, tensor: name, "shape \(shape) × \(dtype.rawValue) overflows 64-bit size")
            }
            guard expected == end - begin else {
                throw FormatError(
                    .malformed, file: path, tensor: name,
                    "data_offsets span \(end - begin) bytes but shape \(shape) × \(dtype.rawValue) needs \(expected)")
            }
            spans.append(Span(name: name, begin: begin, end: end, dtype: dtype, shape: shape))
        }

        // Offsets must tile [0, dataLength) exactly.
        let ordered = spans.sorted { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var cursor = 0
        for span in ordered {
            if span.begin > cursor {
                throw FormatError(.malformed, file: path, tensor: span.name, "gap in tensor data: data starts at \(span.begin), previous tensor ended at \(cursor)")
            }
            if span.begin < cursor {
                throw FormatError(.malformed, file: path, tensor: span.name, "tensor data overlaps the previous tensor (starts at \(span.begin), previous ended at \(cursor))")
            }
            cursor = span.end
        }
        guard cursor == dataLength else {
            if cursor > dataLength {
                throw FormatError(.malformed, file: path, "tensor data needs \(cursor) bytes but only \(dataLength) follow the header (truncated?)")
            }
            throw FormatError(.malformed, file: path, "\(dataLength - cursor) bytes after the last tensor; data must end exactly at end of file")
        }

        for span in spans {
            let storage = TensorStorage(file: file, offset: dataStart + span.begin, count: span.end - span.begin)
            try table.insert(span.name, TensorView(dtype: span.dtype, shape: span.shape, storage: storage), file: path)
        }
        self.table = table
    }
}
