import CLibPNG
import DLoRALFormats

/// An 8-bit RGB image, row-major, three bytes per pixel, no row padding.
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// `width * height * 3` bytes: R, G, B of each pixel, rows top to bottom.
    public var pixels: [UInt8]

    /// An image of `width` × `height` filled with `fill`.
    public init(width: Int, height: Int, fill: RGB = RGB(255, 255, 255)) {
        precondition(width >= 0 && height >= 0, "negative image size \(width)×\(height)")
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        if fill != RGB(0, 0, 0) { fillRect(x: 0, y: 0, width: width, height: height, fill) }
    }

    /// An image over existing pixel bytes.
    /// - Precondition: `pixels.count == width * height * 3`.
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0 && pixels.count == width * height * 3,
                     "\(pixels.count) bytes for a \(width)×\(height) RGB image")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    public subscript(x: Int, y: Int) -> RGB {
        get {
            let i = (y * width + x) * 3
            return RGB(pixels[i], pixels[i + 1], pixels[i + 2])
        }
        set {
            let i = (y * width + x) * 3
            pixels[i] = newValue.r
            pixels[i + 1] = newValue.g
            pixels[i + 2] = newValue.b
        }
    }

    /// Fills the rectangle, clipped to the image.
    public mutating func fillRect(x: Int, y: Int, width w: Int, height h: Int, _ color: RGB) {
        let x0 = max(x, 0), x1 = min(x + w, width), y0 = max(y, 0), y1 = min(y + h, height)
        guard x0 < x1, y0 < y1 else { return }
        for yy in y0..<y1 {
            for xx in x0..<x1 { self[xx, yy] = color }
        }
    }

    /// Copies `image` with its top-left corner at (x, y), clipped to this image.
    public mutating func paste(_ image: RGBImage, x: Int, y: Int) {
        for yy in 0..<image.height where y + yy >= 0 && y + yy < height {
            for xx in 0..<image.width where x + xx >= 0 && x + xx < width {
                self[x + xx, y + yy] = image[xx, yy]
            }
        }
    }

    /// Nearest-neighbour enlargement by an integer factor.
    public func upscaled(by factor: Int) -> RGBImage {
        precondition(factor >= 1, "upscale factor \(factor)")
        guard factor > 1 else { return self }
        var out = RGBImage(width: width * factor, height: height * factor, fill: RGB(0, 0, 0))
        for y in 0..<out.height {
            for x in 0..<out.width { out[x, y] = self[x / factor, y / factor] }
        }
        return out
    }
}

/// One 8-bit RGB colour.
public struct RGB: Sendable, Equatable, Hashable {
    public var r: UInt8
    public var g: UInt8
    public var b: UInt8
    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) {
        self.r = r
        self.g = g
        self.b = b
    }
}

/// PNG encoding with libpng (8-bit RGB, no interlace).
public enum PNGWriter {
    /// What libpng reported.
    public struct EncodeError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { "PNG encoding failed: \(message)" }
    }

    /// The PNG file bytes of `image`.
    /// - Throws: `EncodeError` when libpng refuses (an empty image, out of memory).
    public static func encode(_ image: RGBImage, compressionLevel: Int32 = 9) throws -> [UInt8] {
        // An empty image reaches libpng, whose png_set_IHDR refuses it through the error path.
        guard image.width <= Int(UInt32.max), image.height <= Int(UInt32.max) else {
            throw EncodeError(message: "image size \(image.width)×\(image.height) is too large for PNG")
        }
        var buffer = cpng_buffer()
        defer { cpng_buffer_free(&buffer) }
        let status = image.pixels.withUnsafeBufferPointer {
            cpng_encode_rgb8($0.baseAddress, UInt32(image.width), UInt32(image.height), compressionLevel, &buffer)
        }
        guard status == 0 else {
            let message = withUnsafeBytes(of: buffer.message) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            throw EncodeError(message: message.isEmpty ? "libpng error" : message)
        }
        guard let data = buffer.data else { throw EncodeError(message: "libpng produced no bytes") }
        return Array(UnsafeBufferPointer(start: data, count: buffer.size))
    }

    /// Encodes `image` and writes it to `path` atomically (temporary sibling, fsync, rename).
    /// - Throws: `FormatError` (.io) naming `path`.
    public static func write(_ image: RGBImage, to path: String) throws {
        let bytes: [UInt8]
        do {
            bytes = try encode(image)
        } catch let error as EncodeError {
            throw FormatError(.io, file: path, error.description)
        }
        let writer = try AtomicFileWriter(path: path)
        try writer.write(bytes)
        try writer.commit()
    }
}
