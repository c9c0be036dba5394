// swift-tools-version:6.0
import Foundation
import PackageDescription

let package = Package(
    name: "DLoRAL",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "dloral-convert", targets: ["dloral-convert"]),
        .executable(name: "dloral-verify", targets: ["dloral-verify"]),
        .executable(name: "dloral-run", targets: ["dloral-run"]),
        .library(name: "DLoRALFormats", targets: ["DLoRALFormats"]),
        .library(name: "DLoRALConvert", targets: ["DLoRALConvert"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.0.0"),
        // LDM inference configs (.yaml) for `merge --config`.
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // MARK: - Executables (entry points only)
        .executableTarget(name: "dloral-convert", dependencies: ["DLoRALCLI"]),
        .executableTarget(name: "dloral-verify", dependencies: ["DLoRALCLI"]),
        .executableTarget(name: "dloral-run", dependencies: ["DLoRALCLI"]),
        // Benchmarks of the engine (UNet alone at a latent size, the whole step on synthetic
        // frames); not shipped, see BENCHMARKS.md.
        .executableTarget(
            name: "dloral-bench",
            dependencies: [
                "DLoRALEngine", "DLoRALFormats",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Tools/bench/dloral-bench"),
        // Test helper: shrinks a mapped input while reading it (EndToEndTests/FileSafetyTests).
        .executableTarget(
            name: "dloral-mapped-input-probe", dependencies: ["DLoRALFormats"],
            path: "Tools/tests/mapped-input-probe"),

        // MARK: - Public API
        .target(
            name: "DLoRALCLI",
            dependencies: [
                "DLoRALFormats", "DLoRALConvert", "DLoRALEngine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .target(
            name: "DLoRALFormats",
            dependencies: [
                "CONNX", "CZstd", "CFileGuard", "CThreadPool",
                .product(name: "Collections", package: "swift-collections"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .target(
            name: "DLoRALConvert",
            dependencies: [
                "DLoRALFormats", "CKernels",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Collections", package: "swift-collections"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        // Engine sees Convert: quantization calibrated on the engine's output (CalibratedQuantization)
        // runs both.
        .target(name: "DLoRALEngine", dependencies: ["DLoRALFormats", "DLoRALConvert", "CKernels", "CLibPNG", "CLibJPEG"]),

        // MARK: - Implementation details: system libraries and generated C
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // libpng for `dloral-verify --report`; shim.h holds the setjmp-protected encode.
        .systemLibrary(name: "CLibPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        // libjpeg-turbo for JPEG frames, decoded as Pillow decodes them; shim.h holds the
        // setjmp-protected header read and decode.
        .systemLibrary(name: "CLibJPEG", pkgConfig: "libjpeg", providers: [.apt(["libjpeg62-turbo-dev"])]),
        .systemLibrary(
            name: "CProtobufC", pkgConfig: "libprotobuf-c", providers: [.apt(["libprotobuf-c-dev"])]),
        // protoc-c output for Formats/onnx-subset.proto, generated once and committed
        // (regenerate with Tools/regenerate-onnx-c.sh).
        .target(name: "CONNX", dependencies: ["CProtobufC"]),
        // SIMD kernels (AVX2/FMA/F16C with AVX-VNNI, AVX-512F and AMX-INT8 where present, NEON,
        // scalar), chosen at run time; DLORAL_KERNELS=<level> caps the level (scalar: the fallback).
        // Sources by architecture (arch/x86/…, arch/arm/neon, generic/ for the scalar reference and
        // the drivers); the internal headers sit at the target's root.
        .target(
            name: "CKernels", dependencies: ["CThreadPool"], cSettings: [.headerSearchPath(".")],
            linkerSettings: [.linkedLibrary("m")]),
        // The one thread pool (dloral_parallel_for), honouring DLORAL_THREADS: the kernels' drivers,
        // the engine and the file readers share it, so it sits below all of them.
        .target(name: "CThreadPool", linkerSettings: [.linkedLibrary("pthread")]),
        // Signal-handler side of file safety: mapped inputs that shrink (SIGBUS) and temporary
        // outputs removed on SIGINT/SIGTERM, in async-signal-safe C.
        .target(name: "CFileGuard"),

        // MARK: - Tests
        .testTarget(name: "DLoRALFormatsTests", dependencies: ["DLoRALFormats"]),
        // The kernels through their C interface (CKernels), against closed forms and hand-computed
        // references; Tests/KernelCheck/run.sh checks every path against scalar in plain C.
        .testTarget(name: "KernelTests", dependencies: ["CKernels"]),
        .testTarget(name: "DLoRALConvertTests", dependencies: ["DLoRALConvert", "DLoRALFormats"]),
        .testTarget(name: "EndToEndTests", dependencies: ["DLoRALFormats"]),
        .testTarget(name: "DLoRALEngineTests", dependencies: ["DLoRALEngine", "DLoRALFormats"]),
    ],
    swiftLanguageModes: [.v5]
)

// libFuzzer targets for the readers (Tools/fuzz, FUZZING.md). Declared only when DLORAL_FUZZ is
// set: they have no main of their own (libFuzzer supplies it), so they link only in the
// sanitizer build that Tools/fuzz/run.sh makes in its own scratch folder.
if ProcessInfo.processInfo.environment["DLORAL_FUZZ"] != nil {
    package.targets.append(
        .target(name: "FuzzSupport", dependencies: ["DLoRALFormats"], path: "Tools/fuzz/FuzzSupport"))
    let fuzzTargets: [(String, [Target.Dependency])] = [
        ("safetensors", ["DLoRALFormats"]),
        ("torch-zip", ["DLoRALFormats"]),
        ("pickle", ["DLoRALFormats"]),
        ("onnx", ["DLoRALFormats"]),
        ("dlrt", ["DLoRALFormats"]),
        ("png", ["DLoRALEngine", "DLoRALFormats"]),
        ("jpeg", ["DLoRALEngine", "DLoRALFormats"]),
    ]
    for (name, dependencies) in fuzzTargets {
        package.targets.append(
            .executableTarget(
                name: "fuzz-\(name)", dependencies: dependencies + ["FuzzSupport"], path: "Tools/fuzz/\(name)",
                swiftSettings: [.unsafeFlags(["-parse-as-library"])]))
    }
}
