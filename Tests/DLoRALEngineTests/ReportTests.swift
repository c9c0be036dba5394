import DLoRALEngine
import DLoRALFormats
import Foundation
import Testing

/// `dloral-verify --report`: the libpng writer, the colour ramp and the report folder.
@Suite("verification report", .serialized)
struct ReportTests {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static let work: URL = {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("dloral-report-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }()

    /// A PNG decoder using only Python's standard library (zlib): checks the signature, chunk
    /// CRCs and IHDR (8-bit RGB, not interlaced), undoes the five row filters and prints
    /// "width height hex-pixels".
    static let pythonDecoder = """
        import struct, sys, zlib
        data = open(sys.argv[1], 'rb').read()
        assert data[:8] == b'\\x89PNG\\r\\n\\x1a\\n', 'signature'
        pos, idat, ihdr = 8, b'', None
        while pos < len(data):
            n, = struct.unpack('>I', data[pos:pos + 4])
            kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
            crc, = struct.unpack('>I', data[pos + 8 + n:pos + 12 + n])
            assert zlib.crc32(kind + body) & 0xffffffff == crc, 'crc of ' + repr(kind)
            if kind == b'IHDR': ihdr = struct.unpack('>IIBBBBB', body)
            elif kind == b'IDAT': idat += body
            elif kind == b'IEND': break
            pos += 12 + n
        w, h, depth, ctype, comp, filt, inter = ihdr
        assert (depth, ctype, comp, filt, inter) == (8, 2, 0, 0, 0), repr(ihdr)
        raw, stride, out, prev, i = zlib.decompress(idat), w * 3, bytearray(), bytearray(w * 3), 0
        for y in range(h):
            f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
            i += 1 + stride
            for x in range(stride):
                a = line[x - 3] if x >= 3 else 0
                b = prev[x]
                c = prev[x - 3] if x >= 3 else 0
                if f == 0: p = 0
                elif f == 1: p = a
                elif f == 2: p = b
                elif f == 3: p = (a + b) // 2
                elif f == 4:
                    q = a + b - c
                    pa, pb, pc = abs(q - a), abs(q - b), abs(q - c)
                    p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                else: raise ValueError('filter %d' % f)
                line[x] = (line[x] + p) & 255
            out += line
            prev = line
        assert i == len(raw), 'trailing data'
        print(w, h, out.hex())
        """

    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func run(_ executable: URL, _ arguments: [String]) throws -> Run {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.currentDirectoryURL = root
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("report-out-\(UUID().uuidString)")
        let err = FileManager.default.temporaryDirectory.appendingPathComponent("report-err-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: out)
            try? FileManager.default.removeItem(at: err)
        }
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        try process.run()
        process.waitUntilExit()
        return Run(status: process.terminationStatus,
                   stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                   stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
    }

    /// The folder with the built executables (as EndToEndTests' CommandRunner finds it).
    static let binFolder: URL = {
        var candidates: [URL] = []
        if let env = ProcessInfo.processInfo.environment["DLORAL_BIN"] { candidates.append(URL(fileURLWithPath: env)) }
        var url = Bundle.main.bundleURL
        for _ in 0..<4 {
            candidates.append(url)
            url = url.deletingLastPathComponent()
        }
        candidates.append(root.appendingPathComponent(".build/debug"))
        return candidates.first {
            FileManager.default.isExecutableFile(atPath: $0.appendingPathComponent("dloral-verify").path)
        } ?? root.appendingPathComponent(".build/debug")
    }()

    static func tool(_ name: String, _ arguments: [String]) throws -> Run {
        try run(binFolder.appendingPathComponent(name), arguments)
    }

    /// Width and height from a PNG's IHDR (bytes 16..<24), after checking the signature.
    static func pngSize(_ path: String) throws -> (Int, Int)? {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        guard bytes.count > 24, bytes[0..<8].elementsEqual([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]),
              bytes[12..<16].elementsEqual(Array("IHDR".utf8)) else { return nil }
        func be32(_ at: Int) -> Int { bytes[at..<(at + 4)].reduce(0) { $0 << 8 | Int($1) } }
        return (be32(16), be32(20))
    }

    @Test func pngRoundTripsThroughAStdlibDecoder() throws {
        let (w, h) = (13, 7)
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        var state: UInt32 = 12345
        for i in pixels.indices {
            // Gradients plus noise, so libpng picks several row filters.
            state = state &* 1_103_515_245 &+ 12345
            pixels[i] = i % 5 == 0 ? UInt8(truncatingIfNeeded: state >> 16) : UInt8(truncatingIfNeeded: i * 7 + (i / (w * 3)) * 11)
        }
        let image = RGBImage(width: w, height: h, pixels: pixels)
        let path = Self.work.appendingPathComponent("roundtrip.png").path
        try PNGWriter.write(image, to: path)
        let size = try Self.pngSize(path)
        #expect(size?.0 == w && size?.1 == h)
        // Nothing but the file itself is left in the folder (the temporary was renamed).
        #expect(try FileManager.default.contentsOfDirectory(atPath: Self.work.path).filter { $0.contains("roundtrip") } == ["roundtrip.png"])

        let r = try Self.run(URL(fileURLWithPath: "/usr/bin/env"), ["python3", "-c", Self.pythonDecoder, path])
        #expect(r.status == 0, "\(r.stderr)")
        let parts = r.stdout.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(parts.count == 3)
        guard parts.count == 3 else { return }
        #expect(parts[0] == "\(w)" && parts[1] == "\(h)")
        #expect(parts[2] == pixels.map { String(format: "%02x", $0) }.joined())
    }

    /// libpng's own error (png_error → longjmp in the C shim) becomes a Swift error.
    @Test func libpngErrorsBecomeSwiftErrors() throws {
        #expect(throws: PNGWriter.EncodeError.self) { try PNGWriter.encode(RGBImage(width: 0, height: 3)) }
        do {
            _ = try PNGWriter.encode(RGBImage(width: 0, height: 3))
        } catch let error as PNGWriter.EncodeError {
            #expect(error.message.lowercased().contains("ihdr"), "\(error.message)")
        }
        // A failed write leaves nothing behind.
        let path = Self.work.appendingPathComponent("empty.png").path
        #expect(throws: (any Error).self) { try PNGWriter.write(RGBImage(width: 4, height: 0), to: path) }
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(try FileManager.default.contentsOfDirectory(atPath: Self.work.path).allSatisfy { !$0.contains("empty.png") })
    }

    @Test func colormapEndpoints() {
        #expect(Colormap.viridis(0) == RGB(68, 1, 84))
        #expect(Colormap.viridis(1) == RGB(253, 231, 37))
        #expect(Colormap.viridis(-3) == Colormap.viridis(0))
        #expect(Colormap.viridis(7) == Colormap.viridis(1))
        #expect(Colormap.viridis(.nan) == Colormap.nonFinite)
        // Brightness rises along the ramp (what makes it readable as a scale).
        let luma = stride(from: 0.0, through: 1.0, by: 0.05).map { t -> Double in
            let c = Colormap.viridis(t)
            return 0.299 * Double(c.r) + 0.587 * Double(c.g) + 0.114 * Double(c.b)
        }
        #expect(zip(luma, luma.dropFirst()).allSatisfy { $0 < $1 })
    }

    @Test func frameValuesMapToBytes() {
        #expect(VerificationReport.byte(-1) == 0)
        #expect(VerificationReport.byte(1) == 255)
        #expect(VerificationReport.byte(0) == 128)
        #expect(VerificationReport.byte(-5) == 0 && VerificationReport.byte(5) == 255)
        #expect(VerificationReport.byte(.infinity) == 255 && VerificationReport.byte(.nan) == 0)
    }

    /// merge → quantize --weights fp32 → dloral-verify --report on the tiny fixture, passing and
    /// (with an impossible PSNR bound) failing; a file in the way is refused.
    @Test func reportFolderForTheTinyFixture() throws {
        let merged = Self.work.appendingPathComponent("merged").path
        let dlrt = Self.work.appendingPathComponent("tiny.dlrt").path
        let m = try Self.tool("dloral-convert", ["merge", "--base", "Tests/Fixtures/tiny/base", "--lora", "Tests/Fixtures/tiny/model.pkl", "--output", merged])
        try #require(m.status == 0, "\(m.stderr)")
        let q = try Self.tool("dloral-convert", ["quantize", merged, "--weights", "fp32", "--output", dlrt])
        try #require(q.status == 0, "\(q.stderr)")
        let reference = "Tests/Fixtures/tiny/reference_full.safetensors"

        for (name, extra, status) in [("pass", [String](), Int32(0)), ("fail", ["--min-psnr", "200"], Int32(1))] {
            let folder = Self.work.appendingPathComponent("report-\(name)/nested").path
            let r = try Self.tool("dloral-verify", [dlrt, "--reference", reference, "--json", "--report", folder] + extra)
            #expect(r.status == status, "\(r.stderr)")
            #expect((try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) != nil, "stdout stays one JSON object")
            let html = try String(contentsOfFile: folder + "/index.html", encoding: .utf8)
            #expect(html.contains(name == "pass" ? ">passed<" : ">FAILED<"))
            for stage in ["latents", "unet_input", "unet_output", "x0", "frames", "temporal"] {
                #expect(html.contains("<td>\(stage)</td>"), "\(stage) row")
            }
            // The fixture's output.frames is [2, 3, 64, 320]: two triptychs, shown 2× (64 px rows
            // plus 17 px of margins and titles; the width is three frames, gaps and the scale bar).
            let files = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
            #expect(files == ["frame_0.png", "frame_1.png", "index.html"])
            for t in 0..<2 {
                #expect(html.contains("src=\"frame_\(t).png\""))
                let size = try Self.pngSize(folder + "/frame_\(t).png")
                #expect(size?.1 == (64 + 17) * 2, "\(String(describing: size))")
                let width = size?.0 ?? 0
                #expect(width % 2 == 0 && width >= 2 * (3 * 320 + 4 * 4 + 8) && width <= 2 * (3 * 320 + 64))
                #expect(html.contains("src=\"frame_\(t).png\" width=\"\(width)\" height=\"\((64 + 17) * 2)\""))
            }
        }

        let blocker = Self.work.appendingPathComponent("not-a-folder").path
        _ = FileManager.default.createFile(atPath: blocker, contents: Data("x".utf8))
        let r = try Self.tool("dloral-verify", [dlrt, "--reference", reference, "--report", blocker])
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.contains("not a folder"))
        #expect(r.stdout.isEmpty)
    }

    static func be32(_ v: UInt32) -> [UInt8] { [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: v >> $0) } }

