import CLibPNG
import DLoRALFormats
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Reads PNG files (any bit depth, colour type, interlace) as 8-bit RGB with libpng's
/// simplified API; alpha is composited over black, grey expanded to RGB.
public enum PNGReader {
    /// The largest side read: a header can claim up to 2^31 − 1 pixels a side, which no frame has.
    public static let maximumSide = 1 << 15

    /// Width and height from the header alone (nothing is decoded or allocated for the pixels).
    public static func size(path: String) throws -> (width: Int, height: Int) {
        let png = try OpenPNG(path: path)
        return (png.width, png.height)
    }

    public static func read(path: String) throws -> RGBImage {
        let png = try OpenPNG(path: path)
        let image = png.image
        image.pointee.format = UInt32(PNG_FORMAT_RGB)
        let width = png.width, height = png.height
        let bytes = try MachineMemory.checkedBytes([width, height, 3], elementSize: 1, what: "the decoded \(width)×\(height) PNG", file: path)
        var pixels = [UInt8](repeating: 0, count: bytes)
        let ok = pixels.withUnsafeMutableBytes { png_image_finish_read(image, nil, $0.baseAddress, Int32(width * 3), nil) }
        guard ok != 0 else {
            throw FormatError(.malformed, file: path, "PNG data could not be decoded: \(message(image))")
        }
        return RGBImage(width: width, height: height, pixels: pixels)
    }

    /// A PNG file whose header has been read, its stream still open for decoding. The
    /// `png_image` lives on the heap at one address from the header to the pixels: libpng keeps
    /// a pointer to it for its error handler, which longjmps through it ("bad longjmp" from a
    /// copy whose original was gone).
    final class OpenPNG {
        let image: UnsafeMutablePointer<png_image>
        let stream: UnsafeMutablePointer<FILE>
        let width: Int, height: Int

        init(path: String) throws {
            // Opened without blocking and refused unless a regular file (a FIFO would hang).
            let fd = try RegularFile.open(path)
            do {
                try checkChunkLengths(fd, path: path)
            } catch {
                close(fd)
                throw error
            }
            guard let stream = fdopen(fd, "rb") else {
                close(fd)
                throw FormatError(.io, file: path, "cannot open: \(String(cString: strerror(errno)))")
            }
            let image = UnsafeMutablePointer<png_image>.allocate(capacity: 1)
            image.initialize(to: png_image())
            image.pointee.version = UInt32(PNG_IMAGE_VERSION)
            guard png_image_begin_read_from_stdio(image, stream) != 0 else {
                let text = PNGReader.message(image)
                png_image_free(image)
                image.deallocate()
                fclose(stream)
                throw FormatError(.malformed, file: path, "not a readable PNG: \(text)")
            }
            (self.image, self.stream) = (image, stream)
            width = Int(image.pointee.width)
            height = Int(image.pointee.height)
            guard width > 0, height > 0, width <= maximumSide, height <= maximumSide else {
                throw FormatError(.malformed, file: path, "PNG of \(width)×\(height) pixels is outside what dloral-verify reads (1 to \(maximumSide) per side)")
            }
        }

        deinit {
            png_image_free(image)
            image.deallocate()
            fclose(stream)
        }
    }

    /// libpng allocates a chunk's declared length (up to 2^31 − 1 bytes) before reading its data,
    /// so a file of a few hundred bytes could make it allocate gigabytes. Every chunk up to IEND
    /// must fit in the file; the chunk headers are read with pread, nothing else is.
    static func checkChunkLengths(_ fd: Int32, path: String) throws {
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw FormatError(.io, file: path, "cannot stat: \(String(cString: strerror(errno)))")
        }
        let size = Int(info.st_size)
        func bytes(at offset: Int, _ count: Int) -> [UInt8]? {
            var out = [UInt8](repeating: 0, count: count)
            let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
            return n == count ? out : nil
        }
        // Not a PNG signature: libpng says so itself.
        guard size >= 8, bytes(at: 0, 8) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] else { return }
        var at = 8
        while let header = bytes(at: at, 8) {
            let length = header[0..<4].reduce(0) { $0 << 8 | Int($1) }
            let type = String(decoding: header[4..<8].map { (0x20...0x7E).contains($0) ? $0 : UInt8(ascii: "?") }, as: UTF8.self)
            guard length <= size - at - 12 else {
                throw FormatError(.malformed, file: path,
                                  "PNG chunk '\(type)' at byte \(at) declares \(length) bytes of data but the file has \(max(size - at - 12, 0)) after its header; the file is truncated or damaged")
            }
            if type == "IEND" { return }
            at += 12 + length
        }
    }

    static func message(_ image: UnsafeMutablePointer<png_image>) -> String {
        withUnsafeBytes(of: &image.pointee.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}

extension RGBImage {
    /// The image as a [1, 3, H, W] tensor in [-1, 1] (value / 127.5 − 1, as DLoRAL normalises frames).
    public func tensor() -> Tensor {
        let plane = width * height
        var data = [Float](repeating: 0, count: 3 * plane)
        for i in 0..<plane {
            for c in 0..<3 { data[c * plane + i] = Float(pixels[i * 3 + c]) / 127.5 - 1 }
        }
        return Tensor(shape: [1, 3, height, width], data: data)
    }
}
