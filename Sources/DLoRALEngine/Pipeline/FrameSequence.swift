import DLoRALFormats
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A folder of video frames (PNG) in and out of the pipeline, for running a `.dlrt` on real
/// footage without a reference.
///
/// DLoRAL restores frames at 4× their size: each low-quality frame is upscaled ×4 before the
/// model sees it. Here that is the engine's bicubic (PyTorch's, A = −0.75); DLoRAL's own script
/// uses PIL's default resize (bicubic with a = −0.5), so outputs differ from it slightly. Sizes
/// are then cropped (right / bottom) to the model's size grid (a multiple of 8 for DLoRAL), where
/// DLoRAL resizes with Lanczos.
public enum FrameSequence {
    public static let upscale = 4

    /// The PNG files of `folder`, sorted by name.
    public static func files(in folder: String) throws -> [String] {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) else {
            throw FormatError(.io, file: folder, "no such folder; give a folder of PNG frames")
        }
        guard isFolder.boolValue else {
            throw FormatError(.invalidModel, file: folder, "is a file, not a folder; give a folder of PNG frames (at least 2)")
        }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: folder)
        } catch {
            let reason = access(folder, R_OK | X_OK) != 0 ? String(cString: strerror(errno)) : "\(error)"
            throw FormatError(.io, file: folder, "cannot list the folder: \(reason)")
        }
        // Hidden files (macOS's ._f01.png, an editor's .f02.png) are not frames: skipped.
        let pngs = names.filter { !$0.hasPrefix(".") && $0.lowercased().hasSuffix(".png") }.sorted()
        guard pngs.count >= 2 else {
            throw FormatError(.invalidModel, file: folder, "holds \(pngs.count) PNG \(pngs.count == 1 ? "frame" : "frames"); DLoRAL needs at least 2 (a previous and a current frame)")
        }
        return pngs
    }

    /// The 8 bytes every PNG starts with (PNG specification §5.2).
    static let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// Refuses a file that is empty or does not start with the PNG signature, which libpng would
    /// report only as "Read Error" or a bare signature complaint.
    static func checkSignature(_ path: String) throws {
        let fd = try RegularFile.open(path)
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: pngSignature.count)
        let count = read(fd, &head, head.count)
        guard count >= 0 else {
            throw FormatError(.io, file: path, "cannot read: \(String(cString: strerror(errno)))")
        }
        if count == 0 {
            throw FormatError(.malformed, file: path, "not a PNG file (it is empty); give a folder of PNG frames")
        }
        if count < head.count || head != pngSignature {
            let start = head.prefix(count).map { String(format: "%02X", $0) }.joined(separator: " ")
            throw FormatError(.malformed, file: path, "not a PNG file (it starts with \(start), not the PNG signature 89 50 4E 47 0D 0A 1A 0A); give a folder of PNG frames")
        }
    }

    /// The size frames of `width` × `height` are restored at: ×4, cropped to a multiple of `step`.
    public static func restoredSize(width: Int, height: Int, step: Int) -> (width: Int, height: Int) {
        (width * upscale / step * step, height * upscale / step * step)
    }

    /// Loads, upscales ×4 and crops every frame; all frames must share one size, big enough for
    /// `requirements` and small enough for this machine. Every header is read and checked before
    /// any frame is decoded.
    /// - Parameter requirements: the model's (`DLoRALPipeline.requirements`); without them,
    ///   DLoRAL's size grid of 8 and no memory estimate (the pipeline checks again when it runs).
    /// - Returns: the file names and the frames [T, 3, H, W] in [-1, 1].
    public static func load(folder: String, requirements: FrameRequirements? = nil) throws -> (names: [String], frames: Tensor) {
        let requirements = requirements ?? FrameRequirements(vaeFactor: 8, lqDownsample: 8, spynetLevels: SpyNet.levelCount,
                                                             encoderLevels: [], decoderLevels: [], unetLevels: [], unetHeld: 0)
        let names = try files(in: folder)
        let paths = names.map { (folder as NSString).appendingPathComponent($0) }
        for path in paths { try checkSignature(path) }
        let first = try PNGReader.size(path: paths[0])
        for path in paths.dropFirst() {
            let size = try PNGReader.size(path: path)
            if size != first {
                throw FormatError(.invalidModel, file: path, "is \(size.width)×\(size.height) but the first frame (\(names[0])) is \(first.width)×\(first.height); all frames must share one size")
            }
        }
        let step = requirements.step
        let minimum = (requirements.minimumSide + upscale - 1) / upscale
        if first.width < minimum || first.height < minimum {
            throw FormatError(.invalidModel, file: paths[0], "is \(first.width)×\(first.height) pixels; this model needs frames of at least \(minimum)×\(minimum) (restored ×\(upscale) and cropped to a multiple of \(step), at least \(requirements.minimumSide)×\(requirements.minimumSide): \(requirements.gridReason))")
        }
        let out = restoredSize(width: first.width, height: first.height, step: step)
        if let problem = requirements.memoryProblem(frames: names.count, height: out.height, width: out.width, upscale: upscale) {
            throw FormatError(.invalidModel, file: paths[0], "is \(first.width)×\(first.height), restored at \(out.width)×\(out.height): \(problem)")
        }
        var data: [Float] = []
        _ = try MachineMemory.checkedBytes([names.count, 3, out.height, out.width], elementSize: MemoryLayout<Float>.size,
                                           what: "\(names.count) frames of \(out.width)×\(out.height)", file: folder)
        data.reserveCapacity(names.count * 3 * out.height * out.width)
        for path in paths {
            let image = try PNGReader.read(path: path)
            guard (image.width, image.height) == first else {
                throw FormatError(.invalidModel, file: path, "changed size while being read (\(image.width)×\(image.height), was \(first.width)×\(first.height))")
            }
            let up = Ops.interpolateBicubic(image.tensor(), size: (image.height * upscale, image.width * upscale),
                                            alignCorners: false, scaleFactor: (Double(upscale), Double(upscale)))
            data += crop(up, height: out.height, width: out.width).data
        }
        return (names, Tensor(shape: [names.count, 3, out.height, out.width], data: data))
    }

    static func crop(_ x: Tensor, height h: Int, width w: Int) -> Tensor {
        let (n, c, fh, fw) = x.nchw("crop")
        if fh == h && fw == w { return x }
        var out = [Float]()
        out.reserveCapacity(n * c * h * w)
        for plane in 0..<(n * c) {
            for y in 0..<h { out += x.data[(plane * fh + y) * fw..<((plane * fh + y) * fw + w)] }
        }
        return Tensor(shape: [n, c, h, w], data: out)
    }

    /// Writes output frame t (the restored input frame t + 1) as `<folder>/<name of that input>`,
    /// each file atomically; creates the folder.
    public static func write(_ frames: Tensor, names: [String], to folder: String) throws -> [String] {
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw FormatError(.io, file: folder, "cannot create the output folder: \(error.localizedDescription)")
        }
        var written: [String] = []
        for t in 0..<frames.shape[0] {
            let path = (folder as NSString).appendingPathComponent(names[t + 1])
            try PNGWriter.write(VerificationReport.frameImage(frames, frame: t), to: path)
            written.append(path)
        }
        return written
    }
}
