import DLoRALEngine
import DLoRALFormats
import Foundation
import Testing

/// The reference files of Tests/Fixtures/footage/, written by Pillow 13 and torch
/// (Tools/fixtures/make_footage_references.py).
enum FootageFixture {
    static let folder = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/footage")

    static let resize = try? SafetensorsFile(path: folder.appendingPathComponent("resize.safetensors").path)
    static let prepare = try? SafetensorsFile(path: folder.appendingPathComponent("prepare.safetensors").path)
    static let color = try? SafetensorsFile(path: folder.appendingPathComponent("color.safetensors").path)

    /// The cases listed in `metadata[key]` (a JSON array of objects).
    static func cases(_ file: SafetensorsFile?, _ key: String) -> [JSONValue] {
        guard let file, let text = file.tensors.metadata[key],
            let list = (try? StrictJSONParser.parse(text))?.arrayValue
        else { return [] }
        return list
    }

    /// A uint8 [H, W, 3] tensor as an image.
    static func image(_ file: SafetensorsFile?, _ name: String) throws -> RGBImage {
        guard let view = file?.tensors[name] else { throw EngineError.missingTensor(name: name) }
        guard view.dtype == .uint8, view.shape.count == 3, view.shape[2] == 3 else {
            throw EngineError.shapeMismatch(operation: name, expected: "uint8 [H, W, 3]", actual: view.shape)
        }
        return RGBImage(width: view.shape[1], height: view.shape[0], pixels: view.contiguousData())
    }

    static func sha256(_ image: RGBImage) -> String {
        image.pixels.withUnsafeBytes { DLRT.sha256Hex($0) }
    }
}

/// One Pillow `Image.resize` case.
struct ResizeCase: Sendable, CustomTestStringConvertible {
    let name: String
    let input: String
    let width: Int
    let height: Int
    let filter: PillowResample.Filter
    var testDescription: String { name }

    static let all: [ResizeCase] = FootageFixture.cases(FootageFixture.resize, "resize").compactMap { c in
        guard let name = c["name"]?.stringValue, let input = c["input"]?.stringValue,
            let width = c["width"]?.intValue, let height = c["height"]?.intValue,
            let filter = c["filter"]?.stringValue
        else { return nil }
        return ResizeCase(name: name, input: input, width: width, height: height,
                          filter: filter == "lanczos" ? .lanczos : .bicubic)
    }
}

/// One upstream preparation case (Pillow through Tools/reference/frames.py).
struct PrepareCase: Sendable, CustomTestStringConvertible {
    let name: String
    let input: String
    let options: FramePreparation
    let enlarged: Bool
    let width: Int
    let height: Int
    let finishedWidth: Int
    let finishedHeight: Int
    let preparedDigest: String?
    let finishedDigest: String?
    var testDescription: String { name }

    static let all: [PrepareCase] = FootageFixture.cases(FootageFixture.prepare, "prepare").compactMap { c in
        guard let name = c["name"]?.stringValue, let input = c["input"]?.stringValue,
            let upscale = c["upscale"]?.intValue, let processSize = c["process_size"]?.intValue,
            let enlarged = c["enlarged"]?.boolValue, let width = c["width"]?.intValue,
            let height = c["height"]?.intValue, let fw = c["finished_width"]?.intValue,
            let fh = c["finished_height"]?.intValue
        else { return nil }
        return PrepareCase(
            name: name, input: input, options: FramePreparation(upscale: upscale, processSize: processSize),
            enlarged: enlarged, width: width, height: height, finishedWidth: fw, finishedHeight: fh,
            preparedDigest: c["prepared_sha256"]?.stringValue, finishedDigest: c["finished_sha256"]?.stringValue)
    }
}

@Suite("frame preparation (Pillow resampling, upstream's steps)")
struct FramePreparationTests {
    @Test func fixturesPresent() {
        #expect(FootageFixture.resize != nil && FootageFixture.prepare != nil)
        #expect(ResizeCase.all.count >= 50)
        #expect(PrepareCase.all.count >= 7)
    }

    /// Bit-for-bit equality with Pillow's Image.resize: both filters, up and down, one-pixel
    /// sides, both pass orders, the unchanged size.
    @Test(arguments: ResizeCase.all)
    func resizeEqualsPillow(_ c: ResizeCase) throws {
        let input = try FootageFixture.image(FootageFixture.resize, "image.\(c.input)")
        let expected = try FootageFixture.image(FootageFixture.resize, "resize.\(c.name)")
        let actual = PillowResample.resize(input, width: c.width, height: c.height, filter: c.filter)
        #expect(actual.width == expected.width && actual.height == expected.height)
        let differing = zip(actual.pixels, expected.pixels).filter { $0 != $1 }.count
        #expect(differing == 0, "\(differing) of \(expected.pixels.count) bytes differ from Pillow")
    }

