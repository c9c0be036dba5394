import CFileGuard
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process-wide registries the signal handlers of `CFileGuard` read: mapped inputs (a
/// SIGBUS in one becomes exit 2 "changed while being read") and temporary outputs (removed
/// before exiting on SIGINT/SIGTERM/SIGHUP or such a SIGBUS).
public enum FileGuard {
    /// Installs the handlers; `tool` prefixes their messages ("dloral-convert: error: ...").
    /// With `interrupts`, SIGINT/SIGTERM/SIGHUP remove every temporary output, print "interrupted; no
    /// output written" and exit 128 + signal, unless the output is already published.
    public static func install(tool: String, interrupts: Bool) {
        dlg_install(tool, interrupts ? 1 : 0)
    }

    static func mapped(_ bytes: UnsafeRawBufferPointer, path: String) -> Int32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return -1 }
        return dlg_map_add(base, bytes.count, path)
    }

    static func unmapped(_ slot: Int32) { dlg_map_remove(slot) }

    /// The mapped input holding any of `bytes`, if they come from one.
    static func mappedInput(holding bytes: UnsafeRawPointer, count: Int) -> String? {
        guard let path = dlg_map_path_overlapping(bytes, count) else { return nil }
        defer { free(path) }
        return String(cString: path)
    }

    /// What a process that was reading a mapped input says when that input shrank or failed.
    static let changedWhileRead = "changed while being read (the file shrank or became unreadable while it was mapped; make sure nothing else writes to it, then run again)"

    public enum TemporaryKind {
        case file, folder, scratch
        var raw: Int32 {
            switch self {
            case .file: Int32(DLG_TEMP_FILE)
            case .folder: Int32(DLG_TEMP_FOLDER)
            case .scratch: Int32(DLG_SCRATCH)
            }
        }
    }

    /// Registers a temporary output to remove if the process is interrupted; returns a token
    /// for `forget`.
    @discardableResult
    public static func removeOnExit(_ path: String, kind: TemporaryKind) -> Int32 {
        dlg_temp_add(path, kind.raw)
    }

    public static func forget(_ token: Int32) { dlg_temp_remove(token) }

    /// Runs `create` (creating a temporary output or something inside one, and registering it)
    /// so that an interrupt cannot miss it: the exiting handler waits for it first, and once an
    /// interrupt is being handled this never returns.
    public static func creating<T>(_ create: () throws -> T) rethrows -> T {
        dlg_create_begin()
        defer { dlg_create_end() }
        return try create()
    }

    /// Runs `publish` (the rename that makes an output visible) with interrupts deferred.
    /// `final`: the output is then complete; later interrupts let the command finish.
    public static func publishing<T>(final: Bool, _ publish: () throws -> T) rethrows -> T {
        dlg_commit_begin()
        var published = false
        defer { dlg_commit_end(published && final ? 1 : 0) }
        let result = try publish()
        published = true
        return result
    }

    /// True if publishing `destination` completes the command's output (not a scratch file,
    /// not a file inside a folder still being built).
    public static func isFinal(_ destination: String) -> Bool {
        dlg_is_final_destination(destination) != 0
    }

    /// Before exiting on our own: waits for (never returns from) an interrupt being handled,
    /// so the exit code and message are the true ones.
    public static func finish() { dlg_finish() }

    /// Atomically swaps two paths (renameat2 RENAME_EXCHANGE); false with errno if unsupported.
    public static func exchange(_ a: String, _ b: String) -> Bool { dlg_rename_exchange(a, b) == 0 }

    /// Renames unless `to` exists (renameat2 RENAME_NOREPLACE); false with errno.
    public static func renameNoReplace(_ from: String, _ to: String) -> Bool { dlg_rename_noreplace(from, to) == 0 }
}

/// Opening input files without ever blocking: a FIFO (or a device) in place of an input would
/// make open(2) or read(2) wait forever.
public enum RegularFile {
    /// Opens `path` read-only if it is a regular file (after following symlinks).
    /// - Throws: `FormatError` (`.io`) naming the file if it cannot be opened or is not a regular file.
    public static func open(_ path: String, purpose: String = "open") throws -> Int32 {
        // O_NONBLOCK: open(2) of a FIFO with no writer returns at once instead of waiting.
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            // open(2) of a socket fails (ENXIO) before fstat could say what the path is.
            var info = stat()
            if stat(path, &info) == 0, (info.st_mode & S_IFMT) != S_IFREG {
                throw FormatError(.io, file: path, "is not a regular file (\(describe(info.st_mode))); give a file")
            }
            throw FormatError(.io, file: path, "cannot \(purpose): \(reason)")
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw FormatError(.io, file: path, "cannot stat: \(reason)")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw FormatError(.io, file: path, "is not a regular file (\(describe(info.st_mode))); give a file")
        }
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
        return fd
    }

    static func describe(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: "a folder"
        case S_IFIFO: "a FIFO"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        default: "not a plain file"
        }
    }
}

extension FileGuard {
    /// True if something (even a dangling symlink) is at `path`.
    public static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }
}
