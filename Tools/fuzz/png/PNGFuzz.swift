import DLoRALEngine
import DLoRALFormats
import FuzzSupport

/// PNG frames as `dloral-verify --frames` reads them: libpng's simplified API through
/// `PNGReader` (any bit depth, colour type, palette, interlace, to 8-bit RGB), then the
/// conversion to a [-1, 1] tensor.
///
/// libpng refuses a critical chunk whose CRC is wrong, so random mutations would stop there;
/// the target recomputes every chunk's CRC first. Skipped, as a question of memory limits rather
/// than of parsing: images declaring more than 2^22 pixels (a valid PNG of a few hundred bytes
/// can declare 32768 × 32768). Chunks declaring more bytes than the file has are refused by
/// `PNGReader` itself before libpng sees them.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPNG(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var bytes = size > 0 ? [UInt8](UnsafeBufferPointer(start: data, count: size)) : []
    guard let pixels = PNGRepair.fixCRCs(&bytes), pixels <= 1 << 22 else { return 0 }
    let path = Fuzz.write(bytes, name: "frame.png")
    Fuzz.expectReadOrRefused("PNGReader.read(path:)") {
        let image = try PNGReader.read(path: path)
        let tensor = image.tensor()
        precondition(tensor.shape == [1, 3, image.height, image.width])
    }
    return 0
}

enum PNGRepair {
    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    static func be32(_ b: [UInt8], _ at: Int) -> Int {
        Int(b[at]) << 24 | Int(b[at + 1]) << 16 | Int(b[at + 2]) << 8 | Int(b[at + 3])
    }

    /// Recomputes the CRC of every whole chunk; returns the pixel count IHDR declares (0 if
    /// none). A chunk declaring more bytes than follow it ends the walk.
    static func fixCRCs(_ b: inout [UInt8]) -> Int? {
        guard b.count >= 8, Array(b[0..<8]) == signature else { return 0 }
        var pixels = 0
        var at = 8
        while at + 12 <= b.count {
            let length = be32(b, at)
            guard length <= b.count - at - 12 else { return pixels }
            if Array(b[(at + 4)..<(at + 8)]) == Array("IHDR".utf8), length >= 8 {
                let (product, overflow) = be32(b, at + 8).multipliedReportingOverflow(by: be32(b, at + 12))
                pixels = overflow ? Int.max : product
            }
            let crc = Fuzz.crc32(b[(at + 4)..<(at + 8 + length)])
            for i in 0..<4 { b[at + 8 + length + i] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * UInt32(i))) }
            at += 12 + length
        }
        return pixels
    }
}

@_cdecl("fuzz_png_main")
public func fuzzPNGMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Fuzz.main(argc, argv, fuzzPNG)
}
