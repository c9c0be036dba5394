import DLoRALFormats
import FuzzSupport

/// The ONNX reader: protobuf-c's generated decoder (Sources/CONNX) and our mapping of it
/// (opsets, nodes, attributes, initializers with raw, typed or external data). The model sits
/// in a folder next to `weights.bin` (4 KiB), so external-data references can resolve.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzONNX(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    _ = ONNXFolder.ready
    let path = Fuzz.write(UnsafeRawBufferPointer(start: data, count: size), name: "model.onnx")
    Fuzz.expectReadOrRefused("ONNXModel(path:)") {
        let model = try ONNXModel(path: path)
        for (_, view) in model.initializers.tensors { Fuzz.touch(view) }
    }
    return 0
}

enum ONNXFolder {
    static let ready: Bool = {
        Fuzz.write((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7) }, name: "weights.bin")
        return true
    }()
}

@_cdecl("fuzz_onnx_main")
public func fuzzONNXMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Fuzz.main(argc, argv, fuzzONNX)
}
