import DLoRALFormats
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// ffmpeg and ffprobe, run as subprocesses: video frames go through them as raw RGB
/// on a pipe, so no codec library is linked in.
public enum ExternalProgram {
    /// The executable `name` on PATH, or nil.
    public static func find(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for folder in path.split(separator: ":") where !folder.isEmpty {
            let candidate = "\(folder)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// The executable, or an error naming the program, why it is needed and how to install it.
    /// - Parameter instead: what works without it.
    public static func require(_ name: String, for file: String, purpose: String,
                               instead: String = "give a folder of PNG or JPEG frames") throws -> String {
        if let found = find(name) { return found }
        throw FormatError(.io, file: file, "\(purpose) needs \(name), which is not on PATH; install it (Debian/Ubuntu: apt-get install ffmpeg) or \(instead)")
    }

    /// Runs to completion and returns stdout; a non-zero exit is an error quoting its stderr.
    public static func output(_ executable: String, _ arguments: [String], file: String, what: String) throws -> Data {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch {
            throw FormatError(.io, file: file, "cannot start \(executable) to \(what): \(error.localizedDescription)")
        }
        let errText = Collector(err.fileHandleForReading)
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0, process.terminationReason == .exit else {
            throw FormatError(.malformed, file: file, "\(PathName.last(executable)) could not \(what): \(errText.text.isEmpty ? "exit status \(process.terminationStatus)" : errText.text)")
        }
        return data
    }

    /// Reads a pipe to its end on another thread (a subprocess blocked on a full stderr pipe
    /// would never finish).
    final class Collector: @unchecked Sendable {
        private var data = Data()
        private let done = DispatchSemaphore(value: 0)

        init(_ handle: FileHandle) {
            DispatchQueue.global().async {
                self.data = handle.readDataToEndOfFile()
                self.done.signal()
            }
        }

        /// Waits for the end of the stream; its last lines, trimmed, on one line.
        var text: String {
            done.wait()
            done.signal()
            let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").suffix(3)
            return lines.joined(separator: " / ").trimmingCharacters(in: .whitespaces)
        }
    }

    /// Reads exactly `count` bytes from `fd`; fewer only at the end of the stream.
    static func readFully(_ fd: Int32, into buffer: inout [UInt8], count: Int) throws -> Int {
        var done = 0
        try buffer.withUnsafeMutableBytes { raw in
            while done < count {
                let n = read(fd, raw.baseAddress! + done, count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw FormatError(.io, file: "ffmpeg", "reading decoded frames failed: \(String(cString: strerror(errno)))")
                }
                if n == 0 { break }
                done += n
            }
        }
        return done
    }

    /// Writes all of `bytes` to `fd`.
    static func writeFully(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var done = 0
        return bytes.withUnsafeBytes { raw in
            while done < bytes.count {
                let n = write(fd, raw.baseAddress! + done, bytes.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                done += n
            }
            return true
        }
    }
}
