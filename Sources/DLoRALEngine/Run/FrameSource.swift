import DLoRALFormats
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The frames of a clip, read in order one at a time (never the whole clip in memory).
public protocol FrameSource: AnyObject {
    /// The folder or video, for messages.
    var path: String { get }
    var frameCount: Int { get }
    var width: Int { get }
    var height: Int { get }
    /// Frames per second of a video (nil for a folder).
    var frameRate: String? { get }
    /// The name the restored frame `index` is written under in an output folder.
    func outputName(_ index: Int) -> String
    /// Frame `index`; indices must increase from call to call.
    func read(_ index: Int) throws -> RGBImage
}

public enum FrameSources {
    /// A folder of frames or a video file.
    public static func open(_ path: String) throws -> FrameSource {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw FormatError(.io, file: path, "no such file or folder; --input takes a folder of PNG or JPEG frames or a video file")
        }
        return isFolder.boolValue ? try FolderFrames(folder: path) : try VideoFrames(path: path)
    }
}

/// A folder of PNG or JPEG frames in name order (hidden files skipped). PNGs are decoded with
/// libpng, JPEGs with libjpeg-turbo as Pillow (which upstream reads frames with) decodes them:
/// the same bytes, no ffmpeg needed.
public final class FolderFrames: FrameSource {
    public let path: String
    public let names: [String]
    public let width: Int
    public let height: Int
    public var frameCount: Int { names.count }
    public var frameRate: String? { nil }

    static func isPNG(_ name: String) -> Bool { name.lowercased().hasSuffix(".png") }
    static func isJPEG(_ name: String) -> Bool { [".jpg", ".jpeg"].contains { name.lowercased().hasSuffix($0) } }

    public init(folder: String) throws {
        path = folder
        let entries: [String]
        do {
            entries = try FileManager.default.contentsOfDirectory(atPath: folder)
        } catch {
            let reason = access(folder, R_OK | X_OK) != 0 ? String(cString: strerror(errno)) : "\(error)"
            throw FormatError(.io, file: folder, "cannot list the folder: \(reason)")
        }
        let found = entries.filter { !$0.hasPrefix(".") && (Self.isPNG($0) || Self.isJPEG($0)) }.sorted()
        guard found.count >= 2 else {
            throw FormatError(.invalidModel, file: folder, "holds \(found.count) PNG or JPEG \(found.count == 1 ? "frame" : "frames"); DLoRAL needs at least 2 (a previous and a current frame)")
        }
        names = found
        // Every header is read up front: a frame of another size (or a JPEG that is not RGB) is
        // refused before any work.
        var size: (width: Int, height: Int)?
        var sizeFrom = ""
        for name in found {
            let file = (folder as NSString).appendingPathComponent(name)
            let this: (width: Int, height: Int)
            if Self.isPNG(name) {
                try FrameSequence.checkSignature(file)
                this = try PNGReader.size(path: file)
            } else {
                this = try JPEGReader.size(path: file)
            }
            if let size, size != this {
                throw FormatError(.invalidModel, file: file, "is \(this.width)×\(this.height) but \(sizeFrom) is \(size.width)×\(size.height); all frames must share one size")
            }
            if size == nil { (size, sizeFrom) = (this, name) }
        }
        width = size!.width
        height = size!.height
    }

    public func outputName(_ index: Int) -> String {
        let name = names[index]
        if Self.isPNG(name) { return name }
        return (name as NSString).deletingPathExtension + ".png"
    }

    public func read(_ index: Int) throws -> RGBImage {
        let file = (path as NSString).appendingPathComponent(names[index])
        let image = Self.isPNG(names[index]) ? try PNGReader.read(path: file) : try JPEGReader.read(path: file)
        guard image.width == width, image.height == height else {
            throw FormatError(.invalidModel, file: file, "is \(image.width)×\(image.height) but the frames before it are \(width)×\(height); all frames must share one size")
        }
        return image
    }
}

/// A video file decoded by an ffmpeg subprocess into raw RGB, frame by frame.
public final class VideoFrames: FrameSource {
    public let path: String
    public let width: Int
    public let height: Int
    public let frameCount: Int
    public let frameRate: String?
    let ffmpeg: String
    var process: Process?
    var stdout: FileHandle?
    var errors: ExternalProgram.Collector?
    /// The index of the next frame the decoder will give.
    var position = 0