    /// Upstream's preparation (enlargement of small inputs, ×upscale bicubic, Lanczos to a
    /// multiple of 8) and the finish step, against Pillow's.
    @Test(arguments: PrepareCase.all)
    func prepareAndFinishEqualPillow(_ c: PrepareCase) throws {
        let input = try FootageFixture.image(FootageFixture.prepare, "image.\(c.input)")
        let size = c.options.preparedSize(width: input.width, height: input.height)
        #expect(size.width == c.width && size.height == c.height && size.enlarged == c.enlarged)
        #expect(c.options.problem(width: input.width, height: input.height) == nil)

        let prepared = c.options.prepare(input)
        #expect(prepared.enlarged == c.enlarged)
        #expect(prepared.originalWidth == input.width && prepared.originalHeight == input.height)
        #expect(prepared.image.width == c.width && prepared.image.height == c.height)

        // The finish step gets the inverted prepared frame as a stand-in for the model output.
        let standIn = RGBImage(
            width: prepared.image.width, height: prepared.image.height, pixels: prepared.image.pixels.map { 255 - $0 })
        let finished = c.options.finish(standIn, for: prepared)
        #expect(finished.width == c.finishedWidth && finished.height == c.finishedHeight)

        if let digest = c.preparedDigest {
            #expect(FootageFixture.sha256(prepared.image) == digest)
            #expect(FootageFixture.sha256(finished) == c.finishedDigest)
        } else {
            #expect(prepared.image == (try FootageFixture.image(FootageFixture.prepare, "prepare.\(c.name)")))
            #expect(finished == (try FootageFixture.image(FootageFixture.prepare, "finish.\(c.name)")))
        }
    }

    /// Upstream's size arithmetic, hand-computed: 320×180 at the defaults needs no enlargement
    /// (both sides ≥ 512 / 4 = 128) and becomes 1280×720; 100×50 is enlarged by 128 / 50 = 2.56
    /// to int(256.0)×int(128.0) = 256×128, then ×4 = 1024×512; 33×21 by 128 / 21 to
    /// int(201.14…) = 201 × 128, ×4 = 804×512, rounded down to 800×512.
    @Test func preparedSizes() {
        let defaults = FramePreparation()
        #expect(defaults.upscale == 4 && defaults.processSize == 512)
        #expect(defaults.preparedSize(width: 320, height: 180) == (1280, 720, false))
        #expect(defaults.preparedSize(width: 100, height: 50) == (1024, 512, true))
        #expect(defaults.preparedSize(width: 33, height: 21) == (800, 512, true))
        #expect(defaults.preparedSize(width: 127, height: 300) == (512, 1208, true))
        #expect(FramePreparation(upscale: 2, processSize: 0).preparedSize(width: 5, height: 9) == (8, 16, false))
    }

    @Test func problemsAreReportedBeforeDecoding() {
        #expect(FramePreparation(upscale: 0).problem(width: 10, height: 10) != nil)
        #expect(FramePreparation().problem(width: 0, height: 10) != nil)
        // 3 × 2 = 6 pixels wide: below one multiple of 8 once prepared.
        #expect(FramePreparation(upscale: 2, processSize: 0).problem(width: 3, height: 40)?.contains("at least 8") == true)
        // A 1-pixel-high strip enlarged to 128 rows would be 12.8 million pixels wide.
        #expect(FramePreparation().problem(width: 100_000, height: 1)?.contains("enlarged") == true)
        #expect(FramePreparation().problem(width: 320, height: 180) == nil)
    }

    /// to_tensor(image) * 2 - 1 against torch, for all 256 levels in every channel.
    @Test func modelInputEqualsTorch() throws {
        let image = try FootageFixture.image(FootageFixture.prepare, "model_input.image")
        let expected = try Tensor.load("model_input.expected", from: #require(FootageFixture.prepare).tensors)
        let actual = FramePreparation.modelInput(image)
        #expect(actual.shape == [1, 3, 16, 16])
        #expect(actual == expected)
    }

    /// ToPILImage(frame * 0.5 + 0.5) against torch (exactly: elementwise float32 steps), frame 1
    /// of two, including values that land on byte boundaries.
    @Test func outputImageEqualsTorch() throws {
        let frames = try Tensor.load("output_image.frames", from: #require(FootageFixture.prepare).tensors)
        let expected = try FootageFixture.image(FootageFixture.prepare, "output_image.expected")
        #expect(FramePreparation.outputImage(frames, frame: 1) == expected)
    }

    /// Truncation, not rounding, hand-computed: 0 → 0.5 × 255 = 127.5 → 127 (rounding gives
    /// 128); -1 → 0; 1 → 255; 0.9 → 0.95 × 255 = 242.25 → 242; 0.5 → 0.75 × 255 = 191.25 → 191;
    /// -0.9 → 0.05 × 255 = 12.75 → 12; 0.999 → 0.9995 × 255 = 254.87 → 254 (rounding gives 255).
    /// -0.6 shows the float32 steps: float32(-0.6) is slightly below -0.6, so x·0.5 + 0.5 is
    /// slightly below 0.2 and × 255 gives 50.999996 in float32 → 50, not 51.
    @Test func outputImageTruncates() {
        let values: [Float] = [0, -1, 1, 0.9, 0.5, -0.6]
        let frames = Tensor(
            shape: [2, 3, 1, 6],
            data: [Float](repeating: 7, count: 18) + values + values.map { -$0 } + [Float](repeating: 0.999, count: 6))
        let image = FramePreparation.outputImage(frames, frame: 1)
        #expect(image.width == 6 && image.height == 1)
        #expect((0..<6).map { image[$0, 0].r } == [127, 0, 255, 242, 191, 50])
        #expect((0..<5).map { image[$0, 0].g } == [127, 255, 0, 12, 63])
        #expect((0..<6).allSatisfy { image[$0, 0].b == 254 })
    }
}
