import CKernels
import Foundation

/// A SIMD kernel level (CKernels' `dloral_kernels` context): which kernels the ops run. Every level
/// gives the same bits, so the choice changes speed only. The ops read `Kernels.current` once per
/// call, before any work is shared out over threads, so a call runs at one level throughout and
/// tasks can run different levels side by side (`Kernels.$current.withValue(level) { … }`).
public struct Kernels: @unchecked Sendable, Equatable {
    // An immutable table that lives as long as the process, so sharing it between threads is safe.
    let handle: OpaquePointer

    /// The level's name, one of `KernelLevel.names`.
    public var name: String { String(cString: dloral_kernels_name(handle)) }

    /// The level named `name` (case-insensitive), or nil when the name is unknown or this CPU
    /// cannot run it.
    public static func level(_ name: String) -> Kernels? {
        dloral_kernels_for_level(name).map { Kernels(handle: $0) }
    }

    /// DLORAL_KERNELS's level when this CPU can run it, else the best level this CPU has.
    public static let automatic = Kernels(handle: dloral_kernels_auto())

    /// The level the ops use in the current task: `automatic` unless a caller bound another.
    @TaskLocal public static var current: Kernels = .automatic
}

/// The SIMD kernel levels by name, and the DLORAL_KERNELS setting that chooses one.
public enum KernelLevel {
    /// The names DLORAL_KERNELS accepts (those `Kernels.name` returns), case-insensitively.
    public static let names = ["scalar", "avx2", "avxvnni", "avx512", "amx", "neon"]

    /// The level the ops use in the current task (after DLORAL_KERNELS).
    public static var current: String { Kernels.current.name }

    /// Why DLORAL_KERNELS cannot be honoured, or nil when it is unset, empty, or names a known level: an
    /// unknown value would otherwise silently mean "automatic".
    public static func environmentProblem(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        guard let value = environment["DLORAL_KERNELS"], !value.isEmpty else { return nil }
        if names.contains(value.lowercased()) { return nil }
        return "DLORAL_KERNELS=\(value) is not a kernel level; use one of \(names.joined(separator: ", ")) or unset it for the best level this CPU has"
    }
}
