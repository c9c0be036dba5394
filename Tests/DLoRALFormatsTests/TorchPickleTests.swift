import DLoRALFormats
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

/// PyTorch zip checkpoints: samples written by Tools/fixtures/make_torch_samples.py with torch,
/// committed so that these tests need no torch.
@Suite("TorchPickle")
struct TorchPickleTests {
    static let fixtures: String = {
        let here = URL(fileURLWithPath: #filePath)
        return here.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures").path
    }()
    static let torchDir = fixtures + "/torch"

    static func readJSON(_ path: String) throws -> JSONValue {
        let file = try MappedFile(path: path)
        return try withExtendedLifetime(file) { try StrictJSONParser.parse(file.bytes) }
    }

    static func expected() throws -> TensorTable {
        try SafetensorsFile(path: torchDir + "/expected.safetensors").tensors
    }

    /// Every tensor in `checkpoint` equals (dtype, shape, bytes) its contiguous copy in
    /// expected.safetensors, and `checkpoint` has exactly the expected names (minus `skip`).
    static func checkAgainstExpected(_ checkpoint: TorchCheckpoint, skip: Set<String> = []) throws {
        let expected = try expected()
        let actual = checkpoint.tensors
        #expect(Set(actual.names) == Set(expected.names).subtracting(skip))
        for name in expected.names where !skip.contains(name) {
            guard let want = expected[name], let got = actual[name] else {
                Issue.record("missing tensor \(name)")
                continue
            }
            #expect(got.dtype == want.dtype, "\(name)")
            #expect(got.shape == want.shape, "\(name)")
            let gotBytes = got.contiguousData()
            let wantBytes = want.contiguousData()
            #expect(gotBytes.count == wantBytes.count, "\(name)")
            let firstDifference = zip(gotBytes, wantBytes).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            #expect(firstDifference == nil, "\(name) differs at byte \(firstDifference ?? -1)")
            #expect(got.toFloat32() == want.toFloat32() || want.dtype.isFloatingPoint, "\(name)")
        }
    }

    @Test func protocol2SampleMatchesTorch() throws {
        let checkpoint = try TorchCheckpoint(path: Self.torchDir + "/sample_p2.pt")
        #expect(checkpoint.archivePrefix == "sample_p2/")
        try Self.checkAgainstExpected(checkpoint)
        #expect(checkpoint.tensors.count == 24)
    }

    @Test func protocol4SampleMatchesTorch() throws {
        let checkpoint = try TorchCheckpoint(path: Self.torchDir + "/sample_p4.pt")
        #expect(checkpoint.archivePrefix == "archive/")
        try Self.checkAgainstExpected(checkpoint, skip: ["big"])
    }

    @Test func zip64SampleMatchesTorch() throws {
        let checkpoint = try TorchCheckpoint(path: Self.torchDir + "/sample_zip64.pt")
        try Self.checkAgainstExpected(checkpoint, skip: ["big"])
        let pickle = try #require(checkpoint.archive.entry(named: "archive/data.pkl"))
        #expect(pickle.isStored)
    }

    @Test func stridesOffsetsAndSharedStorage() throws {
        let checkpoint = try TorchCheckpoint(path: Self.torchDir + "/sample_p2.pt")
        let t = checkpoint.tensors
        let transposed = try #require(t["transposed"])
        #expect(transposed.shape == [5, 3])
        #expect(transposed.strides == [1, 5])
        #expect(!transposed.isContiguous)
        #expect(transposed.contiguousBytes == nil)

        let a = try #require(t["shared_a"])
        let b = try #require(t["shared_b"])
        #expect(a.storage === b.storage)
        #expect(a.byteOffset == 2 * 4)
        #expect(b.byteOffset == 10 * 4)
        #expect(a.toFloat32() == [1, 1.5, 2, 2.5, 3, 3.5])
        #expect(b.shape == [3, 4])
        #expect(b.toFloat32().first == 5 && b.toFloat32().last == 10.5)

        let column = try #require(t["column"])
        #expect(column.shape == [4] && column.strides == [6] && column.byteOffset == 8)

        #expect(t["scalar"]?.shape == [] && t["scalar"]?.toFloat32() == [3.25])
        #expect(t["empty"]?.shape == [0, 3] && t["empty"]?.elementCount == 0)
        #expect(t["big"].map { $0.byteCount > 65_536 } == true)
        #expect(t["param"]?.shape == [2, 2])
        #expect(t["with_attr"]?.shape == [3])
        #expect(t["linear.weight"]?.shape == [2, 3] && t["linear.bias"]?.shape == [2])
        #expect(t["nested.list_of_tensors.1"]?.dtype == .float16)
    }

    @Test func tensorsPointIntoTheMappedFile() throws {
        let checkpoint = try TorchCheckpoint(path: Self.torchDir + "/sample_p2.pt")
        let base = try #require(checkpoint.file.bytes.baseAddress)
        let end = base + checkpoint.file.count
        for (name, view) in checkpoint.tensors.tensors where view.elementCount > 0 {
            let start = try #require(view.storage.bytes.baseAddress)
            #expect(start >= base && start + view.storage.bytes.count <= end, "\(name) is not a view into the mapping")
        }
    }

    @Test func plainDataValues() throws {
        let root = try TorchCheckpoint(path: Self.torchDir + "/sample_p2.pt").root
        let nested = try #require(root["nested"])
        let ints = try #require(nested["ints"]?.arrayValue)
        #expect(ints.prefix(6).compactMap(\.intValue) == [1, -2, 300, 70000, 1 << 40, Int.min])
        guard case .bigInt("1180591620717411303424") = ints[6], case .bigInt("-1180591620717411303424") = ints[7] else {
            Issue.record("big ints: \(ints[6]) \(ints[7])")
            return
        }
        guard case let .tuple(floats) = try #require(nested["floats"]) else { Issue.record("floats"); return }
        #expect(floats.compactMap(\.doubleValue) == [0.5, -1e300, .infinity])
        #expect(nested["strings"]?.stringArrayValue == ["hello", "ünïcødé ✓", ""])
        #expect(nested["od"]?.dictKeys == ["z", "a"])
        #expect(nested["od"]?["z"]?.intValue == 1)
        #expect(nested["od"]?["a"]?.tensorValue?.toFloat32() == [0, 1, 2])
        guard case let .tuple(flags) = try #require(nested["flags"]) else { Issue.record("flags"); return }
        #expect(flags[0].boolValue == true && flags[1].boolValue == false)
        if case .none = flags[2] {} else { Issue.record("expected None, got \(flags[2])") }
        guard case let .bytes(bytes) = try #require(nested["bytes"]) else { Issue.record("bytes"); return }
        #expect(bytes == [0, 1, 255])
        guard case let .set(set) = try #require(nested["set"]), case let .set(frozen) = try #require(nested["frozen"]) else {
            Issue.record("sets")
            return
        }
        #expect(set.compactMap(\.intValue) == [3] && frozen.compactMap(\.stringValue) == ["x"])
        #expect(nested["size"]?.arrayValue?.compactMap(\.intValue) == [2, 3])
        guard case .dtype(.bfloat16) = try #require(nested["dtype"]) else { Issue.record("dtype"); return }
        #expect(nested["device"]?.stringValue == "cpu")
        #expect(root["linear"]?.dictKeys == ["weight", "bias"])
        #expect(root.description.contains("'f32': tensor(F32, [3, 4])"))
    }

