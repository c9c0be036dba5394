import CKernels
import Foundation
import Testing

/// Integer GEMM kernels (dloral_gemm_i8i8_i32, dloral_gemm_i16i8_i32) against an exact Int64 triple
/// loop, on every kernel level this machine has.
@Suite("integer kernels")
struct IntegerKernelTests {
    /// SplitMix64, so every run sees the same inputs.
    struct Rng {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func int(_ range: ClosedRange<Int>) -> Int {
            range.lowerBound + Int(next() % UInt64(range.upperBound - range.lowerBound + 1))
        }
    }

    /// Runs `body` once per level this CPU has (`Level.all`), with that level's context.
    static func onEveryPath(_ body: (Level) -> Void) {
        #if arch(x86_64)
        #expect(Level.all.contains { $0.name == "avx2" }, "this x86-64 machine should have AVX2")
        #endif
        for level in Level.all {
            #expect(level.name == "auto" || String(cString: dloral_kernels_name(level.kernels)) == level.name)
            body(level)
        }
    }

    static func reference<A: BinaryInteger>(_ m: Int, _ n: Int, _ kp: Int, _ a: [A], _ w: [Int8]) -> [Int64] {
        var c = [Int64](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var s: Int64 = 0
                for k in 0..<kp { s += Int64(a[i * kp + k]) * Int64(w[j * kp + k]) }
                c[i * n + j] = s
            }
        }
        return c
    }

    static func gemmI8(_ kernels: OpaquePointer, _ m: Int, _ n: Int, _ kp: Int, _ a: [Int8], _ w: [Int8]) -> [Int32] {
        var c = [Int32](repeating: .min, count: m * n)
        dloral_gemm_i8i8_i32(kernels, m, n, kp, a, w, &c)
        return c
    }

    static func gemmI16(_ kernels: OpaquePointer, _ m: Int, _ n: Int, _ kp: Int, _ a: [Int16], _ w: [Int8]) -> [Int32] {
        var c = [Int32](repeating: .min, count: m * n)
        dloral_gemm_i16i8_i32(kernels, m, n, kp, a, w, &c)
        return c
    }

    /// Checks exactness: the Int64 reference fits Int32 (unless `wraps`) and every output equals it
    /// (mod 2^32 when `wraps`).
    static func check(_ got: [Int32], _ want: [Int64], wraps: Bool = false, _ what: String,
                      sourceLocation: SourceLocation = #_sourceLocation) {
        if !wraps {
            #expect(want.allSatisfy { Int64(Int32.min)...Int64(Int32.max) ~= $0 },
                    "reference does not fit Int32: \(what)", sourceLocation: sourceLocation)
        }
        let bad = got.indices.filter { got[$0] != Int32(truncatingIfNeeded: want[$0]) }
        let first = bad.first.map { "\($0): got \(got[$0]), want \(want[$0])" } ?? ""
        let count = bad.count
        #expect(got.count == want.count && count == 0, "\(what): \(count) of \(got.count) differ, first at \(first)", sourceLocation: sourceLocation)
    }

    // Shapes (m, n, kp): m and n arbitrary ≥ 1 (covering n mod 4 = 0...3), kp a multiple of 32.
    static let shapes: [(Int, Int, Int)] = [
        (1, 1, 32), (1, 4, 32), (2, 3, 64), (3, 5, 96), (7, 9, 128), (4, 8, 256), (5, 6, 288),
        (17, 13, 320), (1, 7, 1024), (3, 2, 2880),
    ]

    @Test("int8 × int8: random inputs in [-127, 127]")
    func i8Random() {
        var rng = Rng(state: 1)
        Self.onEveryPath { path in
            let kernels = path.kernels
            for (m, n, kp) in Self.shapes {
                let a = (0..<m * kp).map { _ in Int8(rng.int(-127...127)) }
                let w = (0..<n * kp).map { _ in Int8(rng.int(-127...127)) }
                Self.check(Self.gemmI8(kernels, m, n, kp, a, w), Self.reference(m, n, kp, a, w), "\(path) \(m)×\(n)×\(kp)")
            }
        }
    }

    @Test("int8 × int8: extremes ±127, alternating, zeros, sparse")
    func i8Adversarial() {
        let (m, n) = (3, 7)
        Self.onEveryPath { path in
            let kernels = path.kernels
            for kp in [32, 64, 11520] {
                let patterns: [(String, (Int) -> Int8, (Int) -> Int8)] = [
                    ("+127·+127", { _ in 127 }, { _ in 127 }),
                    ("-127·+127", { _ in -127 }, { _ in 127 }),
                    ("-127·-127", { _ in -127 }, { _ in -127 }),
                    ("alternating, same signs", { $0 % 2 == 0 ? 127 : -127 }, { $0 % 2 == 0 ? 127 : -127 }),
                    ("alternating, opposite signs", { $0 % 2 == 0 ? 127 : -127 }, { $0 % 2 == 0 ? -127 : 127 }),
                    ("+127 · alternating", { _ in 127 }, { $0 % 2 == 0 ? 127 : -127 }),
                    ("zeros · -127", { _ in 0 }, { _ in -127 }),
                    ("-127 · zeros", { _ in -127 }, { _ in 0 }),
                    ("sign by 32-block", { ($0 / 32) % 2 == 0 ? -127 : 127 }, { ($0 % 3) == 0 ? -127 : 127 }),
                ]
                for (name, fa, fw) in patterns {
                    // Element index within the row drives the pattern; rows differ by a shift.
                    let a = (0..<m * kp).map { fa($0 % kp + $0 / kp) }
                    let w = (0..<n * kp).map { fw($0 % kp + 2 * ($0 / kp)) }
                    Self.check(Self.gemmI8(kernels, m, n, kp, a, w), Self.reference(m, n, kp, a, w), "\(path) \(name) kp=\(kp)")
                }
            }
        }
    }

    @Test("int8 × int8: kp not a multiple of 32 (outside the contract, still exact)")
    func i8OddK() {
        var rng = Rng(state: 2)
        Self.onEveryPath { path in
            let kernels = path.kernels
            for (m, n, kp) in [(1, 1, 1), (2, 5, 31), (3, 6, 33), (4, 9, 77)] {
                let a = (0..<m * kp).map { _ in Int8(rng.int(-127...127)) }
                let w = (0..<n * kp).map { _ in Int8(rng.int(-127...127)) }
                Self.check(Self.gemmI8(kernels, m, n, kp, a, w), Self.reference(m, n, kp, a, w), "\(path) \(m)×\(n)×\(kp)")
            }
        }
    }

    @Test("int16 × int8: random, full int16 range at small K, |a| ≤ 4096 at K = 11520")
    func i16Random() {
        var rng = Rng(state: 3)
        Self.onEveryPath { path in
            let kernels = path.kernels
            for (m, n, kp) in Self.shapes where kp <= 256 {  // 256·32768·127 < 2^31
                let a = (0..<m * kp).map { _ in Int16(rng.int(-32768...32767)) }
                let w = (0..<n * kp).map { _ in Int8(rng.int(-127...127)) }
                Self.check(Self.gemmI16(kernels, m, n, kp, a, w), Self.reference(m, n, kp, a, w), "\(path) \(m)×\(n)×\(kp)")
            }
            for (m, n, kp) in [(3, 5, 11520), (2, 4, 2880), (5, 3, 288)] {
                let a = (0..<m * kp).map { _ in Int16(rng.int(-4096...4096)) }
                let w = (0..<n * kp).map { _ in Int8(rng.int(-127...127)) }
                Self.check(Self.gemmI16(kernels, m, n, kp, a, w), Self.reference(m, n, kp, a, w), "\(path) \(m)×\(n)×\(kp)")
            }
        }
    }

    @Test("int16 × int8: worst case at K = 11520 (|a| = 1467, |w| = 127, adversarial signs) is exact")
    func i16WorstCase() {
        let kp = 11520, (m, n) = (4, 6)
        let bound = Int(Int32.max) / (127 * kp)  // 1467: largest |a| with kp·|a|·127 < 2^31
        #expect(bound == 1467)
        var rng = Rng(state: 4)
        let w = (0..<n * kp).map { _ in Int8(rng.next() & 1 == 0 ? 127 : -127) }
        // Row 0 matches weight row 0's signs (sum +K·1467·127), row 1 opposes it, row 2 matches
        // row 1's signs, row 3 is all -1467.
        var a = [Int16](repeating: 0, count: m * kp)
        for k in 0..<kp {
            let s0 = Int(w[k]) > 0 ? 1 : -1, s1 = Int(w[kp + k]) > 0 ? 1 : -1
            a[k] = Int16(s0 * bound)
            a[kp + k] = Int16(-s0 * bound)
            a[2 * kp + k] = Int16(s1 * bound)
            a[3 * kp + k] = Int16(-bound)
        }
        Self.onEveryPath { path in
            let kernels = path.kernels
            let want = Self.reference(m, n, kp, a, w)
            #expect(want[0] == Int64(kp * bound * 127) && want[n] == -Int64(kp * bound * 127))
            Self.check(Self.gemmI16(kernels, m, n, kp, a, w), want, "\(path) worst case")
        }
    }

    @Test("int16 × int8: beyond the bound (|a| = 4096, K = 11520) wraps mod 2^32 identically on every path")
    func i16Overflow() {
        let kp = 11520, (m, n) = (2, 5)
        let w = (0..<n * kp).map { Int8($0 % 2 == 0 ? 127 : -127) }
        let a = (0..<m * kp).map { i -> Int16 in i / kp == 0 ? (i % 2 == 0 ? 4096 : -4096) : -4096 }
        let want = Self.reference(m, n, kp, a, w)
        #expect(want[0] == Int64(kp) * 4096 * 127 && want[0] > Int64(Int32.max))  // does overflow
        Self.onEveryPath { path in
            let kernels = path.kernels
            Self.check(Self.gemmI16(kernels, m, n, kp, a, w), want, wraps: true, "\(path) wrap")
        }
    }

    @Test("int16 × int8: extremes, zeros, odd K")
    func i16Adversarial() {
        var rng = Rng(state: 5)
        Self.onEveryPath { path in
            let kernels = path.kernels
            for (m, n, kp) in [(2, 5, 32), (3, 4, 64), (1, 3, 11520)] {
                let big: Int16 = kp <= 64 ? 32767 : 1467
                let cases: [(String, [Int16], [Int8])] = [
                    ("+a·+127", .init(repeating: big, count: m * kp), .init(repeating: 127, count: n * kp)),
                    ("-a·+127", .init(repeating: -big, count: m * kp), .init(repeating: 127, count: n * kp)),
                    ("-a·-127", .init(repeating: -big, count: m * kp), .init(repeating: -127, count: n * kp)),
                    ("zeros", .init(repeating: 0, count: m * kp), (0..<n * kp).map { _ in Int8(rng.int(-127...127)) }),
                    ("alternating", (0..<m * kp).map { $0 % 2 == 0 ? big : -big }, (0..<n * kp).map { $0 % 2 == 0 ? -127 : 127 }),
                ]
                for (name, a, w) in cases {
                    Self.check(Self.gemmI16(kernels, m, n, kp, a, w), Self.reference(m, n, kp, a, w), "\(path) \(name) \(m)×\(n)×\(kp)")
                }
            }
            for (m, n, kp) in [(1, 1, 1), (2, 5, 15), (3, 6, 47)] {
                let a = (0..<m * kp).map { _ in Int16(rng.int(-32768...32767)) }
                let w = (0..<n * kp).map { _ in Int8(rng.int(-127...127)) }
                Self.check(Self.gemmI16(kernels, m, n, kp, a, w), Self.reference(m, n, kp, a, w), "\(path) odd \(m)×\(n)×\(kp)")
            }
        }
    }
}
