import DLoRALFormats
import FuzzSupport

/// The safetensors reader: the 8-byte length, the JSON header (strict parser, dtypes, shapes,
/// offsets that must tile the data) and the tensor views into the mapping.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensors(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let path = Fuzz.write(UnsafeRawBufferPointer(start: data, count: size), name: "input.safetensors")
    Fuzz.expectReadOrRefused("SafetensorsFile(path:)") {
        let file = try SafetensorsFile(path: path)
        for (_, view) in file.tensors.tensors { Fuzz.touch(view) }
    }
    return 0
}

@_cdecl("fuzz_safetensors_main")
public func fuzzSafetensorsMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Fuzz.main(argc, argv, fuzzSafetensors)
}
