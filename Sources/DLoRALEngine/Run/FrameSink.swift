import DLoRALFormats
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where restored frames go, one at a time.
public protocol FrameSink: AnyObject {
    /// True if the frame is already there, complete (for `--resume`).
    func exists(name: String) -> Bool
    /// Writes one frame; returns its path (or the video's).
    func write(_ image: RGBImage, name: String) throws -> String
    /// Completes the output (a video is closed and renamed into place); returns every path written.
    func finish() throws -> [String]
}

/// A folder: each frame a PNG written atomically (hidden temporary, fsync, rename), so a frame is
/// either complete or absent, whatever stops the run.
public final class FolderSink: FrameSink {
    public let folder: String
    var written: [String] = []

    public init(folder: String) throws {
        self.folder = folder
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw FormatError(.io, file: folder, "cannot create the output folder: \(error.localizedDescription)")
        }
    }

    public func path(_ name: String) -> String { (folder as NSString).appendingPathComponent(name) }

    public func exists(name: String) -> Bool {
        var info = stat()
        return stat(path(name), &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }

    public func write(_ image: RGBImage, name: String) throws -> String {
        let file = path(name)
        let bytes: [UInt8]
        do {
            bytes = try PNGWriter.encode(image)
        } catch let error as PNGWriter.EncodeError {
            throw FormatError(.io, file: file, error.description)
        }
        let writer = try AtomicFileWriter(path: file)
        try writer.write(bytes)
        // One frame of many: an interrupt after it still stops the run (and --resume continues).
        try writer.commit(final: false)
        written.append(file)
        return file
    }

    public func finish() throws -> [String] { written }
}

/// A video file encoded by an ffmpeg subprocess from raw RGB on its stdin, into a hidden
/// temporary beside the output that is renamed into place once ffmpeg has finished.
public final class VideoSink: FrameSink {
    public let path: String
    let ffmpeg: String
    let frameRate: String
    var process: Process?
    var stdin: FileHandle?
    var errors: ExternalProgram.Collector?
    var temporary: String?
    var token: Int32 = -1
    var size: (width: Int, height: Int)?
    var frames = 0

    public init(path: String, frameRate: String?) throws {
        self.path = path
        ffmpeg = try ExternalProgram.require("ffmpeg", for: path, purpose: "writing a video", instead: "give a folder as --output (one PNG per frame)")
        self.frameRate = frameRate ?? "25"
    }

    public func exists(name: String) -> Bool { false }

    func start(width: Int, height: Int) throws {
        let (dir, base) = AtomicFileWriter.split(path)
        let ext = (base as NSString).pathExtension
        var template = Array("\(dir)/.\(base).tmp-XXXXXX\(ext.isEmpty ? "" : "." + ext)".utf8CString)
        let suffix = Int32(ext.isEmpty ? 0 : ext.utf8.count + 1)
        let (fd, token) = FileGuard.creating { () -> (Int32, Int32) in
            let fd = template.withUnsafeMutableBufferPointer { mkstemps($0.baseAddress!, suffix) }
            guard fd >= 0 else { return (fd, -1) }
            return (fd, FileGuard.removeOnExit(template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }, kind: .file))
        }
        guard fd >= 0 else {
            throw FormatError(.io, file: path, "cannot create a temporary file in \(dir): \(String(cString: strerror(errno)))")
        }
        fchmod(fd, 0o644)
        close(fd)
        let temporary = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        (self.temporary, self.token) = (temporary, token)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ffmpeg)
        // yuv420p: what players take (sides are even: 4 × the input).
        process.arguments = ["-nostdin", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "\(width)x\(height)", "-r", frameRate,
                             "-i", "-", "-pix_fmt", "yuv420p", "-y", temporary]
        let input = Pipe(), err = Pipe()
        process.standardInput = input
        process.standardOutput = FileHandle.nullDevice
        process.standardError = err
        do { try process.run() } catch {
            throw FormatError(.io, file: path, "cannot start ffmpeg (\(ffmpeg)) to encode the video: \(error.localizedDescription)")
        }
        self.process = process
        stdin = input.fileHandleForWriting
        errors = ExternalProgram.Collector(err.fileHandleForReading)
        size = (width, height)
    }

    public func write(_ image: RGBImage, name: String) throws -> String {
        if process == nil { try start(width: image.width, height: image.height) }
        guard ExternalProgram.writeFully(stdin!.fileDescriptor, image.pixels) else {
            process?.waitUntilExit()
            throw FormatError(.io, file: path, "ffmpeg stopped taking frames after \(frames): \(errors?.text ?? String(cString: strerror(errno)))")
        }
        frames += 1
        return path
    }

    public func finish() throws -> [String] {
        guard let process, let temporary else { return [] }
        try? stdin?.close()
        process.waitUntilExit()
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            throw FormatError(.io, file: path, "ffmpeg could not encode the video: \(errors?.text ?? "exit status \(process.terminationStatus)")")
        }
        try FileGuard.publishing(final: true) {
            guard rename(temporary, path) == 0 else {
                throw FormatError(.io, file: path, "cannot rename into place: \(String(cString: strerror(errno)))")
            }
            FileGuard.forget(token)
            self.temporary = nil
        }
        return [path]
    }

    deinit {
        if let process, process.isRunning { process.terminate() }
        if let temporary {
            unlink(temporary)
            FileGuard.forget(token)
        }
    }
}
