import CKernels

/// A kernel level this CPU can run, with its context for the C entry points. Each test passes
/// the context of the level it checks, so tests of different levels run side by side.
struct Level: CustomStringConvertible, @unchecked Sendable {
    let name: String
    // An immutable table that lives as long as the process.
    let kernels: OpaquePointer
    var description: String { name }

    /// The automatic level (DLORAL_KERNELS, else the best this CPU has).
    static let automatic = Level(name: "auto", kernels: dloral_kernels_auto())

    /// The scalar reference.
    static let scalar = Level(name: "scalar", kernels: dloral_kernels_for_level("scalar"))

    /// The automatic level, scalar, and each vector level this CPU has (x86-64: avx2, avxvnni,
    /// avx512, amx; arm64: neon).
    static let all: [Level] = [automatic, scalar] + ["avx2", "avxvnni", "avx512", "amx", "neon"].compactMap { name in
        dloral_kernels_for_level(name).map { Level(name: name, kernels: $0) }
    }
}
