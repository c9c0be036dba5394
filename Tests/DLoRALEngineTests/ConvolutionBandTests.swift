@testable import DLoRALEngine
import DLoRALFormats
import Foundation
import Testing

/// Convolutions whose input is made as they go read it one band of output rows at a time, with
/// padding rows written as zeros: the integer layers' channels-last copy, and the decoder's
/// upsampled or GroupNorm-normalised inputs (integer and float). Each output pixel is computed
/// from its own im2col row (quantized per row, Formats/dlrt.md §4.1, or summed in the GEMM's fixed
/// order), so neither the band size nor making the input per band may change a bit: compared
/// here against one band over the whole image and against `upsampleNearest` / `groupNorm` made
/// whole, which the reference tests check against PyTorch.
@Suite("convolutions in bands of rows")
struct ConvolutionBandTests {
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
        let saved = Ops.bandBytes
        Ops.bandBytes = bytes
        defer { Ops.bandBytes = saved }
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

    @Test("integer: the normalised input made per band gives the bits of groupNormNHWC then the convolution")
    func integerNormalisedBands() throws {
        for (scheme, model) in Self.models {
            let weight = try Self.integerWeight(model, "decoder.up_blocks.0.resnets.0.conv1.weight")
            let c = weight.info.logicalShape[1]
            let x = Self.input([2, c, 13, 9], seed: 21)
            let (scale, shift) = (Self.input([c], seed: 22), Self.input([c], seed: 23))
            let statistics = GroupNormStatistics(groups: 4, mean: (0..<8).map { Float($0) * 0.25 - 1 },
                                                 rstd: (0..<8).map { 0.5 + Float($0) * 0.125 })
            for silu in [false, true] {
                for given in [nil, statistics] {
                    let nhwc = Ops.groupNormNHWC(x, groups: 4, weight: scale, bias: shift, eps: 1e-6, silu: silu, statistics: given)
                    let made = Ops.conv2d(nhwc: nhwc, weight: weight, bias: nil, stride: (1, 1), padding: (1, 1))
                    for bytes in [Int.max / 2, 1, 3 * 9 * c * 4] {
                        let banded = Self.withBandBytes(bytes) {
                            Ops.conv2d(normalizing: x, groups: 4, scale: scale, shift: shift, eps: 1e-6, silu: silu,
                                       statistics: given, weight: weight, bias: nil, stride: (1, 1), padding: (1, 1))
                        }
                        let equal = Self.same(banded, made)
                        #expect(equal, "\(scheme): silu \(silu), statistics \(given != nil), band bytes \(bytes): differ")
                    }
                }
            }
        }
    }

    /// A float weight [O, C, k, k] and bias with values of every sign and magnitude.
    static func floatLayer(out o: Int, in c: Int, kernel k: Int, seed: UInt64) -> (FloatWeight, Tensor) {
        (FloatWeight(input([o, c, k, k], seed: seed)), input([o], seed: seed + 1))
    }

    @Test("float: the normalised input made per band gives the bits of groupNorm then the convolution", arguments: [
        // kernel, stride, padding, input [N, C, H, W], groups
        (3, 1, 1, [2, 8, 13, 9], 4),
        (3, 2, 1, [1, 8, 15, 12], 2),
        (1, 1, 0, [1, 6, 11, 7], 3),
        // K = 576 and 48 outputs: the GEMM's blocks along K and its threads, as in the decoder.
        (3, 1, 1, [1, 64, 40, 36], 8),
    ])
    func floatNormalisedBands(kernel: Int, stride: Int, padding: Int, shape: [Int], groups: Int) throws {
        let x = Self.input(shape, seed: 11)
        let (weight, bias) = Self.floatLayer(out: shape[1] > 32 ? 48 : 5, in: shape[1], kernel: kernel, seed: 3)
        let (scale, shift) = (Self.input([shape[1]], seed: 5), Self.input([shape[1]], seed: 6))
        let statistics = GroupNormStatistics(groups: groups, mean: (0..<shape[0] * groups).map { Float($0) * 0.25 - 0.5 },
                                             rstd: (0..<shape[0] * groups).map { 0.5 + Float($0) * 0.125 })
        for silu in [false, true] {
            for given in [nil, statistics] {
                let normalised = given.map { Ops.groupNorm(x, statistics: $0, weight: scale, bias: shift, silu: silu) }
                    ?? Ops.groupNorm(x, groups: groups, weight: scale, bias: shift, eps: 1e-6, silu: silu)
                for b in [bias, nil] as [Tensor?] {
                    let made = Ops.conv2d(normalised, weight: weight, bias: b, stride: (stride, stride), padding: (padding, padding))
                    let rowBytes = shape[1] * shape[3] * 4
                    for bytes in [Int.max / 2, 1, 2 * rowBytes, 5 * rowBytes] {
                        let banded = Self.withBandBytes(bytes) {
                            Ops.conv2d(normalizing: x, groups: groups, scale: scale, shift: shift, eps: 1e-6, silu: silu,
                                       statistics: given, weight: weight, bias: b, stride: (stride, stride), padding: (padding, padding))
                        }
                        let equal = Self.same(banded, made)
                        #expect(equal, "silu \(silu), statistics \(given != nil), bias \(b != nil), band bytes \(bytes): differ")
                    }
                }
            }
        }
    }

    @Test("float: upsampling gathered per band gives the bits of upsampleNearest then the convolution")
    func floatGatheredUpsampling() throws {
        let x = Self.input([2, 6, 5, 7], seed: 9)
        let (weight, bias) = Self.floatLayer(out: 4, in: 6, kernel: 3, seed: 4)
        for size in [(10, 14), (9, 13), (11, 7)] {
            let made = Ops.conv2d(Ops.upsampleNearest(x, to: size), weight: weight, bias: bias, stride: (1, 1), padding: (1, 1))
            for bytes in [Int.max / 2, 1, 3 * 14 * 6 * 4] {
                let gathered = Self.withBandBytes(bytes) {
                    Ops.conv2d(x, weight: weight, bias: bias, stride: (1, 1), padding: (1, 1), upsampledTo: size)
                }
                let equal = Self.same(gathered, made)
                #expect(equal, "to \(size), band bytes \(bytes): gathered and made differ")
            }
        }
    }
}
