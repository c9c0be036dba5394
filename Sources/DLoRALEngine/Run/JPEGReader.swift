import CLibJPEG
import DLoRALFormats
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Reads JPEG files (baseline, progressive, any chroma subsampling; YCbCr, RGB or grayscale) as
/// 8-bit RGB with libjpeg-turbo, set up as Pillow sets up the same library for
/// `Image.open(f).convert("RGB")` (integer IDCT, fancy upsampling; grey copied to R, G and B),
/// so frames decode to Pillow's bytes, which upstream DLoRAL reads. CMYK and YCCK pictures are
/// refused (Pillow's CMYK → RGB conversion is not a colour-managed one); so is a truncated file,
/// as Pillow refuses it. Damage libjpeg recovers from (stray bytes between markers) decodes as in
/// Pillow (`cjpeg_emit_message`).
public enum JPEGReader {
    /// The largest side read, as for PNG frames.
    public static let maximumSide = PNGReader.maximumSide

    /// Width and height from the header alone (nothing is decoded or allocated for the pixels).
    public static func size(path: String) throws -> (width: Int, height: Int) {
        let jpeg = try OpenJPEG(path: path)
        return (jpeg.width, jpeg.height)
    }

    public static func read(path: String) throws -> RGBImage {
        let jpeg = try OpenJPEG(path: path)
        let width = jpeg.width, height = jpeg.height
        let bytes = try MachineMemory.checkedBytes([width, height, 3], elementSize: 1, what: "the decoded \(width)×\(height) JPEG", file: path)
        // A progressive (multi-scan) file is held whole as DCT coefficients before any row comes out.
        let buffered = Int(jpeg.context.pointee.buffered_bytes)
        if buffered > 0 {
            _ = try MachineMemory.checkedBytes([bytes + buffered], elementSize: 1,
                                               what: "decoding the \(width)×\(height) progressive JPEG (its coefficients and the picture)", file: path)
        }
        var pixels = [UInt8](repeating: 0, count: bytes)
        let status = pixels.withUnsafeMutableBytes {
            cjpeg_decode_rgb(jpeg.context, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes)
        }
        guard status == 0 else {
            throw FormatError(.malformed, file: path, "JPEG data could not be decoded: \(jpeg.message); the file is truncated or damaged (re-export the frame)")
        }
        return RGBImage(width: width, height: height, pixels: pixels)
    }

    /// A JPEG file whose header has been read, its stream still open for decoding. The libjpeg
    /// state lives on the heap at one address from the header to the pixels: libjpeg keeps
    /// pointers into it between the calls.
    final class OpenJPEG {
        let context: UnsafeMutablePointer<cjpeg_context>
        let stream: UnsafeMutablePointer<FILE>
        let width: Int, height: Int

        init(path: String) throws {
            // Opened without blocking and refused unless a regular file (a FIFO would hang).
            let fd = try RegularFile.open(path)
            guard let stream = fdopen(fd, "rb") else {
                close(fd)
                throw FormatError(.io, file: path, "cannot open: \(String(cString: strerror(errno)))")
            }
            guard let context = cjpeg_new() else {
                fclose(stream)
                throw FormatError(.io, file: path, "out of memory before reading the JPEG header")
            }
            (self.context, self.stream) = (context, stream)
            guard cjpeg_read_header(context, stream) == 0 else {
                let text = Self.message(context)
                cjpeg_close(context)
                fclose(stream)
                throw FormatError(.malformed, file: path, "not a readable JPEG: \(text); give PNG or JPEG frames")
            }
            // Every stored property is set from here on: a throw runs deinit, which closes both.
            width = Int(context.pointee.width)
            height = Int(context.pointee.height)
            let components = Int(context.pointee.components)
            let space = UInt32(bitPattern: context.pointee.color_space)
            let readable = (space == JCS_GRAYSCALE.rawValue && components == 1)
                || ((space == JCS_YCbCr.rawValue || space == JCS_RGB.rawValue) && components == 3)
            guard readable else {
                let kind: String
                switch space {
                case JCS_CMYK.rawValue: kind = "CMYK"
                case JCS_YCCK.rawValue: kind = "YCCK (Adobe CMYK)"
                default: kind = "\(components)-component"
                }
                throw FormatError(.invalidModel, file: path, "is a \(kind) JPEG; frames must be RGB, YCbCr or grayscale JPEGs: convert it to an RGB PNG (with a colour-managed tool) and give that")
            }
            guard width > 0, height > 0, width <= maximumSide, height <= maximumSide else {
                throw FormatError(.malformed, file: path, "JPEG of \(width)×\(height) pixels is outside what the tools read (1 to \(maximumSide) per side)")
            }
        }

        var message: String { Self.message(context) }

        static func message(_ context: UnsafeMutablePointer<cjpeg_context>) -> String {
            withUnsafeBytes(of: &context.pointee.message) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
        }

        deinit {
            cjpeg_close(context)
            fclose(stream)
        }
    }
}
