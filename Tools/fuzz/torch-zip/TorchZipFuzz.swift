import DLoRALFormats
import FuzzSupport

/// PyTorch zip checkpoints as a whole: the zip reader (end of central directory, zip64, central
/// and local headers, entry names), then the restricted unpickler on `data.pkl` and the storages
/// it names, then every tensor view.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTorchZip(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let path = Fuzz.write(UnsafeRawBufferPointer(start: data, count: size), name: "input.pt")
    Fuzz.expectReadOrRefused("TorchCheckpoint(path:)") {
        let checkpoint = try TorchCheckpoint(path: path)
        for (_, view) in checkpoint.tensors.tensors { Fuzz.touch(view) }
    }
    return 0
}

@_cdecl("fuzz_torch_zip_main")
public func fuzzTorchZipMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Fuzz.main(argc, argv, fuzzTorchZip)
}
