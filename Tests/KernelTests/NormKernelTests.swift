import CKernels
import Foundation
import Testing

/// dloral_silu and dloral_group_norm against Double closed forms, and the same bits on every
/// kernel level.
@Suite("GroupNorm and SiLU kernels")
struct NormKernelTests {
    typealias Rng = IntegerKernelTests.Rng

    static func uniform(_ rng: inout Rng, _ low: Float, _ high: Float) -> Float {
        low + (high - low) * Float(rng.next() >> 40) / Float(1 << 24)
    }

    @Test("SiLU is within 2.5e-7 relative of PyTorch's float x / (1 + exp(−x)) with a correctly rounded exp, over [−90, 90]")
    func siluAccuracy() {
        var rng = Rng(state: 5)
        var x = (0..<200_000).map { _ in Self.uniform(&rng, -90, 90) }
        x += (0..<20_000).map { _ in Self.uniform(&rng, -1e-3, 1e-3) }
        x += [0, -0.0, 1, -1, 87.3, -87.3, 88, -88, 89.5, -89.5, 1e-30, -1e-30]
        IntegerKernelTests.onEveryPath { path in
            let kernels = path.kernels
            var y = [Float](repeating: 0, count: x.count)
            dloral_silu(kernels, x.count, x, &y)
            var worst = 0.0, worstAt: Float = 0
            for (value, got) in zip(x, y) {
                // As PyTorch computes it in float: exp(−x) correctly rounded (inf past
                // ln(FLT_MAX)), then the float sum and quotient.
                let e = Float(Foundation.exp(-Double(value)))
                let want = Double(value / (1 + e))
                // The quotient carries exp's relative error (under 1 ulp, measured) plus the
                // rounding of 1 + exp: about two float ulps relative, 2 · 2^-23 ≈ 2.4e-7.
                let error = want == 0 ? abs(Double(got)) : abs(Double(got) - want) / abs(want)
                if error > worst { (worst, worstAt) = (error, value) }
            }
            #expect(worst <= 2.5e-7, "\(path): relative error \(worst) at x = \(worstAt)")
            #expect(Self.dloral_siluOne(kernels, 0) == 0 && Self.dloral_siluOne(kernels, .nan).isNaN, "\(path): silu(0), silu(NaN)")
        }
    }

    @Test("GroupNorm (with and without SiLU) matches a Double reference; every path gives the same bits")
    func groupNorm() {
        var rng = Rng(state: 9)
        // (channels, spatial): tails of the 8-wide loops, a single element, a large group.
        for (channels, spatial) in [(1, 1), (3, 5), (2, 7), (4, 64), (5, 1003), (16, 4096)] {
            let count = channels * spatial
            // An offset mean and a spread, so the variance is not trivially 1.
            let x = (0..<count).map { _ in 3 + 2 * Self.uniform(&rng, -1, 1) }
            let scale = (0..<channels).map { _ in Self.uniform(&rng, 0.5, 1.5) }
            let shift = (0..<channels).map { _ in Self.uniform(&rng, -0.5, 0.5) }
            let mean = x.reduce(0.0) { $0 + Double($1) } / Double(count)
            let variance = x.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(count)
            let rstd = 1 / (variance + 1e-6).squareRoot()
            for silu in [false, true] {
                var results: [(String, [Float])] = []
                IntegerKernelTests.onEveryPath { path in
                    let kernels = path.kernels
                    var y = [Float](repeating: .nan, count: count)
                    dloral_group_norm(kernels, channels, spatial, x, scale, shift, 1e-6, silu ? 1 : 0, &y)
                    var worst = 0.0
                    for i in 0..<count {
                        var want = (Double(x[i]) - mean) * rstd * Double(scale[i / spatial]) + Double(shift[i / spatial])
                        if silu { want = want / (1 + Foundation.exp(-want)) }
                        worst = max(worst, abs(Double(y[i]) - want))
                    }
                    #expect(worst <= 2e-6, "\(path) \(channels)×\(spatial) silu \(silu): max error \(worst)")
                    results.append(("\(path)", y))
                }
                for (path, y) in results.dropFirst() {
                    let same = zip(y, results[0].1).allSatisfy { $0.bitPattern == $1.bitPattern }
                    #expect(same, "\(channels)×\(spatial) silu \(silu): \(path) differs from \(results[0].0)")
                }
            }
        }
        // In place (x and y the same buffer), no scale or shift: mean 0, variance 1 exactly.
        var z: [Float] = [-1, 1, -1, 1]
        z.withUnsafeMutableBufferPointer { dloral_group_norm(Level.automatic.kernels, 1, 4, $0.baseAddress, nil, nil, 0, 0, $0.baseAddress) }
        #expect(z == [-1, 1, -1, 1])
    }

    static func dloral_siluOne(_ kernels: OpaquePointer, _ v: Float) -> Float {
        var y: Float = 1
        var x = v
        CKernels.dloral_silu(kernels, 1, &x, &y)
        return y
    }
}