    @Test func keyPathsAndFlatten() throws {
        let checkpoint = try TorchCheckpoint(path: Self.torchDir + "/sample_p2.pt")
        let linear = try checkpoint.tensors(at: ["linear"])
        #expect(linear.names == ["weight", "bias"])
        #expect(try checkpoint.tensors(at: ["nested", "list_of_tensors"]).names == ["0", "1"])
        #expect(checkpoint.value(at: ["nested", "ints", "2"])?.intValue == 300)
        let error = #expect(throws: FormatError.self) { try checkpoint.tensors(at: ["state_dict_unet"]) }
        #expect(error?.kind == .invalidModel)
        #expect(error?.message.contains("state_dict_unet") == true)

        let flat = TorchCheckpoint.flatten(try #require(checkpoint.root["linear"]), prefix: "unet.lin")
        #expect(flat.names == ["unet.lin.weight", "unet.lin.bias"])
    }

    @Test func zipDirectoryIsRead() throws {
        let archive = try ZipArchive(path: Self.torchDir + "/sample_p2.pt")
        #expect(archive.entries.first?.name == "sample_p2/data.pkl")
        let order = try #require(archive.entry(named: "sample_p2/byteorder"))
        #expect(String(decoding: try archive.data(of: order), as: UTF8.self) == "little")
        // torch aligns storage data to 64 bytes
        let storage = try #require(archive.entry(named: "sample_p2/data/0"))
        #expect(try archive.dataOffset(of: storage) % 64 == 0)
    }

    // MARK: Refusals

    @Test func hostileCorpus() throws {
        let dir = Self.torchDir + "/bad"
        let manifest = try TorchPickleTests.readJSON(dir + "/manifest.json")
        let entries = try #require(manifest.objectValue)
        #expect(entries.count >= 20)
        for (name, spec) in entries {
            let kind = try #require(spec["kind"]?.stringValue.flatMap(FormatError.Kind.init(rawValue:)))
            let needle = try #require(spec["message_contains"]?.stringValue)
            let path = dir + "/" + name
            do {
                let checkpoint = try TorchCheckpoint(path: path)
                Issue.record("\(name) was accepted: \(checkpoint.root)")
            } catch let error as FormatError {
                #expect(error.kind == kind, "\(name): \(error)")
                #expect(error.description.contains(needle), "\(name): '\(error)' should mention '\(needle)'")
                #expect(error.file == path, "\(name)")
            }
        }
    }

    @Test func refusedGlobalsAreNamedAndNeverCalled() throws {
        let error = #expect(throws: FormatError.self) {
            try TorchCheckpoint(path: Self.torchDir + "/bad/os_system.pt")
        }
        #expect(error?.kind == .unsafe)
        #expect(error?.message.contains("pickle refers to global 'os.system'") == true)
        #expect(error?.message.contains("could execute code") == true)
    }

