import CKernels
import Foundation

/// The SIMD kernel level the engine runs at, and the DLORAL_KERNELS setting that caps it.
public enum KernelLevel {
    /// The names DLORAL_KERNELS accepts (those dloral_kernels_isa() returns), case-insensitively.
    public static let names = ["scalar", "avx2", "avxvnni", "avx512", "amx", "neon"]

    /// The level the kernels use in this process (after DLORAL_KERNELS).
    public static var current: String { String(cString: dloral_kernels_isa()) }

    /// Why DLORAL_KERNELS cannot be honoured, or nil when it is unset, empty, or names a known level: an
    /// unknown value would otherwise silently mean "automatic".
    public static func environmentProblem(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        guard let value = environment["DLORAL_KERNELS"], !value.isEmpty else { return nil }
        if names.contains(value.lowercased()) { return nil }
        return "DLORAL_KERNELS=\(value) is not a kernel level; use one of \(names.joined(separator: ", ")) or unset it for the best level this CPU has"
    }
}
