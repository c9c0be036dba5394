@testable import DLoRALEngine
import DLoRALFormats
import Foundation
import Testing

/// The integer convolution reads its input channels-last one band of output rows at a time, with
/// padding rows written as zeros and, for the decoder's upsamplers, the nearest-upsampled rows
/// gathered from the small input. Each output pixel is quantized and summed from its own im2col
/// row (Formats/dlrt.md §4.1), so neither the band size nor gathering instead of upsampling first
/// may change a bit: compared here against one band over the whole image and against
/// `upsampleNearest` made whole, which the W8A8/W8A16 reference tests check against PyTorch.
@Suite("integer convolution in bands of rows")
struct IntegerConvBandTests {
    /// The tiny model quantized with each integer scheme, once per process.
    static let models: [(String, RuntimeModel)] = {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("dloral-bands-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let merged = work.appendingPathComponent("merged").path
        let m = try! ReportTests.tool(
            "dloral-convert", ["merge", "--base", "Tests/Fixtures/tiny/base", "--lora", "Tests/Fixtures/tiny/model.pkl", "--output", merged])
        precondition(m.status == 0, m.stderr)
        let schemes: [(String, [String])] = [
            ("W8A8", ["--activations", "int8"]),
            ("W8A16", ["--activations", "int16"]),
            ("W8A8 block32", ["--activations", "int8", "--int8-granularity", "block32"]),
        ]
        return schemes.map { name, options in
            let dlrt = work.appendingPathComponent("\(name.replacingOccurrences(of: " ", with: "-")).dlrt").path
            let q = try! ReportTests.tool("dloral-convert", ["quantize", merged, "--weights", "int8"] + options + ["--output", dlrt])
            precondition(q.status == 0, q.stderr)
            return (name, try! RuntimeModel(file: try DLRTFile(path: dlrt)))
        }
    }()

    /// Deterministic values in [-2, 2), some exactly zero, so rows of zeros occur too.
    static func input(_ shape: [Int], seed: UInt64) -> Tensor {
        var state = seed
        let count = shape.reduce(1, *)
        return Tensor(shape: shape, data: (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let v = Float(Int64(bitPattern: state >> 11) % 4096) / 1024
            return abs(v) < 0.25 ? 0 : v
        })
    }

    static func same(_ a: Tensor, _ b: Tensor) -> Bool {
        a.shape == b.shape && zip(a.data, b.data).allSatisfy { $0.bitPattern == $1.bitPattern }
    }

    /// Runs `body` with bands of at most `bytes` of channels-last input (at least one output row).
    static func withBandBytes<R>(_ bytes: Int, _ body: () throws -> R) rethrows -> R {
        let saved = Ops.channelsLastBandBytes
        Ops.channelsLastBandBytes = bytes
        defer { Ops.channelsLastBandBytes = saved }
        return try body()
    }

    static func integerWeight(_ model: RuntimeModel, _ name: String) throws -> IntegerWeight {
        guard case .integer(let weight) = try BlocksWeight.load(name, from: model.vae) else {
            throw EngineError.shapeMismatch(operation: name, expected: "an integer layer", actual: [])
        }
        return weight
    }

    @Test("bands of one to a few output rows give the bits of one band", arguments: [
        // weight, stride, padding, input [N, C, H, W]
        ("decoder.up_blocks.0.resnets.0.conv1.weight", 1, 1, [2, 16, 13, 9]),
        ("decoder.up_blocks.3.resnets.0.conv_shortcut.weight", 1, 0, [1, 16, 11, 7]),
        ("encoder.down_blocks.0.downsamplers.0.conv.weight", 2, 0, [1, 8, 15, 12]),
        ("encoder.conv_in.weight", 1, 1, [1, 3, 17, 5]),
    ])
    func bandsGiveTheBitsOfOneBand(name: String, stride: Int, padding: Int, shape: [Int]) throws {
        var ran = 0
        for (scheme, model) in Self.models {
            guard let weight = try? Self.integerWeight(model, name) else { continue }
            ran += 1
            let x = Self.input(shape, seed: UInt64(shape.reduce(0, +)))
            let whole = Self.withBandBytes(Int.max / 2) {
                Ops.conv2d(x, weight: weight, bias: nil, stride: (stride, stride), padding: (padding, padding))
            }
            let rowBytes = shape[1] * shape[3] * 4
            for rows in [1, 2, 3, 5] {
                let banded = Self.withBandBytes(rows * rowBytes) {
                    Ops.conv2d(x, weight: weight, bias: nil, stride: (stride, stride), padding: (padding, padding))
                }
                let equal = Self.same(banded, whole)
                #expect(equal, "\(scheme) \(name): bands of \(rows) input rows differ")
            }
        }
        #expect(ran > 0, "\(name) is an integer layer in none of the files")
    }

    @Test("upsampling gathered per band gives the bits of upsampleNearest then the convolution")
    func gatheredUpsampling() throws {
        for (scheme, model) in Self.models {
            let weight = try Self.integerWeight(model, "decoder.up_blocks.0.upsamplers.0.conv.weight")
            let x = Self.input([2, weight.info.logicalShape[1], 5, 7], seed: 7)
            // ×2 as the VAE decoder, and a size that is not a multiple (the UNet's upsamplers
            // follow the skip connection's size).
            for size in [(10, 14), (9, 13), (11, 7)] {
                let made = Ops.conv2d(Ops.upsampleNearest(x, to: size), weight: weight, bias: nil, stride: (1, 1), padding: (1, 1))
                for bytes in [Int.max / 2, 1, 3 * 14 * weight.info.logicalShape[1] * 4] {
                    let gathered = Self.withBandBytes(bytes) {
                        Ops.conv2d(x, weight: weight, bias: nil, stride: (1, 1), padding: (1, 1), upsampledTo: size)
                    }
                    let equal = Self.same(gathered, made)
                    #expect(equal, "\(scheme): to \(size), band bytes \(bytes): gathered and made differ")
                }
            }
        }
    }
}