    @Test func outOfBoundsTensorNamesItsKeyPath() throws {
        let error = #expect(throws: FormatError.self) {
            try TorchCheckpoint(path: Self.torchDir + "/bad/storage_offset_oob.pt")
        }
        #expect(error?.kind == .malformed)
        #expect(error?.tensor == "layer.weight")
        let first = #expect(throws: FormatError.self) {
            try TorchCheckpoint(path: Self.torchDir + "/bad/storage_oob.pt")
        }
        #expect(first?.tensor == "weight")
    }

    @Test func legacyFormatIsUnsupported() throws {
        let error = #expect(throws: FormatError.self) { try TorchCheckpoint(path: Self.torchDir + "/legacy.pt") }
        #expect(error?.kind == .unsupported)
        #expect(error?.message.contains("legacy") == true)
        let notTorch = #expect(throws: FormatError.self) {
            try TorchCheckpoint(path: Self.torchDir + "/expected.safetensors")
        }
        #expect(notTorch?.kind == .malformed)
    }
}

/// The pickle machine on hand-written bytes: protocol-0 text opcodes and the guards.
@Suite("TorchPickle unpickler")
struct TorchPickleUnpicklerTests {
    static func unpickle(_ bytes: [UInt8]) throws -> PickleValue {
        try Unpickler.unpickle(bytes, file: "test.pkl")
    }

    static func failure(_ bytes: [UInt8]) -> FormatError? {
        #expect(throws: FormatError.self) { try unpickle(bytes) }
    }

