import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Checks that an output path can be written without destroying an input: it must not be an
/// input, lie inside an input folder, contain an input, or be a hard link to an input file.
/// Paths are compared after resolving symlinks, `.` and `..` (realpath), so spelling the same
/// place differently does not get past the check.
public enum OutputPath {
    /// - Parameters:
    ///   - output: the path the command will write (file or folder).
    ///   - option: how the user named it, for the message ("--output", "--report").
    ///   - inputs: every file or folder the command reads.
    ///   - overwrite: nil to skip the existence check; false refuses an existing output.
    ///   - replacesFolder: the output replaces whatever is at its path as a whole (so it must not
    ///     contain an input); false for a folder the command only adds files to.
    ///   - isFile: the output is a file put in place by a rename, which cannot replace a folder:
    ///     an existing folder there is refused up front, even with --overwrite.
    /// - Throws: `FormatError` (`.unsafe`, or `.io` for an existing output) naming both paths.
    public static func check(_ output: String, option: String = "--output", inputs: [String], overwrite: Bool?,
                             replacesFolder: Bool = true, isFile: Bool = false) throws {
        let outputReal = resolve(output)
        var outputInfo = stat()
        let outputExists = stat(output, &outputInfo) == 0
        for input in inputs where !input.isEmpty {
            guard let inputReal = realPath(input) else { continue }
            if outputReal == inputReal {
                throw FormatError(.unsafe, file: output, "\(option) is the input \(input); writing it would destroy that input — choose another \(option)")
            }
            if outputReal.hasPrefix(inputReal.hasSuffix("/") ? inputReal : inputReal + "/") {
                throw FormatError(.unsafe, file: output, "\(option) lies inside the input folder \(input); write it elsewhere so the input stays intact")
            }
            if replacesFolder, inputReal.hasPrefix(outputReal.hasSuffix("/") ? outputReal : outputReal + "/") {
                throw FormatError(.unsafe, file: output, "\(option) contains the input \(input); replacing it would destroy that input — choose another \(option)")
            }
            if outputExists, let link = sameFile(outputInfo, under: input) {
                throw FormatError(.unsafe, file: output, "\(option) is the same file as the input \(link) (a hard link); choose another \(option)")
            }
        }
        if isFile, outputExists, (outputInfo.st_mode & S_IFMT) == S_IFDIR {
            throw FormatError(.io, file: output, "is a folder; the output is a file and cannot replace a folder — choose another \(option) (a file path) or remove that folder")
        }
        if overwrite == false {
            var info = stat()
            if lstat(output, &info) == 0 {
                throw FormatError(.io, file: output, "already exists; choose another \(option) or pass --overwrite to replace it")
            }
        }
    }

    /// realpath(3), or nil if the path does not exist.
    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// The real path of `path`, or for a path that does not exist yet, the real path of the
    /// deepest existing folder above it plus the rest.
    static func resolve(_ path: String) -> String {
        if let real = realPath(path) { return real }
        var components: [String] = []
        var current = path
        while !current.isEmpty && current != "/" {
            components.insert(PathName.last(current), at: 0)
            let parent = PathName.parent(current)
            if let real = realPath(parent.isEmpty ? "." : parent) {
                return ([real == "/" ? "" : real] + components).joined(separator: "/")
            }
            current = parent
        }
        return path
    }

    /// An input file (or a file under an input folder) that is `info`'s file (same device and
    /// inode), if any.
    static func sameFile(_ info: stat, under input: String) -> String? {
        var inputInfo = stat()
        guard stat(input, &inputInfo) == 0 else { return nil }
        if (inputInfo.st_mode & S_IFMT) == S_IFREG {
            return inputInfo.st_dev == info.st_dev && inputInfo.st_ino == info.st_ino ? input : nil
        }
        guard (inputInfo.st_mode & S_IFMT) == S_IFDIR, (info.st_mode & S_IFMT) == S_IFREG,
              let walker = FileManager.default.enumerator(atPath: input) else { return nil }
        var visited = 0
        while let relative = walker.nextObject() as? String, visited < 10_000 {
            visited += 1
            let path = (input as NSString).appendingPathComponent(relative)
            var entry = stat()
            if stat(path, &entry) == 0, (entry.st_mode & S_IFMT) == S_IFREG,
               entry.st_dev == info.st_dev, entry.st_ino == info.st_ino {
                return path
            }
        }
        return nil
    }
}
