import CKernels
import Foundation
import Testing

/// The integer Conv2d / Linear layers (dloral_int_layer.h) against an independent Swift
/// implementation of Formats/dlrt.md §4.1 (per-row quantization, exact Int64 dot products, one
/// fused multiply-add), bit for bit, on every kernel level.
@Suite("integer layers")
struct IntegerLayerTests {
    typealias Rng = IntegerKernelTests.Rng

    static func qmax(_ bits: Int, _ kp: Int) -> Int {
        bits == 8 ? 127 : min(32767, Int(Int32.max) / (kp * 127))
    }

    /// §4.1 for one row: (q, scale).
    static func quantizeRow(_ x: [Float], bits: Int, kp: Int) -> ([Int], Float) {
        let q = qmax(bits, kp)
        let amax = x.reduce(Float(0)) { max($0, abs($1)) }
        // A zero row, or one so small that qmax / amax overflows float32: zeros, scale 0.
        guard amax > 0, (Float(q) / amax).isFinite else { return ([Int](repeating: 0, count: kp), 0) }
        let inv = Float(q) / amax
        var out = x.map { v -> Int in
            let r = Int((v * inv).rounded(.toNearestOrEven))
            return min(q, max(-q, r))
        }
        out += [Int](repeating: 0, count: kp - x.count)
        return (out, amax / Float(q))
    }

    /// y = fma(Float(Σ q·w), s_a·s_w, b).
    static func dequant(_ acc: Int64, _ sa: Float, _ sw: Float, _ b: Float) -> Float {
        b.addingProduct(Float(acc), sa * sw)
    }

    /// A conv weight [n][c][kh][kw] as int8 rows in (ky, kx, c) order, padded to kp.
    static func rows(_ w: [Int8], n: Int, c: Int, kh: Int, kw: Int, kp: Int) -> [Int8] {
        var out = [Int8](repeating: 0, count: n * kp)
        for o in 0..<n {
            for ch in 0..<c {
                for y in 0..<kh {
                    for x in 0..<kw { out[o * kp + (y * kw + x) * c + ch] = w[((o * c + ch) * kh + y) * kw + x] }
                }
            }
        }
        return out
    }

    struct ConvCase {
        var c, h, w, n, kh, kw, sh, sw, ph, pw: Int

        func geometry(ho: Int, wo: Int) -> dloral_conv_geometry {
            dloral_conv_geometry(c: c, h: h, w: w, kh: kh, kw: kw, sh: sh, sw: sw, ph: ph, pw: pw, ho: ho, wo: wo)
        }
    }

    /// Output pixel (oy, ox)'s im2col row of NCHW input `x` [c][h][w], in (ky, kx, c) order, zeros
    /// where the window lies in the padding.
    static func im2colRow(_ t: ConvCase, x: [Float], oy: Int, ox: Int) -> [Float] {
        var row = [Float](repeating: 0, count: t.c * t.kh * t.kw)
        for ky in 0..<t.kh {
            for kx in 0..<t.kw {
                let iy = oy * t.sh + ky - t.ph, ix = ox * t.sw + kx - t.pw
                guard iy >= 0, iy < t.h, ix >= 0, ix < t.w else { continue }
                for ch in 0..<t.c { row[(ky * t.kw + kx) * t.c + ch] = x[(ch * t.h + iy) * t.w + ix] }
            }
        }
        return row
    }

    /// The reference conv on NCHW input `x` [c][h][w] with logical weights `w` [n][c][kh][kw].
    static func referenceConv(_ t: ConvCase, bits: Int, x: [Float], w: [Int8], scales: [Float], bias: [Float]?) -> [Float] {
        let ho = (t.h + 2 * t.ph - t.kh) / t.sh + 1, wo = (t.w + 2 * t.pw - t.kw) / t.sw + 1
        let k = t.c * t.kh * t.kw, kp = (k + 31) / 32 * 32
        var out = [Float](repeating: 0, count: t.n * ho * wo)
        for oy in 0..<ho {
            for ox in 0..<wo {
                let (q, sa) = quantizeRow(im2colRow(t, x: x, oy: oy, ox: ox), bits: bits, kp: kp)
                for o in 0..<t.n {
                    var acc: Int64 = 0
                    for ch in 0..<t.c {
                        for ky in 0..<t.kh {
                            for kx in 0..<t.kw {
                                acc += Int64(q[(ky * t.kw + kx) * t.c + ch]) * Int64(w[((o * t.c + ch) * t.kh + ky) * t.kw + kx])
                            }
                        }
                    }
                    out[o * ho * wo + oy * wo + ox] = dequant(acc, sa, scales[o], bias?[o] ?? 0)
                }
            }
        }
        return out
    }