    @Test func protocol0TextOpcodes() throws {
        let text = "(lp0\nI1\naI01\naF2.5\naS'a\\nb\\x41'\np1\naVx\\u00e9\np2\naL12345678901234567890123L\nag1\na(dp3\nS'k'\nNsa."
        let value = try Self.unpickle(Array(text.utf8))
        let items = try #require(value.arrayValue)
        #expect(items.count == 8)
        #expect(items[0].intValue == 1)
        #expect(items[1].boolValue == true)
        #expect(items[2].doubleValue == 2.5)
        #expect(items[3].stringValue == "a\nbA")
        #expect(items[4].stringValue == "xé")
        guard case .bigInt("12345678901234567890123") = items[5] else { Issue.record("\(items[5])"); return }
        #expect(items[6].stringValue == "a\nbA")
        #expect(items[7].dictKeys == ["k"])
    }

    @Test func binaryScalarsAndMemo() throws {
        // {'a': [1, -1, 65535, 1.5, b'xy', 'é', (), True]} with a memo round trip
        var b: [UInt8] = [0x80, 0x02, 0x7D, 0x71, 0x00, 0x58, 1, 0, 0, 0, 0x61, 0x5D, 0x71, 0x01, 0x28]
        b += [0x4B, 1, 0x4A, 0xFF, 0xFF, 0xFF, 0xFF, 0x4D, 0xFF, 0xFF]
        b += [0x47, 0x3F, 0xF8, 0, 0, 0, 0, 0, 0, 0x43, 2, 0x78, 0x79, 0x8C, 2, 0xC3, 0xA9, 0x29, 0x88]
        b += [0x65, 0x73, 0x2E]
        let value = try Self.unpickle(b)
        let list = try #require(value["a"]?.arrayValue)
        #expect(list.count == 8)
        #expect(list[0].intValue == 1 && list[1].intValue == -1 && list[2].intValue == 65535)
        #expect(list[3].doubleValue == 1.5 && list[5].stringValue == "é" && list[7].boolValue == true)
        // LONG1 boundaries
        #expect(try Self.unpickle([0x80, 2, 0x8A, 0, 0x2E]).intValue == 0)
        #expect(try Self.unpickle([0x80, 2, 0x8A, 1, 0xFF, 0x2E]).intValue == -1)
        #expect(try Self.unpickle([0x80, 2, 0x8A, 9, 0, 0, 0, 0, 0, 0, 0, 0x80, 0xFF, 0x2E]).intValue == Int.min)
        guard case .bigInt("9223372036854775808") = try Self.unpickle([0x80, 2, 0x8A, 9, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0x2E]) else {
            Issue.record("2**63")
            return
        }
    }

    @Test func sharedMutableContainersSeeLaterMutations() throws {
        // x = []; d = {'p': x, 'q': x}; x.append(7)  — appended after both references exist
        let b: [UInt8] = [0x80, 2, 0x7D, 0x28, 0x58, 1, 0, 0, 0, 0x70, 0x5D, 0x71, 0x00, 0x58, 1, 0, 0, 0, 0x71,
                          0x68, 0x00, 0x75, 0x68, 0x00, 0x4B, 7, 0x61, 0x30, 0x2E]
        let value = try Self.unpickle(b)
        #expect(value["p"]?.arrayValue?.compactMap(\.intValue) == [7])
        #expect(value["q"]?.arrayValue?.compactMap(\.intValue) == [7])
    }