    public init(path: String) throws {
        self.path = path
        let fd = try RegularFile.open(path)
        close(fd)
        let ffprobe = try ExternalProgram.require("ffprobe", for: path, purpose: "reading a video")
        ffmpeg = try ExternalProgram.require("ffmpeg", for: path, purpose: "decoding a video")
        func probe(_ extra: [String], _ entries: String) throws -> JSONValue? {
            let data = try ExternalProgram.output(ffprobe, ["-v", "error", "-select_streams", "v:0"] + extra + ["-show_entries", entries, "-of", "json", path],
                                                  file: path, what: "read the video (give a video file or a folder of PNG frames)")
            return (try? StrictJSONParser.parse(String(decoding: data, as: UTF8.self)))?["streams"]?.arrayValue?.first
        }
        guard let stream = try probe([], "stream=width,height,nb_frames,r_frame_rate"),
              let w = stream["width"]?.intValue, let h = stream["height"]?.intValue, w > 0, h > 0 else {
            throw FormatError(.malformed, file: path, "has no video stream ffprobe can read; --input takes a video file or a folder of PNG frames")
        }
        width = w
        height = h
        frameRate = stream["r_frame_rate"]?.stringValue.flatMap { $0 == "0/0" ? nil : $0 }
        if let count = stream["nb_frames"]?.stringValue.flatMap({ Int($0) }), count > 0 {
            frameCount = count
        } else {
            // Containers without a frame count (raw streams, some .mkv) are counted by decoding.
            frameCount = try probe(["-count_frames"], "stream=nb_read_frames")?["nb_read_frames"]?.stringValue.flatMap { Int($0) } ?? 0
        }
        guard frameCount >= 2 else {
            throw FormatError(.invalidModel, file: path, "holds \(frameCount) \(frameCount == 1 ? "frame" : "frames"); DLoRAL needs at least 2 (a previous and a current frame)")
        }
    }

    public func outputName(_ index: Int) -> String { String(format: "frame_%04d.png", index) }

    func start() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ffmpeg)
        // passthrough: every decoded frame once, none duplicated or dropped to a frame rate.
        process.arguments = ["-nostdin", "-v", "error", "-i", path, "-map", "0:v:0", "-fps_mode", "passthrough",
                             "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch {
            throw FormatError(.io, file: path, "cannot start ffmpeg (\(ffmpeg)) to decode the video: \(error.localizedDescription)")
        }
        self.process = process
        stdout = out.fileHandleForReading
        errors = ExternalProgram.Collector(err.fileHandleForReading)
    }

    public func read(_ index: Int) throws -> RGBImage {
        precondition(index >= position, "video frames are read in order")
        if process == nil { try start() }
        let size = width * height * 3
        var buffer = [UInt8](repeating: 0, count: size)
        while position <= index {
            let got = try ExternalProgram.readFully(stdout!.fileDescriptor, into: &buffer, count: size)
            guard got == size else {
                process?.waitUntilExit()
                let why = errors?.text ?? ""
                throw FormatError(.malformed, file: path, "ended after \(position) frames but ffprobe counted \(frameCount)\(why.isEmpty ? "" : ": ffmpeg: \(why)")")
            }
            position += 1
        }
        return RGBImage(width: width, height: height, pixels: buffer)
    }

    deinit {
        if let process, process.isRunning { process.terminate() }
    }
}

/// The frames of a reference file's `input.lq_frames` (uint8 [T, H, W, 3]).
public final class TensorFrames: FrameSource {
    public let path: String
    let view: TensorView
    public let frameCount: Int, width: Int, height: Int
    public var frameRate: String? { nil }
    let names: [String]?

    public init(_ view: TensorView, file: String, names: [String]?) throws {
        guard view.dtype == .uint8, view.shape.count == 4, view.shape[0] >= 2, view.shape[3] == 3, view.shape[1] > 0, view.shape[2] > 0 else {
            throw FormatError(.invalidModel, file: file, tensor: "input.lq_frames", "\(view.dtype) \(view.shape); expected uint8 [T ≥ 2, H, W, 3] (the clip's frames as read)")
        }
        self.view = view
        path = file
        frameCount = view.shape[0]
        height = view.shape[1]
        width = view.shape[2]
        self.names = names?.count == frameCount ? names : nil
    }

    public func outputName(_ index: Int) -> String { names?[index] ?? String(format: "frame_%04d.png", index) }

    public func read(_ index: Int) throws -> RGBImage {
        let size = width * height * 3
        guard let bytes = view.contiguousBytes else {
            throw FormatError(.invalidModel, file: path, tensor: "input.lq_frames", "is not stored contiguously")
        }
        let start = index * size
        return RGBImage(width: width, height: height, pixels: Array(bytes[start..<(start + size)]))
    }
}
