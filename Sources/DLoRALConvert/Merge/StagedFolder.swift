import DLoRALFormats
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An output folder built under a hidden temporary sibling name and renamed into place only
/// when complete, so no run (failed, interrupted) ever leaves a partial `--output` behind.
///
/// The one rename in `commit` is the commit point: before it nothing exists under the final
/// name; after it the whole folder does. Replacing an existing folder (`overwrite`) swaps the
/// two atomically (renameat2 RENAME_EXCHANGE), then removes the old one. SIGINT/SIGTERM/SIGHUP before
/// the commit remove the temporary folder (`FileGuard`); during it they wait for it, and after
/// it the command finishes normally.
public final class StagedFolder {
    public let finalPath: String
    public let temporaryPath: String
    private let overwrite: Bool
    private var committed = false
    /// The temporary folder's entry in the list the signal handlers remove.
    private let guardToken: Int32

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
        if FileGuard.exists(final) && !overwrite {
            throw FormatError(.io, file: final, "already exists; choose another --output or pass --overwrite to replace it")
        }
        var template = Array("\(parent)/.\(name).tmp-XXXXXX".utf8CString)
        let (made, token) = FileGuard.creating { () -> (Bool, Int32) in
            guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else { return (false, -1) }
            return (true, FileGuard.removeOnExit(template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }, kind: .folder))
        }
        guard made else {
            throw FormatError(.io, file: final, "cannot create a folder in \(parent): \(String(cString: strerror(errno)))")
        }
        temporaryPath = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        guardToken = token
        chmod(temporaryPath, 0o755)
    }

    /// Path of `relative` inside the folder being built, creating intermediate folders.
    public func path(_ relative: String) throws -> String {
        let full = temporaryPath + "/" + relative
        let dir = PathName.parent(full)
        do {
            try FileGuard.creating {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            }
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
        // After a swap, `replaced` holds the old folder, removed below.
        let replaced: String? = try FileGuard.publishing(final: true) {
            if FileGuard.renameNoReplace(temporaryPath, finalPath) {
                committed = true
                FileGuard.forget(guardToken)
                return nil
            }
            var reason = errno
            if reason == EEXIST || reason == ENOTEMPTY {
                guard overwrite else {
                    throw FormatError(.io, file: finalPath, "appeared while we were writing; not replacing it (pass --overwrite to replace it)")
                }
                if FileGuard.exchange(temporaryPath, finalPath) {
                    committed = true
                    return temporaryPath
                }
                reason = errno
            }
            guard reason == ENOSYS || reason == EINVAL else {
                throw FormatError(.io, file: finalPath, "cannot move the finished folder into place: \(String(cString: strerror(reason)))")
            }
            // No renameat2 here (old kernel, some network file systems): move the old folder
            // aside, then rename. Interrupts wait for both; only a crash between them leaves
            // the old folder under its hidden name.
            var aside: String?
            if FileGuard.exists(finalPath) {
                guard overwrite else {
                    throw FormatError(.io, file: finalPath, "appeared while we were writing; not replacing it (pass --overwrite to replace it)")
                }
                let moved = "\(parent)/.\(name).old-\(getpid())"
                guard rename(finalPath, moved) == 0 else {
                    throw FormatError(.io, file: finalPath, "cannot move the existing folder aside: \(String(cString: strerror(errno)))")
                }
                aside = moved
            }
            guard rename(temporaryPath, finalPath) == 0 else {
                let failure = String(cString: strerror(errno))
                if let aside { rename(aside, finalPath) }
                throw FormatError(.io, file: finalPath, "cannot move the finished folder into place: \(failure)")
            }
            committed = true
            FileGuard.forget(guardToken)
            return aside
        }
        Self.fsyncPath(parent)
        if let replaced {
            Self.removeTree(replaced)
            FileGuard.forget(guardToken)
        }
    }

    static func removeTree(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    static func fsyncPath(_ path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }

    deinit {
        if !committed {
            Self.removeTree(temporaryPath)
            FileGuard.forget(guardToken)
        }
    }
}