    /// CRC-32 (ISO 3309, reflected 0xEDB88320), as the PNG specification defines it.
    static func crc(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        }
        return c ^ 0xFFFF_FFFF
    }

    /// A chunk as the PNG specification lays it out: length, type, data, CRC of type and data.
    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        return be32(UInt32(data.count)) + body + be32(crc(body))
    }

    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    /// IHDR of a 2×2 8-bit RGB image.
    static let ihdr = chunk("IHDR", be32(2) + be32(2) + [8, 2, 0, 0, 0])

    /// The error reading `bytes` as a PNG file (nil if it reads).
    static func readError(_ bytes: [UInt8], name: String) throws -> FormatError? {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("dloral-png-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        do {
            _ = try PNGReader.read(path: path)
            return nil
        } catch let error as FormatError {
            #expect(error.description.hasPrefix(path), "\(error)")
            return error
        }
    }

    /// A PNG whose tEXt chunk declares 2,113,667,081 bytes in a file of a few dozen: libpng would
    /// allocate the declared length before finding the end of the file, so the reader refuses it
    /// from the chunk headers.
    @Test func pngChunkLongerThanTheFileIsRefused() throws {
        let png = Self.signature + Self.ihdr + Self.be32(2_113_667_081) + Array("tEXt".utf8) + Array("Comment".utf8)
        let error = try #require(try Self.readError(png, name: "long-chunk.png"), "a PNG with a chunk longer than the file was read")
        #expect(error.description.contains("'tEXt' at byte 33 declares 2113667081 bytes"), "\(error)")
    }

    /// Pixel data that is not a zlib stream fails inside libpng's decoder, after the header was
    /// read: an error naming the file, not an abort in libpng's error handler.
    @Test func pngWhosePixelsDoNotDecodeIsAnError() throws {
        let png = Self.signature + Self.ihdr + Self.chunk("IDAT", [0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0x01]) + Self.chunk("IEND", [])
        let error = try #require(try Self.readError(png, name: "bad-idat.png"), "undecodable pixel data was read")
        #expect(error.description.contains("could not be decoded"), "\(error)")
    }
}
