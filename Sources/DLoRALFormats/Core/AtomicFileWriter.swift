import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a file atomically: a hidden temporary sibling, fsync, rename into place.
///
/// Until `commit()` nothing exists under the final name; if the writer is dropped without
/// committing (an error, a thrown check) the temporary file is removed, and so it is on SIGINT, SIGHUP,
/// SIGTERM or a mapped input failing (see `FileGuard`). A SIGKILL can leave only the hidden
/// temporary (`.NAME.tmp-XXXXXX`), never a half-written output.
public final class AtomicFileWriter {
    public let finalPath: String
    public let temporaryPath: String
    private var fd: Int32
    private var committed = false
    public private(set) var bytesWritten = 0
    /// Bytes already handed to the kernel for writeback (see `write`).
    private var writebackStarted = 0
    /// How much is written between writeback requests.
    private static let writebackChunkBytes = 64 << 20

    public init(path: String) throws {
        finalPath = path
        let (dir, base) = AtomicFileWriter.split(path)
        var template = Array("\(dir)/.\(base).tmp-XXXXXX".utf8CString)
        let (fd, token) = FileGuard.creating { () -> (Int32, Int32) in
            let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
            guard fd >= 0 else { return (fd, -1) }
            return (fd, FileGuard.removeOnExit(template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }, kind: .file))
        }
        guard fd >= 0 else {
            throw FormatError(.io, file: path, "cannot create a temporary file in \(dir): \(String(cString: strerror(errno)))")
        }
        temporaryPath = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        guardToken = token
        fchmod(fd, 0o644)
        self.fd = fd
    }

    /// The temporary file's entry in the list the signal handlers remove.
    private var guardToken: Int32 = -1

    /// Splits a path into its folder ("." when none) and last component.
    public static func split(_ path: String) -> (String, String) {
        if let slash = path.lastIndex(of: "/") {
            let dir = String(path[..<slash])
            return (dir.isEmpty ? "/" : dir, String(path[path.index(after: slash)...]))
        }
        return (".", path)
    }

    /// Appends bytes, retrying short writes.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard var base = bytes.baseAddress else { return }
        var remaining = bytes.count
        while remaining > 0 {
            let n = Glibc.write(fd, base, min(remaining, 1 << 30))
            if n < 0 {
                if errno == EINTR { continue }
                // write(2) reading from a mapping whose file shrank fails with EFAULT instead of
                // the reader's SIGBUS: the input changed, not the output.
                if errno == EFAULT {
                    if let input = FileGuard.mappedInput(holding: base, count: remaining) {
                        throw FormatError(.io, file: input, FileGuard.changedWhileRead)
                    }
                    throw FormatError(.io, file: finalPath, "write failed after \(bytesWritten) bytes: an input file changed while being read (make sure nothing else writes to the inputs, then run again)")
                }
                throw FormatError(.io, file: finalPath, "write failed after \(bytesWritten) bytes: \(String(cString: strerror(errno)))")
            }
            base += n
            remaining -= n
            bytesWritten += n
        }
        // Start writeback of what is written so far, so that the fsync in `commit` waits only
        // for the tail instead of the whole file (a multi-GB output otherwise stalls there).
        if bytesWritten - writebackStarted >= Self.writebackChunkBytes {
            posix_fadvise(fd, off_t(writebackStarted), off_t(bytesWritten - writebackStarted), Int32(POSIX_FADV_DONTNEED))
            writebackStarted = bytesWritten
        }
    }

    /// Overwrites bytes already written (to fill in a header once the payload is known).
    public func write(_ bytes: [UInt8], at offset: Int) throws {
        precondition(offset + bytes.count <= bytesWritten, "patch must lie inside what is written")
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, bytes.count - done, off_t(offset + done)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FormatError(.io, file: finalPath, "write failed at offset \(offset + done): \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    public func write(_ text: String) throws {
        try write(Array(text.utf8))
    }

    /// Flushes to disk and renames into place.
    public func commit() throws {
        try commit(final: FileGuard.isFinal(finalPath))
    }

    /// - Parameter final: the file completes the command's output (later interrupts are then
    ///   ignored); false for one of many files a command writes one by one (each frame of a clip),
    ///   after which an interrupt still stops the command.
    public func commit(final: Bool) throws {
        guard fsync(fd) == 0 else {
            throw FormatError(.io, file: finalPath, "fsync failed: \(String(cString: strerror(errno)))")
        }
        close(fd)
        fd = -1
        // The rename publishes the file; an interrupt meanwhile waits for it, so the message
        // and exit code match what exists afterwards.
        try FileGuard.publishing(final: final) {
            guard rename(temporaryPath, finalPath) == 0 else {
                let reason = String(cString: strerror(errno))
                unlink(temporaryPath)
                FileGuard.forget(guardToken)
                throw FormatError(.io, file: finalPath, "cannot rename into place: \(reason)")
            }
            committed = true
            FileGuard.forget(guardToken)
        }
        let (dir, _) = AtomicFileWriter.split(finalPath)
        let dirFD = open(dir, O_RDONLY | O_DIRECTORY)
        if dirFD >= 0 {
            fsync(dirFD)
            close(dirFD)
        }
    }

    deinit {
        if fd >= 0 { close(fd) }
        if !committed {
            unlink(temporaryPath)
            FileGuard.forget(guardToken)
        }
    }
}
