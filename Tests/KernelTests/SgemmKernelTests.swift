import CKernels
import Foundation
import Testing

/// dloral_sgemm against a Double triple loop and against its documented arithmetic (fused
/// chains per block of k), on every kernel level and several thread counts. Serialized because
/// its tests set the pool's thread count (dloral_threads_force), which is process-wide.
@Suite("fp32 GEMM (dloral_sgemm)", .serialized)
struct SgemmTests {
    typealias Rng = IntegerKernelTests.Rng

    /// nil when x and y hold the same bits, else where they first differ (kept out of #expect,
    /// which would print whole arrays).
    static func firstDifference(_ x: [Float], _ y: [Float]) -> String? {
        guard x.count == y.count else { return "\(x.count) vs \(y.count) elements" }
        guard let i = x.indices.first(where: { x[$0].bitPattern != y[$0].bitPattern }) else { return nil }
        return "element \(i): \(x[i]) vs \(y[i])"
    }

    /// One problem: shapes, flags, scalars and padded leading dimensions, with random inputs
    /// in [-1, 1) and (unless beta is 0, when C starts as NaN) a random C.
    struct Problem: CustomStringConvertible {
        var m, n, k: Int
        var transA = false, transB = false
        var alpha: Float = 1, beta: Float = 0
        var pad = 0
        var lda: Int { (transA ? m : k) + pad }
        var ldb: Int { (transB ? k : n) + pad }
        var ldc: Int { n + pad }
        var a: [Float] = [], b: [Float] = [], c0: [Float] = []

        init(_ m: Int, _ n: Int, _ k: Int, transA: Bool = false, transB: Bool = false,
             alpha: Float = 1, beta: Float = 0, pad: Int = 0, seed: UInt64 = 1) {
            (self.m, self.n, self.k, self.transA, self.transB) = (m, n, k, transA, transB)
            (self.alpha, self.beta, self.pad) = (alpha, beta, pad)
            var rng = Rng(state: seed)
            func uniform() -> Float { Float(Int(rng.next() >> 40) - (1 << 23)) / Float(1 << 23) }
            a = (0..<(transA ? k : m) * lda).map { _ in uniform() }
            b = (0..<(transB ? n : k) * ldb).map { _ in uniform() }
            c0 = (0..<m * ldc).map { _ in beta == 0 ? .nan : uniform() }
        }

        var description: String {
            "\(m)×\(n)×\(k)\(transA ? " Aᵀ" : "")\(transB ? " Bᵀ" : "") α=\(alpha) β=\(beta) pad \(pad)"
        }

        func opA(_ i: Int, _ p: Int) -> Float { transA ? a[p * lda + i] : a[i * lda + p] }
        func opB(_ p: Int, _ j: Int) -> Float { transB ? b[j * ldb + p] : b[p * ldb + j] }