    /// `body` with the C description of a layer's weights (rows, scales, bias or none).
    static func withLayerWeights(
        n: Int, kp: Int, _ rows: [Int8], _ scales: [Float], _ bias: [Float]?,
        _ body: (UnsafePointer<dloral_int_layer_weights>) -> Int32
    ) -> Int32 {
        rows.withUnsafeBufferPointer { w in
            scales.withUnsafeBufferPointer { s in
                (bias ?? []).withUnsafeBufferPointer { b in
                    var weights = dloral_int_layer_weights(
                        n: n, kp: kp, rows: w.baseAddress, scales: s.baseAddress, bias: bias == nil ? nil : b.baseAddress)
                    return body(&weights)
                }
            }
        }
    }

    static func runConv(_ kernels: OpaquePointer, _ t: ConvCase, bits: Int, x: [Float], w: [Int8], scales: [Float], bias: [Float]?, split: Int = 1) -> [Float] {
        let ho = (t.h + 2 * t.ph - t.kh) / t.sh + 1, wo = (t.w + 2 * t.pw - t.kw) / t.sw + 1
        let k = t.c * t.kh * t.kw, kp = (k + 31) / 32 * 32
        let packed = rows(w, n: t.n, c: t.c, kh: t.kh, kw: t.kw, kp: kp)
        var hwc = [Float](repeating: 0, count: x.count)
        dloral_chw_to_hwc(kernels, t.c, t.h * t.w, x, &hwc)
        var out = [Float](repeating: .nan, count: t.n * ho * wo)
        let pixels = ho * wo
        for part in 0..<split {
            let p0 = pixels * part / split, p1 = pixels * (part + 1) / split
            var geometry = t.geometry(ho: ho, wo: wo)
            let status = withLayerWeights(n: t.n, kp: kp, packed, scales, bias) { weights in
                out.withUnsafeMutableBufferPointer { o in
                    dloral_int_conv2d(kernels, Int32(bits), &geometry, hwc, weights, o.baseAddress, p0, p1, nil)
                }
            }
            #expect(status == 0)
        }
        return out
    }

    static func randomInputs(_ rng: inout Rng, count: Int, adversarial: Bool) -> [Float] {
        (0..<count).map { i in
            if adversarial {
                // Exact ties of the rounding (x · qmax/amax = m + 0.5 when amax is a power of two),
                // the extremes, and zeros.
                switch i % 5 {
                case 0: return 4
                case 1: return -4
                case 2: return Float(rng.int(-254...254)) / 254 * 4 + 2 / 127
                case 3: return 0
                default: return Float(rng.int(-1000...1000)) / 250
                }
            }
            return Float(rng.int(-100_000...100_000)) / 37_000
        }
    }

    static func randomWeights(_ rng: inout Rng, count: Int, adversarial: Bool) -> [Int8] {
        (0..<count).map { i in adversarial ? (i % 3 == 0 ? 127 : (i % 3 == 1 ? -127 : Int8(rng.int(-127...127)))) : Int8(rng.int(-127...127)) }
    }

    @Test("qmax: 127 for int8; int16 bounded so Kp·q·127 < 2^31")
    func qmaxClosedForm() {
        #expect(dloral_activation_qmax(8, 11520) == 127)
        #expect(dloral_activation_qmax(16, 32) == 32767)
        #expect(dloral_activation_qmax(16, 11520) == 1467)  // 2147483647 / (11520·127) = 1467.8
        #expect(dloral_activation_qmax(16, 4096) == 4128)
        for kp in [32, 320, 2880, 11520, 65536] {
            let q = Int64(dloral_activation_qmax(16, kp))
            #expect(Int64(kp) * q * 127 <= Int64(Int32.max))
            #expect(q == 32767 || Int64(kp) * (q + 1) * 127 > Int64(Int32.max))
        }
    }

