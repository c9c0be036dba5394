import DLoRALFormats
import FuzzSupport

/// The restricted unpickler, reached as the tools reach it: the input becomes `data.pkl` of an
/// otherwise valid torch.save zip (correct CRCs, a byteorder entry, storages `data/0`…`data/15`),
/// so every mutation lands in the pickle stream and its persistent ids, not in the zip framing.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPickle(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let pickle = size > 0 ? [UInt8](UnsafeBufferPointer(start: data, count: size)) : []
    let path = Fuzz.write(Fuzz.storedZip(PickleFixedEntries.around(pickle)), name: "input.pt")
    Fuzz.expectReadOrRefused("TorchCheckpoint(path:)") {
        let checkpoint = try TorchCheckpoint(path: path)
        for (_, view) in checkpoint.tensors.tensors { Fuzz.touch(view) }
    }
    return 0
}

enum PickleFixedEntries {
    /// Storages of 1 KiB with a byte pattern, enough for every dtype and small shapes.
    static let storages: [(name: String, data: [UInt8])] = (0..<16).map { key in
        ("archive/data/\(key)", (0..<1024).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ key) })
    }

    static func around(_ pickle: [UInt8]) -> [(name: String, data: [UInt8])] {
        [("archive/data.pkl", pickle), ("archive/byteorder", Array("little".utf8))] + storages
            + [("archive/version", Array("3\n".utf8))]
    }
}

@_cdecl("fuzz_pickle_main")
public func fuzzPickleMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Fuzz.main(argc, argv, fuzzPickle)
}
