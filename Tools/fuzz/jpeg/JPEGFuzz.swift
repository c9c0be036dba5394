import DLoRALEngine
import DLoRALFormats
import FuzzSupport

/// JPEG frames as `dloral-run` reads them: the header through `JPEGReader.size(path:)` (as a
/// folder's frames are checked up front), then `JPEGReader.read(path:)` (libjpeg-turbo, every
/// warning an error) and the frame tensor.
///
/// Skipped after the header, as a question of memory limits rather than of parsing: pictures
/// declaring more than 2^22 pixels (a valid JPEG of a few hundred bytes can declare 32768 ×
/// 32768, which the reader allocates before decoding).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJPEG(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = size > 0 ? [UInt8](UnsafeBufferPointer(start: data, count: size)) : []
    let path = Fuzz.write(bytes, name: "frame.jpg")
    Fuzz.expectReadOrRefused("JPEGReader.size(path:) / read(path:)") {
        let header = try JPEGReader.size(path: path)
        guard header.width * header.height <= 1 << 22 else { return }
        let image = try JPEGReader.read(path: path)
        precondition(image.width == header.width && image.height == header.height && image.pixels.count == image.width * image.height * 3)
        let tensor = image.tensor()
        precondition(tensor.shape == [1, 3, image.height, image.width])
    }
    return 0
}

@_cdecl("fuzz_jpeg_main")
public func fuzzJPEGMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Fuzz.main(argc, argv, fuzzJPEG)
}