    @Test("row quantization: hand-computed values, half-even ties, zero tail")
    func quantizeRowByHand() {
        IntegerKernelTests.onEveryPath { path in
            let kernels = path.kernels
            // amax 1 → x · 127: 127, −63.5 → −64 (even), 31.75 → 32, 0.5 → 0 (even), 1.5 → 2, −2.5 → −2.
            let x: [Float] = [1, -0.5, 0.25, 0.5 / 127, 1.5 / 127, -2.5 / 127, 0, 0, 0]
            var q = [Int8](repeating: 99, count: 32)
            let scale = dloral_quantize_row(kernels, 8, x.count, 32, x, &q)
            #expect(scale == 1 / Float(127), "\(path)")
            #expect(Array(q[0..<6]) == [127, -64, 32, 0, 2, -2], "\(path)")
            #expect(q[6...].allSatisfy { $0 == 0 }, "\(path)")
            var zero = [Int16](repeating: 7, count: 32)
            #expect(dloral_quantize_row(kernels, 16, 20, 32, [Float](repeating: 0, count: 20), &zero) == 0)
            #expect(zero.allSatisfy { $0 == 0 })
            // amax 1e-37: 127 / amax overflows float32 (int8); int16's qmax at Kp 32 is 32767, so
            // 1e-35 overflows too. Both rows are zeros with scale 0 (§4.1); 1e-30 still quantizes.
            for (bits, tiny) in [(Int32(8), Float(1e-37)), (16, 1e-35)] {
                var q16 = [Int16](repeating: 7, count: 32)
                let row: [Float] = [tiny, -tiny / 2, 0, tiny / 3]
                #expect(dloral_quantize_row(kernels, bits, row.count, 32, row, &q16) == 0, "\(path) bits \(bits) amax \(tiny)")
                let stored = bits == 8 ? q16.withUnsafeBytes { Array($0.prefix(32)).map { Int16(Int8(bitPattern: $0)) } } : q16
                #expect(stored.allSatisfy { $0 == 0 }, "\(path) bits \(bits) amax \(tiny): \(stored)")
            }
            var small = [Int8](repeating: 7, count: 32)
            #expect(dloral_quantize_row(kernels, 8, 2, 32, [1e-30, -1e-30], &small) == Float(1e-30) / 127)
            #expect(Array(small[0..<2]) == [127, -127], "\(path)")
        }
    }