        /// C after dloral_sgemm at the level `kernels` and the current thread count (padding left as it was).
        func run(_ kernels: OpaquePointer = Level.automatic.kernels) -> [Float] {
            var c = c0
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    c.withUnsafeMutableBufferPointer { cp in
                        dloral_sgemm(kernels, transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, ap.baseAddress, lda,
                                     bp.baseAddress, ldb, beta, cp.baseAddress, ldc)
                    }
                }
            }
            return c
        }

        /// What `run()` must give, computed once per problem (the loops are slow in debug builds).
        struct Expected {
            /// The documented arithmetic (dloral_kernels.h): per block of DLORAL_SGEMM_KC indices
            /// of k, S = fused chain from +0; then C = α·S or fma(α, S, β·C) for the first block,
            /// fma(α, S, C) for the others.
            var exact: [Float]
            /// α·Σ a·b + β·C summed in Double, and Σ|α·a·b| + |β·C|, per element of C (row stride n).
            var sum: [Double], magnitude: [Double]
        }

        func expected() -> Expected {
            let block = Int(DLORAL_SGEMM_KC)
            var exact = c0
            var sum = [Double](repeating: 0, count: m * n), magnitude = sum
            for i in 0..<m {
                for j in 0..<n {
                    var c = c0[i * ldc + j]
                    var total = beta == 0 ? 0 : Double(beta) * Double(c)
                    var size = abs(total)
                    if k == 0 || alpha == 0 {
                        c = beta == 0 ? 0 : beta * c
                    } else {
                        for start in stride(from: 0, to: k, by: block) {
                            var s: Float = 0
                            for p in start..<min(start + block, k) {
                                let x = opA(i, p), y = opB(p, j)
                                s = s.addingProduct(x, y)
                                let t = Double(alpha) * Double(x) * Double(y)
                                total += t
                                size += abs(t)
                            }
                            if start > 0 {
                                c = c.addingProduct(alpha, s)
                            } else {
                                c = beta == 0 ? alpha * s : (beta * c).addingProduct(alpha, s)
                            }
                        }
                    }
                    exact[i * ldc + j] = c
                    sum[i * n + j] = total
                    magnitude[i * n + j] = size
                }
            }
            return Expected(exact: exact, sum: sum, magnitude: magnitude)
        }

        /// Checks `got`: bit for bit the documented arithmetic; within 1e-5 of Σ|α·a·b| + |β·C|
        /// (plus the smallest normal, for all-zero sums) of the Double sum; padding of C untouched.
        func check(_ got: [Float], _ want: Expected, _ label: String, sourceLocation: SourceLocation = #_sourceLocation) {
            var worst = 0.0, bad = 0, padChanged = 0
            for i in 0..<m {
                for j in 0..<n {
                    let error = abs(Double(got[i * ldc + j]) - want.sum[i * n + j])
                    let size = want.magnitude[i * n + j]
                    if !(error <= 1e-5 * size + Double(Float.leastNormalMagnitude)) { bad += 1 }
                    if size > 0 { worst = max(worst, error / size) }
                }
                for j in n..<ldc where got[i * ldc + j].bitPattern != c0[i * ldc + j].bitPattern { padChanged += 1 }
            }
            #expect(bad == 0 && padChanged == 0,
                    "\(label) \(self): \(bad) elements off (worst relative error \(worst)), \(padChanged) padding elements written",
                    sourceLocation: sourceLocation)
            let difference = SgemmTests.firstDifference(got, want.exact)
            #expect(difference == nil, "\(label) \(self): not the documented arithmetic at \(difference ?? "")",
                    sourceLocation: sourceLocation)
        }
    }


    /// Runs `body` with the given thread count, then goes back to the automatic count.
    static func withThreads<T>(_ n: Int32, _ body: () -> T) -> T {
        dloral_threads_force(n)
        defer { dloral_threads_force(0) }
        return body()
    }

    @Test("small and odd shapes, all transpositions, alpha and beta, padded strides: Double reference and exact arithmetic")
    func smallShapes() {
        let shapes = [(1, 1, 1), (1, 1, 7), (1, 9, 1), (5, 1, 3), (7, 13, 5), (6, 16, 8), (5, 15, 9),
                      (7, 17, 33), (12, 32, 4), (13, 31, 20)]
        let scalars: [(Float, Float)] = [(1, 0), (1, 1), (1.5, 0.5), (-0.3, 0), (0.7, -2)]
        var seed: UInt64 = 10
        IntegerKernelTests.onEveryPath { path in
            let kernels = path.kernels
            for (m, n, k) in shapes {
                for flags in 0..<4 {
                    for (index, (alpha, beta)) in scalars.enumerated() {
                        seed += 1
                        let problem = Problem(m, n, k, transA: flags & 1 != 0, transB: flags & 2 != 0,
                                              alpha: alpha, beta: beta, pad: (index + flags) % 3 == 0 ? 3 : 0, seed: seed)
                        problem.check(problem.run(kernels), problem.expected(), "\(path)")
                    }
                }
            }
        }
    }

    @Test("larger shapes straddling the 6×16 and 8×32 tiles and the KC / MC / NC blocks")
    func blockBoundaries() {
        // sgemm.c blocks k by DLORAL_SGEMM_KC = 256, rows by MC = 144 and columns by NC = 1024;
        // these shapes also cross the other values tuning tried (MC 96/192/288, NC 2048/4096).
        let problems = [
            Problem(97, 131, 263, seed: 100),
            Problem(97, 131, 263, transA: true, transB: true, alpha: 0.25, beta: 1, pad: 5, seed: 101),
            Problem(145, 37, 530, transB: true, beta: 0.5, seed: 102),
            Problem(301, 18, 70, transA: true, seed: 103),
            Problem(5, 4113, 21, alpha: -1, beta: 1, pad: 1, seed: 104),
            Problem(7, 2070, 530, transB: true, seed: 105),
            Problem(64, 64, 1100, transA: true, transB: true, beta: 1, seed: 106),
        ]
        let expected = problems.map { $0.expected() }
        IntegerKernelTests.onEveryPath { path in
            let kernels = path.kernels
            for (problem, want) in zip(problems, expected) { problem.check(problem.run(kernels), want, "\(path)") }
        }
    }

    @Test("every path and thread count gives the same bits")
    func bitIdentity() {
        let problems = [
            Problem(97, 131, 263, seed: 200),
            Problem(131, 97, 263, transA: true, beta: 1, seed: 201),
            Problem(200, 150, 600, transB: true, alpha: 0.3, beta: 0.5, pad: 2, seed: 202),
            Problem(40, 2500, 300, transA: true, transB: true, seed: 203),
            Problem(700, 24, 90, beta: 1, seed: 204),
        ]
        for problem in problems {
            var results: [(String, [Float])] = []
            IntegerKernelTests.onEveryPath { path in
                let kernels = path.kernels
                for threads: Int32 in [1, 2, 3] {
                    results.append(("\(path), \(threads) threads", Self.withThreads(threads) { problem.run(kernels) }))
                }
            }
            results.append(("automatic", problem.run()))
            let (firstLabel, first) = results[0]
            for (label, c) in results.dropFirst() {
                let difference = Self.firstDifference(c, first)
                #expect(difference == nil, "\(problem): \(label) differs from \(firstLabel) at \(difference ?? "")")
            }
        }
    }

    @Test("beta 0 ignores NaN in C; k = 0 and alpha = 0 give beta·C without reading A or B; empty C")
    func degenerate() {
        IntegerKernelTests.onEveryPath { path in
            let kernels = path.kernels
            let nanFree = Problem(70, 90, 100, beta: 0, seed: 300).run(kernels)  // C starts as NaN
            #expect(!nanFree.contains { $0.isNaN }, "\(path): NaN from C leaked through beta = 0")

            for (k, alpha) in [(0, Float(1)), (5, Float(0))] {
                var c: [Float] = (0..<12).map { Float($0) - 4 }
                let poison = [Float](repeating: .nan, count: 64)
                dloral_sgemm(kernels, 0, 0, 3, 4, k, alpha, poison, max(k, 1), poison, 4, 0.5, &c, 4)
                let scaled = Self.firstDifference(c, (0..<12).map { 0.5 * (Float($0) - 4) })
                #expect(scaled == nil, "\(path): k=\(k) α=\(alpha) β=0.5: \(scaled ?? "")")
                c = [Float](repeating: .nan, count: 12)
                dloral_sgemm(kernels, 1, 1, 3, 4, k, alpha, poison, 3, poison, max(k, 1), 0, &c, 4)
                #expect(c.allSatisfy { $0 == 0 && $0.sign == .plus }, "\(path): k=\(k) α=\(alpha) β=0")
            }

            var untouched: [Float] = [1, 2, 3]
            dloral_sgemm(kernels, 0, 0, 0, 3, 5, 1, nil, 5, nil, 3, 0, &untouched, 3)
            dloral_sgemm(kernels, 0, 0, 3, 0, 5, 1, nil, 5, nil, 0, 0, &untouched, 0)
            #expect(untouched == [1, 2, 3], "\(path): an empty C was written")
        }
    }

    @Test("concurrent callers get the same bits as one caller")
    func concurrentCallers() {
        let problems = (0..<6).map { Problem(90 + 7 * $0, 120, 150, transB: $0 % 2 == 1, beta: 1, seed: 400 + UInt64($0)) }
        let serial = problems.map { $0.run() }
        let lock = NSLock()
        var concurrent = [[Float]](repeating: [], count: problems.count)
        var again: [Int] = [], mismatches = 0
        DispatchQueue.concurrentPerform(iterations: problems.count * 3) { index in
            let c = problems[index % problems.count].run()
            lock.lock()
            if index < problems.count { concurrent[index] = c } else { again.append(index) }
            if index >= problems.count && Self.firstDifference(c, serial[index % problems.count]) != nil { mismatches += 1 }
            lock.unlock()
        }
        for (index, c) in concurrent.enumerated() {
            let difference = Self.firstDifference(c, serial[index])
            #expect(difference == nil, "\(problems[index]): differs when called concurrently at \(difference ?? "")")
        }
        #expect(again.count == 2 * problems.count && mismatches == 0, "\(mismatches) concurrent repeats differ")
    }

    @Test("binary16 operands (dloral_sgemm_typed): the documented arithmetic on the widened values, every path and thread count")
    func halfOperands() {
        // Operands rounded to binary16 with Swift's own Float16; the expected result is the
        // documented arithmetic on Float(Float16) values, which is exact widening.
        let problems = [
            Problem(7, 13, 5, seed: 500), Problem(13, 31, 70, transA: true, beta: 1, pad: 3, seed: 501),
            Problem(97, 131, 263, transB: true, alpha: 0.5, seed: 502),
            Problem(145, 37, 530, transA: true, transB: true, beta: 0.5, pad: 2, seed: 503),
            Problem(300, 20, 300, transB: true, seed: 504), Problem(20, 300, 70, seed: 505),
        ]
        for var problem in problems {
            let halfA = problem.a.map { Float16($0) }, halfB = problem.b.map { Float16($0) }
            problem.a = halfA.map { Float($0) }
            problem.b = halfB.map { Float($0) }
            let want = problem.expected()
            for (aHalf, bHalf) in [(true, false), (false, true), (true, true)] {
                IntegerKernelTests.onEveryPath { path in
                    let kernels = path.kernels
                    for threads: Int32 in [1, 2] {
                        var c = problem.c0
                        Self.withThreads(threads) {
                            halfA.withUnsafeBufferPointer { ha in
                                halfB.withUnsafeBufferPointer { hb in
                                    problem.a.withUnsafeBufferPointer { fa in
                                        problem.b.withUnsafeBufferPointer { fb in
                                            c.withUnsafeMutableBufferPointer { cp in
                                                dloral_sgemm_typed(
                                                    kernels, problem.transA ? 1 : 0, problem.transB ? 1 : 0, aHalf ? 1 : 0, bHalf ? 1 : 0,
                                                    problem.m, problem.n, problem.k, problem.alpha,
                                                    aHalf ? UnsafeRawPointer(ha.baseAddress!) : UnsafeRawPointer(fa.baseAddress!), problem.lda,
                                                    bHalf ? UnsafeRawPointer(hb.baseAddress!) : UnsafeRawPointer(fb.baseAddress!), problem.ldb,
                                                    problem.beta, cp.baseAddress, problem.ldc)
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        problem.check(c, want, "\(path), \(threads) threads, half A \(aHalf), half B \(bHalf)")
                    }
                }
            }
        }
    }

    @Test("implicit-GEMM convolution (dloral_sconv2d) gives the bits of dloral_sgemm on the explicit im2col matrix")
    func implicitConvolution() {
        // (c, h, w, kh, kw, stride, padding, o): odd sizes, stride 2, 1×1, 7×7, padding wider
        // than the kernel's reach, outputs crossing the 16-column slivers mid-row.
        let cases: [(Int, Int, Int, Int, Int, (Int, Int), (Int, Int), Int)] = [
            (3, 5, 7, 3, 3, (1, 1), (1, 1), 5), (2, 9, 4, 3, 3, (2, 2), (1, 1), 7),
            (4, 13, 11, 1, 1, (2, 1), (0, 0), 6), (2, 12, 17, 7, 7, (1, 1), (3, 3), 13),
            (3, 6, 6, 3, 3, (1, 2), (4, 2), 3), (5, 33, 35, 3, 3, (1, 1), (1, 1), 17),
            (1, 4, 70, 3, 2, (2, 3), (0, 1), 9), (96, 24, 40, 3, 3, (1, 1), (1, 1), 20),
        ]
        var rng = Rng(state: 77)
        func uniform() -> Float { Float(Int(rng.next() >> 40) - (1 << 23)) / Float(1 << 23) }
        for (c, h, w, kh, kw, stride, padding, o) in cases {
            let ho = (h + 2 * padding.0 - kh) / stride.0 + 1, wo = (w + 2 * padding.1 - kw) / stride.1 + 1
            let n = ho * wo, k = c * kh * kw
            let image = (0..<c * h * w).map { _ in uniform() }
            let weight = (0..<o * k).map { _ in Float(Float16(uniform())) }  // fp16-exact, for the half case
            let half = weight.map { Float16($0).bitPattern }
            let start = (0..<o * n).map { _ in uniform() }
            // im2col by its definition: row (ch, i, j), column (oy, ox).
            var columns = [Float](repeating: 0, count: k * n)
            for ch in 0..<c { for i in 0..<kh { for j in 0..<kw { for oy in 0..<ho { for ox in 0..<wo {
                let iy = oy * stride.0 - padding.0 + i, ix = ox * stride.1 - padding.1 + j
                if iy >= 0 && iy < h && ix >= 0 && ix < w {
                    columns[((ch * kh + i) * kw + j) * n + oy * wo + ox] = image[(ch * h + iy) * w + ix]
                }
            } } } } }
            var geometry = dloral_conv_geometry(c: c, h: h, w: w, kh: kh, kw: kw, sh: stride.0, sw: stride.1,
                                                ph: padding.0, pw: padding.1, ho: ho, wo: wo)
            let label = "conv \(c)×\(h)×\(w) k\(kh)×\(kw) s\(stride) p\(padding) → \(o)"
            for beta: Float in [0, 1] {
                var want = start
                dloral_sgemm(Level.scalar.kernels, 0, 0, o, n, k, 1, weight, k, columns, n, beta, &want, n)
                IntegerKernelTests.onEveryPath { path in
                    let kernels = path.kernels
                    for threads: Int32 in [1, 2] {
                        for useHalf in [false, true] {
                            var got = start
                            Self.withThreads(threads) {
                                if useHalf {
                                    dloral_sconv2d(kernels, 1, o, half, &geometry, image, beta, &got)
                                } else {
                                    dloral_sconv2d(kernels, 0, o, weight, &geometry, image, beta, &got)
                                }
                            }
                            let difference = Self.firstDifference(got, want)
                            #expect(difference == nil, "\(label) β=\(beta) \(path) \(threads) threads half \(useHalf): \(difference ?? "")")
                        }
                    }
                }
            }
        }
    }
}
