import DLoRALFormats
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An output folder built under a hidden temporary sibling name and renamed into place only
/// when complete, so no run (failed, interrupted) ever leaves a partial `--output` behind.
public final class StagedFolder {
    public let finalPath: String
    public let temporaryPath: String
    private let overwrite: Bool
    private var committed = false

    /// Temporary folders still being built, removed by `removeAllInProgress()` on SIGINT/SIGTERM.
    nonisolated(unsafe) private static var inProgress = Set<String>()
    private static let lock = NSLock()

    public init(path: String, overwrite: Bool) throws {
        var final = path
        while final.count > 1 && final.hasSuffix("/") { final.removeLast() }
        finalPath = final
        self.overwrite = overwrite
        let (parent, name) = AtomicFileWriter.split(final)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: parent, isDirectory: &isDir), isDir.boolValue else {
            throw FormatError(.io, file: final, "the folder it would go in (\(parent)) does not exist")
        }
        if FileManager.default.fileExists(atPath: final) && !overwrite {
            throw FormatError(.io, file: final, "already exists; choose another --output or pass --overwrite to replace it")
        }
        var template = Array("\(parent)/.\(name).tmp-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw FormatError(.io, file: final, "cannot create a folder in \(parent): \(String(cString: strerror(errno)))")
        }
        temporaryPath = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        chmod(temporaryPath, 0o755)
        Self.lock.lock()
        Self.inProgress.insert(temporaryPath)
        Self.lock.unlock()
    }

    /// Path of `relative` inside the folder being built, creating intermediate folders.
    public func path(_ relative: String) throws -> String {
        let full = temporaryPath + "/" + relative
        let dir = (full as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw FormatError(.io, file: finalPath, "cannot create \(relative)'s folder: \(error.localizedDescription)")
        }
        return full
    }

    /// Moves the finished folder into place (replacing an old one if allowed).
    public func commit() throws {
        let (parent, name) = AtomicFileWriter.split(finalPath)
        for sub in (try? FileManager.default.subpathsOfDirectory(atPath: temporaryPath)) ?? [] {
            Self.fsyncPath(temporaryPath + "/" + sub)
        }
        Self.fsyncPath(temporaryPath)
        var old: String?
        if FileManager.default.fileExists(atPath: finalPath) {
            guard overwrite else {
                throw FormatError(.io, file: finalPath, "appeared while we were writing; not replacing it")
            }
            let moved = "\(parent)/.\(name).old-\(getpid())"
            guard rename(finalPath, moved) == 0 else {
                throw FormatError(.io, file: finalPath, "cannot move the existing folder aside: \(String(cString: strerror(errno)))")
            }
            old = moved
        }
        guard rename(temporaryPath, finalPath) == 0 else {
            let reason = String(cString: strerror(errno))
            if let old { rename(old, finalPath) }
            throw FormatError(.io, file: finalPath, "cannot rename the finished folder into place: \(reason)")
        }
        committed = true
        Self.lock.lock()
        Self.inProgress.remove(temporaryPath)
        Self.lock.unlock()
        Self.fsyncPath(parent)
        if let old { try? FileManager.default.removeItem(atPath: old) }
    }

    static func fsyncPath(_ path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }

    deinit {
        if !committed {
            try? FileManager.default.removeItem(atPath: temporaryPath)
            Self.lock.lock()
            Self.inProgress.remove(temporaryPath)
            Self.lock.unlock()
        }
    }

    /// Removes every folder still being built (called on SIGINT / SIGTERM before exiting).
    public static func removeAllInProgress() {
        lock.lock()
        let paths = inProgress
        lock.unlock()
        for path in paths { try? FileManager.default.removeItem(atPath: path) }
    }
}