    @Test("conv2d: bit-identical to the §4.1 reference, every path, int8 and int16, odd sizes, strides, padding",
          arguments: [8, 16])
    func convMatchesReference(bits: Int) {
        let cases = [
            ConvCase(c: 3, h: 5, w: 7, n: 5, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1),
            ConvCase(c: 4, h: 9, w: 6, n: 7, kh: 3, kw: 3, sh: 2, sw: 2, ph: 0, pw: 1),
            ConvCase(c: 37, h: 4, w: 5, n: 9, kh: 1, kw: 1, sh: 1, sw: 1, ph: 0, pw: 0),
            ConvCase(c: 2, h: 11, w: 8, n: 3, kh: 7, kw: 7, sh: 1, sw: 1, ph: 3, pw: 3),
            ConvCase(c: 40, h: 12, w: 13, n: 6, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1),  // 13·12 px: several row blocks
        ]
        var rng = Rng(state: UInt64(bits))
        for (index, t) in cases.enumerated() {
            for adversarial in [false, true] {
                let x = Self.randomInputs(&rng, count: t.c * t.h * t.w, adversarial: adversarial)
                let w = Self.randomWeights(&rng, count: t.n * t.c * t.kh * t.kw, adversarial: adversarial)
                let scales = (0..<t.n).map { Float($0 + 1) / 900 }
                let bias: [Float]? = index % 2 == 0 ? (0..<t.n).map { Float($0) * 0.25 - 0.5 } : nil
                let want = Self.referenceConv(t, bits: bits, x: x, w: w, scales: scales, bias: bias)
                IntegerKernelTests.onEveryPath { path in
                    let kernels = path.kernels
                    for split in [1, 3] {
                        let got = Self.runConv(kernels, t, bits: bits, x: x, w: w, scales: scales, bias: bias, split: split)
                        #expect(got.map(\.bitPattern) == want.map(\.bitPattern),
                                "case \(index) adversarial \(adversarial) path \(path) split \(split): first difference at \(got.indices.first { got[$0].bitPattern != want[$0].bitPattern } ?? -1)")
                    }
                }
            }
        }
    }

    @Test("linear: bit-identical to the §4.1 reference, every path, row ranges", arguments: [8, 16])
    func linearMatchesReference(bits: Int) {
        var rng = Rng(state: 77 + UInt64(bits))
        for (rows, k, n) in [(1, 1, 1), (7, 33, 5), (130, 320, 9), (5, 1000, 67)] {
            let kp = (k + 31) / 32 * 32
            let x = Self.randomInputs(&rng, count: rows * k, adversarial: rows % 2 == 1)
            let w = Self.randomWeights(&rng, count: n * k, adversarial: rows % 2 == 0)
            var packed = [Int8](repeating: 0, count: n * kp)
            for j in 0..<n { for c in 0..<k { packed[j * kp + c] = w[j * k + c] } }
            let scales = (0..<n).map { Float($0 + 3) / 1000 }
            let bias = (0..<n).map { Float($0) - 2 }
            var want = [Float](repeating: 0, count: rows * n)
            for r in 0..<rows {
                let (q, sa) = Self.quantizeRow(Array(x[(r * k)..<((r + 1) * k)]), bits: bits, kp: kp)
                for j in 0..<n {
                    var acc: Int64 = 0
                    for c in 0..<k { acc += Int64(q[c]) * Int64(w[j * k + c]) }
                    want[r * n + j] = Self.dequant(acc, sa, scales[j], bias[j])
                }
            }
            IntegerKernelTests.onEveryPath { path in
                let kernels = path.kernels
                var got = [Float](repeating: .nan, count: rows * n)
                let half = rows / 2
                for (r0, r1) in [(0, half), (half, rows)] {
                    let status = Self.withLayerWeights(n: n, kp: kp, packed, scales, bias) { weights in
                        dloral_int_linear(kernels, Int32(bits), k, x, k, weights, &got, n, r0, r1, nil)
                    }
                    #expect(status == 0)
                }
                #expect(got.map(\.bitPattern) == want.map(\.bitPattern), "rows \(rows) k \(k) n \(n) path \(path)")
            }
        }
    }
    // MARK: - Block scales (§4.3)

    /// §4.3 for one row of `x` (k columns, padded to kp): §4.1's int8 rule per block of `block`.
    static func quantizeBlocks(_ x: [Float], block: Int, kp: Int) -> ([Int], [Float]) {
        var q: [Int] = [], scales: [Float] = []
        for first in stride(from: 0, to: kp, by: block) {
            let real = Array(x[min(first, x.count)..<min(first + block, x.count)])
            let (qb, s) = quantizeRow(real, bits: 8, kp: block)
            q += qb
            scales.append(s)
        }
        return (q, scales)
    }

    /// acc = bias, then per block in order acc = fma(Float(exact Σ), s_a·s_w, acc).
    static func blockDot(_ q: [Int], _ sa: [Float], _ w: ArraySlice<Int8>, _ sw: ArraySlice<Float>, block: Int, bias: Float) -> Float {
        var acc = bias
        for b in 0..<sa.count {
            var sum: Int64 = 0
            for t in (b * block)..<((b + 1) * block) { sum += Int64(q[t]) * Int64(w[w.startIndex + t]) }
            acc = acc.addingProduct(Float(sum), sa[b] * sw[sw.startIndex + b])
        }
        return acc
    }

    @Test("quantize_row_blocks: hand-computed blocks (a zero block gets scale 0)")
    func blockQuantizationByHand() {
        IntegerKernelTests.onEveryPath { path in
            let kernels = path.kernels
            // Block 0: amax 2 → x · 63.5: 2 → 127, 1 → 63.5 → 64 (even), −0.5 → −31.75 → −32.
            // Block 1: all zero. Block 2: amax 0.5 → x · 254: 0.5 → 127, 0.25 → 63.5 → 64; padding.
            var x = [Float](repeating: 0, count: 70)
            x[0] = 2; x[1] = 1; x[2] = -0.5
            x[64] = 0.5; x[65] = 0.25
            var q = [Int8](repeating: 99, count: 96)
            var scales = [Float](repeating: 9, count: 3)
            dloral_quantize_row_blocks(kernels, 32, x.count, 96, x, &q, &scales)
            #expect(scales == [2 / Float(127), 0, 0.5 / Float(127)], "\(path)")
            #expect(Array(q[0..<3]) == [127, 64, -32], "\(path)")
            #expect(q[32..<64].allSatisfy { $0 == 0 } && Array(q[64..<66]) == [127, 64] && q[66...].allSatisfy { $0 == 0 }, "\(path)")
        }
    }

    @Test("block linear and conv2d: bit-identical to the §4.3 reference, every path", arguments: [32, 64])
    func blockLayersMatchReference(block: Int) {
        var rng = Rng(state: 500 + UInt64(block))
        // Linear: rows × k → n.
        for (rows, k, n) in [(1, 1, 1), (9, 70, 5), (40, 320, 13)] {
            let kp = (k + block - 1) / block * block, nb = kp / block
            let x = Self.randomInputs(&rng, count: rows * k, adversarial: rows % 2 == 1)
            let w = Self.randomWeights(&rng, count: n * k, adversarial: rows % 2 == 0)
            var packed = [Int8](repeating: 0, count: n * kp)
            for j in 0..<n { for c in 0..<k { packed[j * kp + c] = w[j * k + c] } }
            let scales = (0..<(n * nb)).map { Float($0 % 7 + 3) / 1000 }
            let bias = (0..<n).map { Float($0) - 2 }
            var want = [Float](repeating: 0, count: rows * n)
            for r in 0..<rows {
                let (q, sa) = Self.quantizeBlocks(Array(x[(r * k)..<((r + 1) * k)]), block: block, kp: kp)
                for j in 0..<n {
                    want[r * n + j] = Self.blockDot(q, sa, packed[(j * kp)..<((j + 1) * kp)], scales[(j * nb)..<((j + 1) * nb)], block: block, bias: bias[j])
                }
            }
            IntegerKernelTests.onEveryPath { path in
                let kernels = path.kernels
                var got = [Float](repeating: .nan, count: rows * n)
                for (r0, r1) in [(0, rows / 2), (rows / 2, rows)] {
                    let status = Self.withLayerWeights(n: n, kp: kp, packed, scales, bias) { weights in
                        dloral_int_block_linear(kernels, block, k, x, k, weights, &got, n, r0, r1, nil)
                    }
                    #expect(status == 0)
                }
                #expect(got.map(\.bitPattern) == want.map(\.bitPattern), "linear rows \(rows) k \(k) n \(n) block \(block) path \(path)")
            }
        }
        // Conv: 3×3 padded, stride 2, and 1×1.
        for t in [ConvCase(c: 5, h: 6, w: 7, n: 4, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1),
                  ConvCase(c: 9, h: 9, w: 8, n: 6, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1),
                  ConvCase(c: 70, h: 3, w: 4, n: 5, kh: 1, kw: 1, sh: 1, sw: 1, ph: 0, pw: 0),
                  ConvCase(c: 128, h: 5, w: 4, n: 3, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1)] {  // whole blocks per tap
            let ho = (t.h + 2 * t.ph - t.kh) / t.sh + 1, wo = (t.w + 2 * t.pw - t.kw) / t.sw + 1
            let k = t.c * t.kh * t.kw, kp = (k + block - 1) / block * block, nb = kp / block
            let x = Self.randomInputs(&rng, count: t.c * t.h * t.w, adversarial: t.c % 2 == 1)
            let w = Self.randomWeights(&rng, count: t.n * k, adversarial: false)
            let packed = Self.rows(w, n: t.n, c: t.c, kh: t.kh, kw: t.kw, kp: kp)
            let scales = (0..<(t.n * nb)).map { Float($0 % 5 + 1) / 900 }
            var want = [Float](repeating: 0, count: t.n * ho * wo)
            for oy in 0..<ho {
                for ox in 0..<wo {
                    let (q, sa) = Self.quantizeBlocks(Self.im2colRow(t, x: x, oy: oy, ox: ox), block: block, kp: kp)
                    for o in 0..<t.n {
                        want[o * ho * wo + oy * wo + ox] = Self.blockDot(q, sa, packed[(o * kp)..<((o + 1) * kp)], scales[(o * nb)..<((o + 1) * nb)], block: block, bias: 0)
                    }
                }
            }
            var hwc = [Float](repeating: 0, count: x.count)
            dloral_chw_to_hwc(Level.automatic.kernels, t.c, t.h * t.w, x, &hwc)
            IntegerKernelTests.onEveryPath { path in
                let kernels = path.kernels
                var got = [Float](repeating: .nan, count: t.n * ho * wo)
                let pixels = ho * wo
                for (p0, p1) in [(0, pixels / 3), (pixels / 3, pixels)] {
                    var geometry = t.geometry(ho: ho, wo: wo)
                    let status = Self.withLayerWeights(n: t.n, kp: kp, packed, scales, nil) { weights in
                        got.withUnsafeMutableBufferPointer { o in
                            dloral_int_block_conv2d(kernels, block, &geometry, hwc, weights, o.baseAddress, p0, p1, nil)
                        }
                    }
                    #expect(status == 0)
                }
                #expect(got.map(\.bitPattern) == want.map(\.bitPattern), "conv \(t) block \(block) path \(path)")
            }
        }
    }
}
