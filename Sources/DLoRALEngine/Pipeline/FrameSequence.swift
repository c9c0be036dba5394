import DLoRALFormats
import Foundation

/// A folder of video frames (PNG) in and out of the pipeline, for running a `.dlrt` on real
/// footage without a reference.
///
/// DLoRAL restores frames at 4× their size: each low-quality frame is upscaled ×4 before the
/// model sees it. Here that is the engine's bicubic (PyTorch's, A = −0.75); DLoRAL's own script
/// uses PIL's default resize (bicubic with a = −0.5), so outputs differ from it slightly. Sizes
/// are then cropped (right / bottom) to a multiple of 8, where DLoRAL resizes with Lanczos.
public enum FrameSequence {
    public static let upscale = 4

    /// The PNG files of `folder`, sorted by name.
    public static func files(in folder: String) throws -> [String] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: folder)
        } catch {
            throw FormatError(.io, file: folder, "cannot list the folder: \(error.localizedDescription)")
        }
        let pngs = names.filter { $0.lowercased().hasSuffix(".png") }.sorted()
        guard pngs.count >= 2 else {
            throw FormatError(.invalidModel, file: folder, "holds \(pngs.count) PNG frames; DLoRAL needs at least 2 (a previous and a current frame)")
        }
        return pngs
    }

    /// Loads, upscales ×4 and crops every frame; all frames must share one size.
    /// - Returns: the file names and the frames [T, 3, H, W] in [-1, 1].
    public static func load(folder: String) throws -> (names: [String], frames: Tensor) {
        let names = try files(in: folder)
        var data: [Float] = []
        var size: (Int, Int)?
        var shape: [Int] = []
        for name in names {
            let path = (folder as NSString).appendingPathComponent(name)
            let image = try PNGReader.read(path: path)
            if let size, size != (image.width, image.height) {
                throw FormatError(.invalidModel, file: path, "is \(image.width)×\(image.height) but the first frame is \(size.0)×\(size.1); all frames must share one size")
            }
            size = (image.width, image.height)
            let up = Ops.interpolateBicubic(image.tensor(), size: (image.height * upscale, image.width * upscale),
                                            alignCorners: false, scaleFactor: (Double(upscale), Double(upscale)))
            let cropped = crop(up, height: up.shape[2] / 8 * 8, width: up.shape[3] / 8 * 8)
            shape = cropped.shape
            data += cropped.data
        }
        return (names, Tensor(shape: [names.count, 3, shape[2], shape[3]], data: data))
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
