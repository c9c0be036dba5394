import DLoRALEngine
import Testing

/// The engine's kernel context: `Kernels.current` is per task, so tasks run different levels side
/// by side, and every level gives the scalar reference's bits.
@Suite("kernel context")
struct KernelContextTests {
    /// The levels this CPU can run.
    static let levels = KernelLevel.names.compactMap { Kernels.level($0) }

    @Test("levels: scalar always, unknown names nil, names round-trip case-insensitively")
    func levelsByName() {
        #expect(Kernels.level("scalar")?.name == "scalar")
        #expect(Kernels.level("SCALAR")?.name == "scalar")
        #expect(Kernels.level("sse9") == nil)
        #expect(Self.levels.contains(Kernels.automatic))
        #if arch(x86_64)
        #expect(Kernels.level("neon") == nil)
        #expect(Kernels.level("avx2") != nil, "this x86-64 machine should have AVX2")
        #endif
    }

    /// A few ops on fixed inputs: a conv (implicit GEMM), a linear, GroupNorm + SiLU, GELU and
    /// attention, at the level bound for the calling task.
    static func run() -> [[Float]] {
        func values(_ shape: [Int], _ seed: Int) -> Tensor {
            let count = shape.reduce(1, *)
            return Tensor(shape: shape, data: (0..<count).map { Float(($0 * 7919 + seed * 104_729) % 2001 - 1000) / 700 })
        }
        let x = values([1, 6, 9, 11], 1)
        let conv = Ops.conv2d(x, weight: values([5, 6, 3, 3], 2), bias: values([5], 3), padding: (1, 1))
        let linear = Ops.linear(values([13, 40], 4), weight: values([17, 40], 5), bias: values([17], 6))
        let norm = Ops.groupNorm(x, groups: 3, weight: values([6], 7), bias: values([6], 8), eps: 1e-5, silu: true)
        let gelu = Ops.gelu(values([300], 9))
        let q = values([1, 20, 16], 10), k = values([1, 24, 16], 11), v = values([1, 24, 16], 12)
        let attention = Ops.attention(q: q, k: k, v: v, heads: 2)
        return [conv.data, linear.data, norm.data, gelu.data, attention.data]
    }

    @Test("every level, bound per task and run concurrently, gives the scalar level's bits")
    func levelsSideBySide() async {
        let scalar = Kernels.$current.withValue(Kernels.level("scalar")!) { Self.run() }
        let results = await withTaskGroup(of: (String, String, [[Float]]).self) { group in
            for level in Self.levels {
                group.addTask {
                    Kernels.$current.withValue(level) { (level.name, Kernels.current.name, Self.run()) }
                }
            }
            var all: [(String, String, [[Float]])] = []
            for await result in group { all.append(result) }
            return all
        }
        #expect(results.count == Self.levels.count)
        for (name, bound, outputs) in results {
            #expect(bound == name, "Kernels.current inside withValue(\(name)) is \(bound)")
            for (op, (got, want)) in zip(["conv2d", "linear", "groupNorm", "gelu", "attention"], zip(outputs, scalar)) {
                #expect(got.map(\.bitPattern) == want.map(\.bitPattern), "\(op) at \(name) differs from scalar")
            }
        }
    }
}