    @Test func unknownGlobalsAreUnsafeWhateverTheOpcode() throws {
        let viaGlobal = Self.failure(Array("cbuiltins\ngetattr\n.".utf8))
        #expect(viaGlobal?.kind == .unsafe && viaGlobal?.message.contains("'builtins.getattr'") == true)
        let viaStack: [UInt8] = [0x80, 4, 0x8C, 2] + Array("os".utf8) + [0x8C, 6] + Array("system".utf8) + [0x93, 0x2E]
        #expect(Self.failure(viaStack)?.message.contains("'os.system'") == true)
        let viaInst = Self.failure(Array("(S'ls'\nisubprocess\ncheck_output\n.".utf8))
        #expect(viaInst?.kind == .unsafe && viaInst?.message.contains("subprocess.check_output") == true)
        // known torch names we do not read are unsupported, not unsafe
        #expect(Self.failure(Array("ctorch._utils\n_rebuild_qtensor\n.".utf8))?.kind == .unsupported)
        #expect(Self.failure(Array("ctorch\nComplexFloatStorage\n.".utf8))?.kind == .unsupported)
        // allowed names that are not callable
        #expect(Self.failure(Array("ctorch\nFloatStorage\n)R.".utf8))?.kind == .malformed)
        #expect(Unpickler.allowedGlobals.contains("torch._utils._rebuild_tensor_v2"))
        #expect(!Unpickler.allowedGlobals.contains { $0.hasPrefix("os.") || $0.hasPrefix("builtins.eval") })
    }

    @Test func malformedPicklesAreNamed() throws {
        let unknown = Self.failure([0x80, 2, 0xD0, 0x2E])
        #expect(unknown?.kind == .malformed && unknown?.message.contains("opcode 0xd0") == true)
        #expect(unknown?.message.contains("byte 2") == true)
        #expect(Self.failure([0x80, 2, 0x52, 0x2E])?.message.contains("stack is empty") == true)
        #expect(Self.failure([0x80, 2, 0x68, 3, 0x2E])?.message.contains("memo slot 3") == true)
        #expect(Self.failure([0x80, 2, 0x74, 0x2E])?.message.contains("MARK") == true)
        #expect(Self.failure([0x80, 2, 0x5D])?.message.contains("STOP") == true)
        #expect(Self.failure([0x80, 2, 0x58, 0xFF, 0xFF, 0xFF, 0xFF, 0x2E])?.message.contains("truncated") == true)
        #expect(Self.failure([0x80, 2, 0x8E] + [UInt8](repeating: 0xFF, count: 8) + [0x2E])?.kind == .malformed)
        #expect(Self.failure([0x80, 6, 0x4E, 0x2E])?.kind == .unsupported)
        #expect(Self.failure([0x80, 2, 0x58, 2, 0, 0, 0, 0xC3, 0x28, 0x2E])?.message.contains("UTF-8") == true)
        #expect(Self.failure([0x80, 2, 0x4E, 0x51, 0x2E])?.message.contains("persistent id") == true)
        // a list as a dict key
        #expect(Self.failure([0x80, 2, 0x7D, 0x5D, 0x4E, 0x73, 0x2E])?.message.contains("hash") == true)
        #expect(Self.failure([0x80, 2, 0x82, 1, 0x2E])?.kind == .unsafe)
    }

    @Test func deepNestingIsRefusedWithoutCrashing() throws {
        // 100 000 nested lists built bottom-up: ] ] ] … a a a
        let n = 100_000
        let direct = [0x80, 2] + [UInt8](repeating: 0x5D, count: n) + [UInt8](repeating: 0x61, count: n - 1) + [0x2E]
        #expect(Self.failure(direct)?.message.contains("nested deeper") == true)
        // The same depth built top-down through the memo, so no container knows its final depth
        // when it is inserted: L0 = []; for i: Li = []; L(i-1).append(Li)
        var chain: [UInt8] = [0x80, 2, 0x5D, 0x72, 0, 0, 0, 0]
        for i in 1..<UInt32(n) {
            chain += [0x6A] + withUnsafeBytes(of: (i - 1).littleEndian, Array.init)
            chain += [0x5D, 0x72] + withUnsafeBytes(of: i.littleEndian, Array.init)
            chain += [0x61, 0x30]
        }
        chain += [0x6A, 0, 0, 0, 0, 0x2E]
        #expect(Self.failure(chain)?.message.contains("nested deeper") == true)
        // Deep MARK nesting
        #expect(Self.failure([0x80, 2] + [UInt8](repeating: 0x28, count: 20_000) + [0x2E])?.kind == .malformed)
    }

