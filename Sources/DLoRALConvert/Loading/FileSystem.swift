import DLoRALFormats
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Small file-system questions the readers ask, in one place.
enum FileSystem {
    static func isDirectory(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
    }

    static func exists(_ path: String) -> Bool {
        FileManager.default.fileExists(atPath: path)
    }

    static func join(_ a: String, _ b: String) -> String {
        a.hasSuffix("/") ? a + b : a + "/" + b
    }

    static func contents(_ path: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
    }

    /// The first bytes of a file (fewer if it is shorter).
    /// - Throws: `FormatError` if it cannot be opened or is not a regular file (a FIFO would
    ///   otherwise block forever).
    static func prefix(_ path: String, count: Int) throws -> [UInt8] {
        let fd = try RegularFile.open(path)
        defer { close(fd) }
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(done)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            done += n
        }
        return Array(out[..<done])
    }

    /// True if `name` is a plain file name: no folder part, not `.`/`..`.
    static func isPlainFileName(_ name: String) -> Bool {
        !name.isEmpty && !name.contains("/") && name != "." && name != ".." && !name.contains("\0")
    }

    /// `file`'s name as provenance records it: relative to the input it belongs to, led by that
    /// input's own name (`base/unet/config.json`, `model.pkl`), so the record depends on what
    /// was read and never on the working directory or the folders above the input.
    static func provenanceName(_ file: String, root: String) -> String {
        var folder = root
        while folder.count > 1 && folder.hasSuffix("/") { folder.removeLast() }
        let rootName = PathName.last(folder)
        if file != folder, file.hasPrefix(folder + "/") {
            let inside = file.dropFirst(folder.count).drop { $0 == "/" }
            let parts = inside.split(separator: "/").filter { $0 != "." }
            return ([rootName] + parts.map(String.init)).joined(separator: "/")
        }
        return PathName.last(file)
    }
}
