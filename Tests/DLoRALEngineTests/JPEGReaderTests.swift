import DLoRALEngine
import DLoRALFormats
import Foundation
import Testing

/// The JPEGs of Tests/Fixtures/jpeg/ and the bytes Pillow 13.0.0 decodes them to
/// (`Image.open(f).convert("RGB")`, Tools/fixtures/make_jpeg_references.py).
enum JPEGFixture {
    static let folder = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/jpeg")

    static func path(_ name: String) -> String { folder.appendingPathComponent(name).path }

    /// The manifest's entry for a decoded case (width, height, ...).
    static func entry(_ name: String) throws -> JSONValue {
        let text = try String(contentsOfFile: path("manifest.json"), encoding: .utf8)
        let cases = try #require(try StrictJSONParser.parse(text)["decoded"]?.arrayValue)
        return try #require(cases.first { $0["name"]?.stringValue == name }, "\(name) is not in manifest.json")
    }

    /// Every subsampling, quality 50 / 90 / 95, odd sizes down to 1 × 1, progressive, RGB
    /// stored without the YCbCr transform, grayscale.
    static let decoded = [
        "q90_444_37x23", "q90_422_37x23", "q90_420_37x23", "q50_420_64x48", "q95_444_64x48",
        "q50_422_64x48", "q90_420_9x5", "q90_420_1x1", "progressive_q90_420_37x23",
        "rgb_q90_444_37x23", "gray_q90_37x23", "extraneous_q90_420_37x23",
    ]
}

@Suite("JPEG reader")
struct JPEGReaderTests {
    @Test(arguments: JPEGFixture.decoded)
    func decodesAsPillowDoes(_ name: String) throws {
        let file = JPEGFixture.path(name + ".jpg")
        let entry = try JPEGFixture.entry(name)
        let width = try #require(entry["width"]?.intValue), height = try #require(entry["height"]?.intValue)
        let expected = [UInt8](try Data(contentsOf: URL(fileURLWithPath: JPEGFixture.path(name + ".rgb"))))
        #expect(expected.count == width * height * 3)
        let before = try Data(contentsOf: URL(fileURLWithPath: file))

        let size = try JPEGReader.size(path: file)
        #expect(size.width == width && size.height == height)
        let image = try JPEGReader.read(path: file)
        #expect(image.width == width && image.height == height)
        let differing = zip(image.pixels, expected).filter { $0 != $1 }.count
        let largest = zip(image.pixels, expected).map { abs(Int($0) - Int($1)) }.max() ?? 0
        #expect(image.pixels.count == expected.count && differing == 0,
                "\(name): \(differing) of \(expected.count) bytes differ from Pillow's decode (up to \(largest) levels)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: file)) == before, "the JPEG was modified by reading it")
    }

    /// A grayscale JPEG gives R = G = B, as Pillow's convert("RGB") of an "L" image.
    @Test func grayscaleIsCopiedToThreeChannels() throws {
        let image = try JPEGReader.read(path: JPEGFixture.path("gray_q90_37x23.jpg"))
        let pixels = image.pixels
        var unequal = 0
        for i in stride(from: 0, to: pixels.count, by: 3) where pixels[i] != pixels[i + 1] || pixels[i] != pixels[i + 2] {
            unequal += 1
        }
        #expect(unequal == 0, "\(unequal) pixels are not grey")
        #expect(Set(pixels).count > 20, "a synthetic picture has many grey levels")
    }

    @Test func aCMYKJPEGIsRefusedFromItsHeader() throws {
        let file = JPEGFixture.path("cmyk.jpg")
        for read in [{ _ = try JPEGReader.size(path: file) }, { _ = try JPEGReader.read(path: file) }] {
            let error = try #require(throws: FormatError.self) { try read() }
            let text = "\(error)"
            #expect(text.contains(file) && text.contains("CMYK") && text.contains("RGB PNG"), "\(text)")
        }
    }

    /// Pillow refuses it ("image file is truncated"); libjpeg would fill the rest with grey after a
    /// warning, which the reader takes as an error.
    @Test func aTruncatedJPEGIsRefused() throws {
        let file = JPEGFixture.path("truncated.jpg")
        let size = try JPEGReader.size(path: file)
        #expect(size.width == 64 && size.height == 48, "the header is whole")
        let error = try #require(throws: FormatError.self) { try JPEGReader.read(path: file) }
        let text = "\(error)"
        #expect(text.contains(file) && text.contains("Premature end of JPEG file") && text.contains("truncated"), "\(text)")
    }

    @Test func whatIsNotAJPEGIsRefusedNamingTheFile() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("jpeg-reader-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let good = [UInt8](try Data(contentsOf: URL(fileURLWithPath: JPEGFixture.path("q90_444_37x23.jpg"))))
        // The frame size in the SOF0 segment (FF C0, length, precision, height, width).
        let sof = try #require((0..<(good.count - 1)).first { good[$0] == 0xFF && good[$0 + 1] == 0xC0 })
        #expect(Int(good[sof + 5]) << 8 | Int(good[sof + 6]) == 23 && Int(good[sof + 7]) << 8 | Int(good[sof + 8]) == 37)
        var huge = good
        (huge[sof + 5], huge[sof + 6], huge[sof + 7], huge[sof + 8]) = (0xFD, 0xE8, 0xFD, 0xE8)  // 65000 × 65000
        let cases: [(String, [UInt8], String)] = [
            ("empty.jpg", [], "Empty input file"),
            ("png.jpg", [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13], "Not a JPEG file"),
            ("huge.jpg", huge, "65000×65000 pixels is outside"),
        ]
        for (name, bytes, message) in cases {
            let file = folder.appendingPathComponent(name).path
            try Data(bytes).write(to: URL(fileURLWithPath: file))
            let error = try #require(throws: FormatError.self, "\(name)") { try JPEGReader.read(path: file) }
            #expect("\(error)".contains(file) && "\(error)".contains(message), "\(name): \(error)")
        }
        // A folder named like a frame: refused, not read.
        let notAFile = folder.appendingPathComponent("folder.jpg")
        try FileManager.default.createDirectory(at: notAFile, withIntermediateDirectories: true)
        #expect(throws: FormatError.self) { try JPEGReader.size(path: notAFile.path) }
    }
}
