#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Resolves ONNX external data references (`location`, `offset`, `length`, `checksum`) to
/// zero-copy views, mapping each distinct file once.
///
/// A location is a path relative to the model's folder. Absolute paths, and paths that leave the
/// folder once `..` and symbolic links are resolved, are refused (`.unsafe`): a model file must
/// not be able to make us read arbitrary files.
struct ExternalDataResolver {
    let modelPath: String
    let folder: String
    /// Mapped files in first-use order, and their index by resolved path.
    private(set) var files: [MappedFile] = []
    private var indexByResolvedPath: [String: Int] = [:]
    private var realFolder: String?

    init(modelPath: String) {
        self.modelPath = modelPath
        folder = AtomicFileWriter.split(modelPath).0
    }

    mutating func storage(
        for tensor: String, entries: [(String, String)], expectedBytes: Int, shape: [Int], dtype: DType
    ) throws -> TensorStorage {
        func fail(_ kind: FormatError.Kind, _ message: String) -> FormatError {
            FormatError(kind, file: modelPath, tensor: tensor, message)
        }
        var location: String?
        var offset: Int?
        var length: Int?
        for (key, value) in entries {
            switch key {
            case "location":
                guard location == nil else { throw fail(.malformed, "external_data lists 'location' twice") }
                location = value
            case "offset", "length":
                guard let number = Int(value), number >= 0 else {
                    throw fail(
                        .malformed, "external_data '\(key)' is \"\(value)\", expected a non-negative integer")
                }
                if key == "offset" {
                    guard offset == nil else { throw fail(.malformed, "external_data lists 'offset' twice") }
                    offset = number
                } else {
                    guard length == nil else { throw fail(.malformed, "external_data lists 'length' twice") }
                    length = number
                }
            default:
                // `checksum` (an optional SHA-1) and any future keys do not change where data is.
                continue
            }
        }
        guard let location, !location.isEmpty else {
            throw fail(.malformed, "data_location is EXTERNAL but external_data has no 'location'")
        }
        let (resolved, shown) = try resolve(location, tensor: tensor)

        let file: MappedFile
        if let index = indexByResolvedPath[resolved] {
            file = files[index]
        } else {
            do {
                file = try MappedFile(path: resolved)
            } catch let error as FormatError {
                throw fail(.io, "cannot read external data file '\(location)' (\(shown)): \(error.message)")
            }
            indexByResolvedPath[resolved] = files.count
            files.append(file)
        }

        let start = offset ?? 0
        guard start <= file.count else {
            throw fail(
                .malformed,
                "external data offset \(start) is past the end of '\(location)' (\(file.count) bytes)")
        }
        // Without `length` ONNX reads to the end of the file.
        let count = length ?? (file.count - start)
        guard count <= file.count - start else {
            throw fail(
                .malformed,
                "external data offset \(start) + length \(count) runs past the end of '\(location)' (\(file.count) bytes; truncated?)")
        }
        guard count == expectedBytes else {
            throw fail(
                .malformed,
                "external data in '\(location)' has \(count) bytes but shape \(shape) × \(dtype.rawValue) needs \(expectedBytes)")
        }
        return TensorStorage(file: file, offset: start, count: count, origin: "\(shown)@\(start)")
    }

    /// Returns the canonical path of `location` and the path to show in messages.
    private mutating func resolve(_ location: String, tensor: String) throws -> (String, String) {
        func unsafe(_ why: String) -> FormatError {
            FormatError(
                .unsafe, file: modelPath, tensor: tensor,
                "external data location '\(location)' \(why); it must be a relative path inside the model's folder")
        }
        if location.hasPrefix("/") {
            throw unsafe("is an absolute path")
        }
        if location.utf8.contains(0) {
            throw unsafe("contains a NUL byte")
        }
        // Lexical check first, so `../x` is refused even when it does not exist.
        var depth = 0
        for component in location.split(separator: "/", omittingEmptySubsequences: true) {
            if component == "." { continue }
            if component == ".." {
                depth -= 1
                if depth < 0 { throw unsafe("leaves the model's folder") }
            } else {
                depth += 1
            }
        }
        let joined = folder == "/" ? "/\(location)" : "\(folder)/\(location)"

        if realFolder == nil {
            guard let real = ExternalDataResolver.realPath(folder) else {
                throw FormatError(
                    .io, file: modelPath, tensor: tensor,
                    "cannot resolve the model's folder '\(folder)': \(String(cString: strerror(errno)))")
            }
            realFolder = real
        }
        let root = realFolder!
        guard let real = ExternalDataResolver.realPath(joined) else {
            let reason = String(cString: strerror(errno))
            throw FormatError(
                .io, file: modelPath, tensor: tensor,
                "external data file '\(location)' (\(joined)) cannot be opened: \(reason)")
        }
        let prefix = root.hasSuffix("/") ? root : root + "/"
        // The folder itself is inside (and is then refused by the mapping as not a regular file).
        guard real == root || real.hasPrefix(prefix) else {
            throw unsafe("resolves (following symbolic links) to \(real), outside \(root)")
        }
        return (real, joined)
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
