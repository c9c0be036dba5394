import DLoRALEngine
import Foundation
import Testing

/// Ops checked against values worked out by hand, independent of PyTorch.
@Suite("Ops closed forms")
struct OpsClosedFormTests {
    func close(_ a: [Float], _ b: [Float], _ tolerance: Float = 1e-6) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tolerance }
    }

    @Test func groupNormOfConstantIsBias() {
        let x = Tensor(repeating: 3.5, shape: [2, 4, 3, 3])
        let bias = Tensor(shape: [4], data: [1, -2, 0.5, 7])
        let weight = Tensor(shape: [4], data: [2, 2, 2, 2])
        let y = Ops.groupNorm(x, groups: 2, weight: weight, bias: bias, eps: 1e-5)
        #expect(y.shape == x.shape)
        for n in 0..<2 {
            for c in 0..<4 {
                let plane = Array(y.data[((n * 4 + c) * 9)..<((n * 4 + c) * 9 + 9)])
                #expect(plane.allSatisfy { $0 == bias.data[c] })
            }
        }
    }

    /// The channels-last GroupNorm the integer conv reads: the closed form of a constant input
    /// (every value the bias), then bit for bit `groupNorm` transposed, on two images with
    /// channels off the 8-channel blocks and a non-square plane.
    @Test func groupNormNHWCIsGroupNormTransposed() {
        let constant = Ops.groupNormNHWC(
            Tensor(repeating: -1.25, shape: [1, 4, 2, 3]), groups: 2, weight: nil,
            bias: Tensor(shape: [4], data: [1, -2, 0.5, 7]), eps: 1e-5)
        #expect(constant.shape == [1, 2, 3, 4])
        #expect(constant.data == Array(repeating: [Float(1), -2, 0.5, 7], count: 6).flatMap { $0 })

        let (n, c, h, w) = (2, 12, 5, 7)
        var state: UInt32 = 12345
        let data = (0..<(n * c * h * w)).map { _ -> Float in
            state = state &* 1_664_525 &+ 1_013_904_223
            return Float(state >> 8) / Float(1 << 24) * 4 - 1.5
        }
        let x = Tensor(shape: [n, c, h, w], data: data)
        let weight = Tensor(shape: [c], data: (0..<c).map { 0.5 + Float($0) / 7 })
        let bias = Tensor(shape: [c], data: (0..<c).map { Float($0) / 3 - 2 })
        for silu in [false, true] {
            let nchw = Ops.groupNorm(x, groups: 3, weight: weight, bias: bias, eps: 1e-6, silu: silu)
            let nhwc = Ops.groupNormNHWC(x, groups: 3, weight: weight, bias: bias, eps: 1e-6, silu: silu)
            #expect(nhwc.shape == [n, h, w, c])
            var mismatches = 0
            for b in 0..<n {
                for ch in 0..<c {
                    for p in 0..<(h * w) where nhwc.data[(b * h * w + p) * c + ch].bitPattern
                        != nchw.data[(b * c + ch) * h * w + p].bitPattern {
                        mismatches += 1
                    }
                }
            }
            #expect(mismatches == 0, "silu \(silu)")
        }
    }

    @Test func groupNormOfPlusMinusOne() {
        // One group of four values ±1: mean 0, biased variance 1.
        let x = Tensor(shape: [1, 2, 1, 2], data: [1, -1, -1, 1])
        let y = Ops.groupNorm(x, groups: 1, weight: nil, bias: nil, eps: 0.25)
        let expected = 1 / Float(1.25).squareRoot()
        #expect(close(y.data, [expected, -expected, -expected, expected]))
    }

    @Test func layerNormRows() {
        let x = Tensor(shape: [2, 2], data: [0, 2, 5, 5])
        // Row 1: mean 1, variance 1 → ±1 (eps shifts it by 5e-7); row 2 is constant → bias.
        let y = Ops.layerNorm(x, weight: Tensor(shape: [2], data: [3, 3]), bias: Tensor(shape: [2], data: [1, 1]), eps: 1e-6)
        #expect(close(y.data, [-2, 4, 1, 1], 1e-5))
    }

    @Test func activationsAtKnownPoints() {
        let x = Tensor(shape: [3], data: [0, 10, -10])
        let ten: Float = 10
        let expectedSilu: [Float] = [0, ten / (1 + exp(-ten)), -ten / (1 + exp(ten))]
        #expect(close(Ops.silu(x).data, expectedSilu))
        let g = Ops.gelu(Tensor(shape: [3], data: [0, 1, 8]))
        // gelu(1) = 0.5 · (1 + erf(1/√2)) = 0.8413447
        #expect(close(g.data, [0, 0.841_344_7, 8]))
        let geglu = Ops.geglu(Tensor(shape: [1, 4], data: [2, 3, 1, 0]))
        #expect(close(geglu.data, [2 * 0.841_344_7, 0]))
    }

    @Test func softmaxKnownValues() {
        let x = Tensor(shape: [2, 2], data: [0, Float(log(3.0)), 1000, 1000])
        #expect(close(Ops.softmax(x).data, [0.25, 0.75, 0.5, 0.5]))
        // Over the first axis of a [2, 2] tensor.
        let columns = Ops.softmax(Tensor(shape: [2, 2], data: [0, 5, 0, 5]), axis: 0)
        #expect(close(columns.data, [0.5, 0.5, 0.5, 0.5]))
    }

    @Test func attentionWithEqualKeysAveragesValues() {
        // Two heads of width 1; identical keys give uniform weights, so each output is the mean
        // of that head's values.
        let q = Tensor(shape: [1, 1, 2], data: [3, -1])
        let k = Tensor(shape: [1, 2, 2], data: [1, 1, 1, 1])
        let v = Tensor(shape: [1, 2, 2], data: [2, 10, 4, 20])
        let y = Ops.attention(q: q, k: k, v: v, heads: 2)
        #expect(y.shape == [1, 1, 2])
        #expect(close(y.data, [3, 15], 1e-5))
    }

    @Test func attentionSingleKeyReturnsItsValue() {
        let q = Tensor(shape: [1, 3, 4], data: (0..<12).map { Float($0) })
        let k = Tensor(shape: [1, 1, 4], data: [1, 2, 3, 4])
        let v = Tensor(shape: [1, 1, 4], data: [9, 8, 7, 6])
        let y = Ops.attention(q: q, k: k, v: v, heads: 2)
        #expect(close(y.data, [9, 8, 7, 6, 9, 8, 7, 6, 9, 8, 7, 6]))
    }

    @Test func attentionWithInt8LogitsAndEqualKeysAveragesValues() {
        // Smoothing takes each key channel's mean out, so equal keys leave every logit exactly 0
        // on the integer path too: uniform weights, each output the mean of its head's values.
        let q = Tensor(shape: [1, 3, 4], data: [3, -1, 0.5, 7, 2, 2, -9, 1, 0, 0, 4, -4])
        let k = Tensor(shape: [1, 2, 4], data: [1, -2, 5, 0.25, 1, -2, 5, 0.25])
        let v = Tensor(shape: [1, 2, 4], data: [2, 10, 1, -1, 4, 20, 3, -3])
        let y = Ops.attention(q: q, k: k, v: v, heads: 2, int8Logits: true)
        #expect(y.shape == [1, 3, 4])
        #expect(close(y.data, [3, 15, 2, -2, 3, 15, 2, -2, 3, 15, 2, -2], 1e-6))
    }

    @Test func attentionWithInt8LogitsSingleKeyReturnsItsValue() {
        let q = Tensor(shape: [1, 3, 4], data: (0..<12).map { Float($0) })
        let k = Tensor(shape: [1, 1, 4], data: [1, 2, 3, 4])
        let v = Tensor(shape: [1, 1, 4], data: [9, 8, 7, 6])
        let y = Ops.attention(q: q, k: k, v: v, heads: 2, int8Logits: true)
        #expect(y.data == [9, 8, 7, 6, 9, 8, 7, 6, 9, 8, 7, 6])
    }

    @Test func attentionWithZeroWidthHeadsAveragesValues() {
        // d = 0: every logit is 0 (an empty dot product), so each query gets the mean value.
        let q = Tensor(shape: [1, 2, 0], data: [])
        let k = Tensor(shape: [1, 3, 0], data: [])
        let v = Tensor(shape: [1, 3, 2], data: [1, 2, 3, 4, 5, 9])
        let y = Ops.attention(q: q, k: k, v: v, heads: 1)
        #expect(y.shape == [1, 2, 2])
        #expect(close(y.data, [3, 5, 3, 5], 1e-6))
    }

    @Test func convWithIdentityKernelCopies() {
        let x = Tensor(shape: [1, 2, 3, 4], data: (0..<24).map { Float($0) })
        var kernel = [Float](repeating: 0, count: 2 * 2 * 9)
        kernel[0 * 18 + 0 * 9 + 4] = 1  // output 0 ← input 0, centre tap
        kernel[1 * 18 + 1 * 9 + 4] = 1  // output 1 ← input 1
        let y = Ops.conv2d(x, weight: Tensor(shape: [2, 2, 3, 3], data: kernel),
                           bias: Tensor(shape: [2], data: [0, 100]), padding: (1, 1))
        #expect(y.shape == [1, 2, 3, 4])
        #expect(y.data == x.data.enumerated().map { $0.offset < 12 ? $0.element : $0.element + 100 })
    }

    @Test func convStrideTwoSumsWindows() {
        // All-ones 3×3 kernel, stride 2, padding 1 on a 4×4 of ones: corner windows see 4 pixels,
        // edge windows 6, inner 9.
        let x = Tensor(repeating: 1, shape: [1, 1, 4, 4])
        let y = Ops.conv2d(x, weight: Tensor(repeating: 1, shape: [1, 1, 3, 3]), bias: nil,
                           stride: (2, 2), padding: (1, 1))
        #expect(y.shape == [1, 1, 2, 2])
        #expect(y.data == [4, 6, 6, 9])
    }

    @Test func oneByOneConvIsMatrixProduct() {
        let x = Tensor(shape: [1, 2, 1, 2], data: [1, 2, 3, 4])  // channels (1,2) and (3,4)
        let w = Tensor(shape: [3, 2, 1, 1], data: [1, 0, 0, 1, 1, 1])
        let y = Ops.conv2d(x, weight: w, bias: nil)
        #expect(y.data == [1, 2, 3, 4, 4, 6])
        let linear = Ops.linear(Tensor(shape: [2, 2], data: [1, 3, 2, 4]),
                                weight: Tensor(shape: [3, 2], data: [1, 0, 0, 1, 1, 1]),
                                bias: Tensor(shape: [3], data: [0, 0, 1]))
        #expect(linear.data == [1, 3, 5, 2, 4, 7])
    }

    @Test func nearestUpsampleRepeatsPixels() {
        let x = Tensor(shape: [1, 1, 2, 2], data: [1, 2, 3, 4])
        let y = Ops.upsampleNearest(x, to: (4, 4))
        #expect(y.data == [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4])
        // 2 → 3: floor(d · 2/3) = 0, 0, 1.
        #expect(Ops.upsampleNearest(x, to: (2, 3)).data == [1, 1, 2, 3, 3, 4])
    }

    @Test func avgPoolAveragesAndDropsOddEdge() {
        let x = Tensor(shape: [1, 1, 3, 3], data: [1, 2, 9, 3, 4, 9, 9, 9, 9])
        let y = Ops.avgPool2x(x)
        #expect(y.shape == [1, 1, 1, 1])
        #expect(y.data == [2.5])
    }

    @Test func bilinearAlignCornersInterpolatesLinearly() {
        let x = Tensor(shape: [1, 1, 1, 2], data: [0, 2])
        #expect(close(Ops.interpolateBilinear(x, size: (1, 3), alignCorners: true).data, [0, 1, 2]))
        // Half-pixel centres, 2 → 4: sources -0.25→0 (clamped), 0.25, 0.75, 1.25→edge.
        #expect(close(Ops.interpolateBilinear(x, size: (1, 4), alignCorners: false).data, [0, 0.5, 1.5, 2]))
    }

    @Test func bicubicPreservesConstantsAndIdentity() {
        let constant = Tensor(repeating: 0.75, shape: [1, 2, 5, 6])
        let resized = Ops.interpolateBicubic(constant, size: (3, 11))
        // The taps' weights sum to 1 only up to float rounding (PyTorch itself is 4.8e-7 off).
        let drift = resized.data.map { abs($0 - 0.75) }.max() ?? 0
        #expect(drift < 2e-6, "constant drifted by \(drift)")
        let x = Tensor(shape: [1, 1, 2, 3], data: [1, -2, 3, 4, 5, -6])
        #expect(close(Ops.interpolateBicubic(x, size: (2, 3)).data, x.data))
        // 2× downsample at integer-plus-half sources: taps weighted (-0.09375, 0.59375) symmetric.
        let line = Tensor(shape: [1, 1, 1, 4], data: [0, 0, 1, 0])
        let half = Ops.interpolateBicubic(line, size: (1, 2))
        // Output 0 (source 0.5) sees the 1 through its far tap, output 1 (source 2.5) through a
        // near tap.
        #expect(close(half.data, [-0.09375, 0.59375]))
    }

    @Test func bicubicUpsampleMatchesPyTorchValues() {
        // Upsampling reaches source index −1 (clamped) and negative fractions; the op fixture
        // only downsamples. Values printed by torch 2.15 F.interpolate(mode='bicubic').
        let x = Tensor(shape: [1, 1, 2, 3], data: [1, -2, 3, 4, 5, -6])
        let halfPixel: [Float] = [
            1.1055326, 0.25078148, -1.8729452, -2.6076396, -0.27673593, 2.9643366, 4.479745,
            2.6093292, 2.4183664, 2.2346926, 1.5, 0.1355691, -1.1501443, -1.8279884,
            4.1131263, 4.5859513, 6.3423295, 5.607638, 0.547874, -5.264623, -8.1357193]
        let corners: [Float] = [
            1, -0.22222328, -1.611111, -2, -0.75925976, 1.2592597, 3,
            2.5, 2.3518522, 2.1481488, 1.5, 0.44444445, -0.6111107, -1.5,
            4, 4.9259276, 5.9074087, 5, 1.6481487, -2.481481, -6]
        #expect(close(Ops.interpolateBicubic(x, size: (3, 7)).data, halfPixel, 1e-5))
        #expect(close(Ops.interpolateBicubic(x, size: (3, 7), alignCorners: true).data, corners, 1e-5))
    }

    @Test func gridSampleIdentityAndFlowWarpZeroFlowCopy() {
        let x = Tensor(shape: [1, 1, 2, 3], data: [1, 2, 3, 4, 5, 6])
        var grid = [Float]()
        for y in 0..<2 { for xx in 0..<3 { grid += [Float(xx) - 1, Float(y) * 2 - 1] } }
        let sampled = Ops.gridSample(x, grid: Tensor(shape: [1, 2, 3, 2], data: grid))
        #expect(close(sampled.data, x.data))
        let warped = Ops.flowWarp(x, flow: Tensor(zeros: [1, 2, 3, 2]))
        #expect(close(warped.data, x.data))
        // A half-pixel shift right: midpoints, and the last column reads half outside (zeros).
        var shift = Tensor(zeros: [1, 2, 3, 2]).data
        for i in stride(from: 0, to: shift.count, by: 2) { shift[i] = 0.5 }
        let shifted = Ops.flowWarp(x, flow: Tensor(shape: [1, 2, 3, 2], data: shift))
        #expect(close(shifted.data, [1.5, 2.5, 1.5, 4.5, 5.5, 3]))
        let border = Ops.flowWarp(x, flow: Tensor(shape: [1, 2, 3, 2], data: shift), paddingMode: .border)
        #expect(close(border.data, [1.5, 2.5, 3, 4.5, 5.5, 6]))
    }

    @Test func timestepEmbeddingAtZeroAndOne() {
        let y = Ops.timestepEmbedding(Tensor(shape: [2], data: [0, 1]), dim: 4)
        // freqs: exp(0) = 1, exp(-ln(1e4)/2) = 0.01; flip puts cos first.
        #expect(close(Array(y.data[0..<4]), [1, 1, 0, 0]))
        let atOne: [Float] = [Float(cos(1.0)), Float(cos(0.01)), Float(sin(1.0)), Float(sin(0.01))]
        #expect(close(Array(y.data[4..<8]), atOne))
        #expect(Ops.timestepEmbedding(Tensor(shape: [1], data: [5]), dim: 5).data.last == 0)
    }

    @Test func reshapeInfersAndRejects() throws {
        let t = Tensor(zeros: [2, 3, 4])
        #expect(try t.reshaped([6, -1]).shape == [6, 4])
        #expect(throws: EngineError.self) { try t.reshaped([5, -1]) }
        #expect(throws: EngineError.self) { try t.reshaped([-1, -1]) }
    }
}