    @Test func cyclesAndExponentialSharingAreRefused() throws {
        // x = []; x.append(x)
        #expect(Self.failure([0x80, 2, 0x5D, 0x71, 0, 0x68, 0, 0x61, 0x2E])?.message.contains("cycle") == true)
        // "billion laughs": each level is a list holding the previous level 16 times
        var laughs: [UInt8] = [0x80, 2, 0x4E, 0x71, 0]
        for level in 1...40 {
            laughs += [0x28] + [UInt8](repeating: 0, count: 0)
            for _ in 0..<16 { laughs += [0x68, UInt8(level - 1)] }
            laughs += [0x6C, 0x71, UInt8(level)]
        }
        laughs += [0x2E]
        #expect(Self.failure(laughs)?.message.contains("expand") == true)
        // Moderate sharing is fine: 3 levels of 16 → 4 096 leaves
        var shared: [UInt8] = [0x80, 2, 0x4E, 0x71, 0]
        for level in 1...3 {
            shared += [0x28]
            for _ in 0..<16 { shared += [0x68, UInt8(level - 1)] }
            shared += [0x6C, 0x71, UInt8(level)]
        }
        shared += [0x2E]
        #expect(try Self.unpickle(shared).arrayValue?.count == 16)
    }
}
/// Opt-in scale check: `DLORAL_BIG_TORCH_CHECKPOINT=/path/to/multi-GB.pt swift test --filter TorchPickle`.
/// Opening maps the file and reads only the zip directory and the pickle, never tensor bytes: the
/// resident memory grows by far less than the tensor data (the opening's speed is a benchmark's
/// business, Tools/bench).
@Test(.enabled(if: ProcessInfo.processInfo.environment["DLORAL_BIG_TORCH_CHECKPOINT"] != nil))
func torchBigCheckpointOpensWithoutReadingTensors() throws {
    let path = try #require(ProcessInfo.processInfo.environment["DLORAL_BIG_TORCH_CHECKPOINT"])
    /// Resident bytes of this process (/proc/self/statm, second field, in pages).
    func residentBytes() throws -> Int {
        let statm = try String(contentsOfFile: "/proc/self/statm", encoding: .utf8)
        let pages = try #require(statm.split(separator: " ").dropFirst().first.flatMap { Int($0) })
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
    let before = try residentBytes()
    let checkpoint = try TorchCheckpoint(path: path)
    let table = checkpoint.tensors
    let grown = try residentBytes() - before
    print("opened \(path): \(table.count) tensors, \(table.totalBytes) bytes of tensor data, resident memory +\(grown) bytes")
    #expect(table.totalBytes >= 1 << 30, "the check needs a checkpoint of at least 1 GiB of tensor data")
    #expect(grown < table.totalBytes / 16)
}

/// DLoRAL's model.pkl (Tests/Fixtures/tiny/model.pkl, written by Tools/fixtures/generate.py), checked
/// against what torch.load reports (Tools/fixtures/make_torch_samples.py --tiny-only writes
/// Tests/Fixtures/torch/tiny_model_expected.{json,safetensors}). `DLORAL_TINY_MODEL_PKL` overrides
/// the path.
@Suite("TorchPickle DLoRAL model.pkl")
struct TorchPickleDLoRALModelTests {
    static let modelPath = ProcessInfo.processInfo.environment["DLORAL_TINY_MODEL_PKL"]
        ?? TorchPickleTests.fixtures + "/tiny/model.pkl"
    static let expectedJSON = TorchPickleTests.torchDir + "/tiny_model_expected.json"
    static let expectedTensors = TorchPickleTests.torchDir + "/tiny_model_expected.safetensors"

    @Test(.enabled(if: FileManager.default.fileExists(atPath: modelPath)))
    func dloralLayout() throws {
        let checkpoint = try TorchCheckpoint(path: Self.modelPath)
        let root = checkpoint.root
        for part in ["encoder", "decoder", "others"] {
            for kind in ["quality", "consistency"] {
                let modules = root["unet_lora_\(part)_modules_\(kind)"]?.stringArrayValue
                #expect(modules?.isEmpty == false, "unet_lora_\(part)_modules_\(kind)")
            }
        }
        let rankQuality = try #require(root["lora_rank_unet_quality"]?.intValue)
        let rankConsistency = try #require(root["lora_rank_unet_consistency"]?.intValue)
        #expect(rankQuality > 0 && rankConsistency > 0)

        let unet = try checkpoint.tensors(at: ["state_dict_unet"])
        let bpp = try checkpoint.tensors(at: ["state_dict_bpp"])
        #expect(unet.count > 0 && bpp.count > 0)
        #expect(unet["conv_in.base_layer.weight"]?.shape.dropFirst().first == 8)
        #expect(unet["conv_in.lora_A.default_encoder_quality.weight"]?.shape.first == rankQuality)
        #expect(unet["conv_in.lora_A.default_encoder_consistency.weight"]?.shape.first == rankConsistency)
        for adapter in ["encoder", "decoder", "others"].flatMap({ ["default_\($0)_quality", "default_\($0)_consistency"] }) {
            #expect(unet.names.contains { $0.contains(".lora_B.\(adapter).weight") }, "\(adapter)")
        }

        guard FileManager.default.fileExists(atPath: Self.expectedJSON) else { return }
        let json = try TorchPickleTests.readJSON(Self.expectedJSON)
        let layout = try #require(json["layout"]?.objectValue)
        #expect(layout.map(\.0) == root.dictKeys)
        for (key, spec) in layout {
            let value = try #require(root[key])
            if let count = spec["count"]?.intValue {
                #expect((value.arrayValue?.count ?? value.dictValue?.count) == count, "\(key)")
                let first = spec["first"]?.arrayValue?.compactMap(\.stringValue) ?? []
                let actualFirst = value.stringArrayValue.map { Array($0.prefix(first.count)) } ?? Array(value.dictKeys.prefix(first.count))
                #expect(actualFirst == first, "\(key)")
            } else if let number = spec["value"]?.intValue {
                #expect(value.intValue == number, "\(key)")
            }
        }
        let expected = try SafetensorsFile(path: Self.expectedTensors).tensors
        for name in expected.names {
            let parts = name.split(separator: "/", maxSplits: 1).map(String.init)
            guard parts.count == 2, let want = expected[name] else { continue }
            if parts[0] == "crc32" {
                // CRC-32 of every tensor's contiguous bytes, in checkpoint order
                let table = try checkpoint.tensors(at: [parts[1]])
                let wantCRCs: [Int64] = want.contiguousData().withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
                #expect(wantCRCs.count == table.count, "\(name)")
                for (i, (tensorName, view)) in table.tensors.enumerated() where i < wantCRCs.count {
                    let crc = view.contiguousData().withUnsafeBytes { ZipArchive.crc32($0) }
                    #expect(Int64(crc) == wantCRCs[i], "\(parts[1]).\(tensorName)")
                }
                continue
            }
            let got = try #require(try checkpoint.tensors(at: [parts[0]])[parts[1]], "\(name)")
            #expect(got.dtype == want.dtype && got.shape == want.shape, "\(name)")
            #expect(got.contiguousData() == want.contiguousData(), "\(name)")
        }
    }
}

extension TorchPickleUnpicklerTests {
    @Test func exponentialTupleKeysAreRefused() throws {
        // T0 = None; Ti = (T(i-1), T(i-1)); {T40: None}
        var b: [UInt8] = [0x80, 2, 0x4E, 0x71, 0]
        for level in 1...40 { b += [0x68, UInt8(level - 1), 0x68, UInt8(level - 1), 0x86, 0x71, UInt8(level)] }
        b += [0x7D, 0x68, 40, 0x4E, 0x73, 0x2E]
        #expect(Self.failure(b)?.message.contains("too large") == true)
    }
}
