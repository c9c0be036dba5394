import DLoRALFormats
import Foundation
import Testing

/// Minimal protobuf writer, enough to build ONNX ModelProto bytes for edge cases.
private struct Proto {
    var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func tag(_ field: Int, _ wire: Int) { varint(UInt64(field << 3 | wire)) }

    mutating func int(_ field: Int, _ value: Int64) {
        tag(field, 0)
        varint(UInt64(bitPattern: value))
    }

    mutating func data(_ field: Int, _ value: [UInt8]) {
        tag(field, 2)
        varint(UInt64(value.count))
        bytes += value
    }

    mutating func string(_ field: Int, _ value: String) { data(field, Array(value.utf8)) }
    mutating func message(_ field: Int, _ value: Proto) { data(field, value.bytes) }

    mutating func packedVarints(_ field: Int, _ values: [Int64]) {
        var inner = Proto()
        for v in values { inner.varint(UInt64(bitPattern: v)) }
        data(field, inner.bytes)
    }

    mutating func packedFloats(_ field: Int, _ values: [Float]) {
        data(field, values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) })
    }

    mutating func packedDoubles(_ field: Int, _ values: [Double]) {
        data(field, values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) })
    }
}

private func littleEndianBytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }
}

/// A TensorProto. `external` entries are (key, value) pairs and set data_location EXTERNAL.
private func tensor(
    _ name: String, dims: [Int64], type: Int64 = 1, raw: [UInt8]? = nil, floats: [Float]? = nil,
    int32s: [Int64]? = nil, int64s: [Int64]? = nil, doubles: [Double]? = nil,
    external: [(String, String)]? = nil
) -> Proto {
    var t = Proto()
    for d in dims { t.int(1, d) }  // dims, unpacked as PyTorch's exporter writes them
    t.int(2, type)
    if let floats { t.packedFloats(4, floats) }
    if let int32s { t.packedVarints(5, int32s) }
    if let int64s { t.packedVarints(7, int64s) }
    t.string(8, name)
    if let raw { t.data(9, raw) }
    if let doubles { t.packedDoubles(10, doubles) }
    if let external {
        for (key, value) in external {
            var entry = Proto()
            entry.string(1, key)
            entry.string(2, value)
            t.message(13, entry)
        }
        t.int(14, 1)
    }
    return t
}

private func node(_ name: String, _ op: String, inputs: [String], outputs: [String], transB: Int64? = nil) -> Proto {
    var n = Proto()
    for i in inputs { n.string(1, i) }
    for o in outputs { n.string(2, o) }
    n.string(3, name)
    n.string(4, op)
    if let transB {
        var a = Proto()
        a.string(1, "transB")
        a.int(3, transB)
        a.int(20, 2)
        n.message(5, a)
    }
    return n
}

/// A ModelProto (IR 8, opset 17) with the given initializers and nodes.
private func model(
    initializers: [Proto], nodes: [Proto] = [], irVersion: Int64? = 8, sparse: Bool = false,
    metadata: [(String, String)] = []
) -> [UInt8] {
    var graph = Proto()
    for n in nodes { graph.message(1, n) }
    graph.string(2, "g")
    for t in initializers { graph.message(5, t) }
    if sparse {
        var s = Proto()
        s.int(3, 4)
        graph.message(15, s)
    }
    var input = Proto()
    input.string(1, "x")
    graph.message(11, input)
    var output = Proto()
    output.string(1, "y")
    graph.message(12, output)

    var m = Proto()
    if let irVersion { m.int(1, irVersion) }
    m.string(2, "dloral-tests")
    var opset = Proto()
    opset.string(1, "")
    opset.int(2, 17)
    m.message(8, opset)
    m.message(7, graph)
    for (key, value) in metadata {
        var entry = Proto()
        entry.string(1, key)
        entry.string(2, value)
        m.message(14, entry)
    }
    return m.bytes
}

/// Reads `bytes` as `name` in `folder`; the error, if any.
private func readError(_ bytes: [UInt8], name: String = "model.onnx", in folder: URL) throws -> FormatError? {
    let path = try TestPaths.write(bytes, name: name, in: folder)
    do {
        _ = try ONNXModel(path: path)
        return nil
    } catch let error as FormatError {
        #expect(error.file == path)
        #expect(error.description.contains(path), "message must name the file: \(error)")
        return error
    }
}

/// True when `view`'s bytes lie inside `file`'s mapping (zero copy).
private func pointsInto(_ view: TensorView, _ file: MappedFile) -> Bool {
    guard let base = file.bytes.baseAddress, let bytes = view.storage.bytes.baseAddress else { return false }
    return bytes >= base && bytes + view.storage.bytes.count <= base + file.count
}

@Suite("ONNX model reader")
struct ONNXModelTests {
    // MARK: - The tiny UNet fixture (Tools/fixtures/generate.py → Tests/Fixtures/tiny/onnx)

    static let tinyONNX = TestPaths.fixtures.appendingPathComponent("tiny/onnx")
    static let tinyModelPath = tinyONNX.appendingPathComponent("unet.onnx").path
    static let tinyBase = TestPaths.fixtures.appendingPathComponent(
        "tiny/base/unet/diffusion_pytorch_model.safetensors"
    ).path

    @Test func readsExportedUNetGraph() throws {
        let model = try ONNXModel(path: Self.tinyModelPath)
        #expect(model.irVersion >= 7)
        #expect(model.opsetVersion == 17)
        #expect(model.producerName == "pytorch")
        #expect(model.graphInputs == ["sample", "timestep", "encoder_hidden_states"])
        #expect(model.graphOutputs == ["out_sample"])
        #expect(model.nodes.count > 100)
        #expect(
            model.nodes.contains {
                $0.opType == "MatMul" && $0.name.hasSuffix("/transformer_blocks.0/attn1/to_q/MatMul")
            })
        #expect(model.nodes.contains { $0.opType == "Conv" && $0.name == "/conv_in/Conv" && $0.inputs.contains("conv_in.weight") })

        // Every initializer the reference reader lists is here, with its shape and dtype.
        let names = try JSONSerialization.jsonObject(
            with: Data(contentsOf: Self.tinyONNX.appendingPathComponent("unet.names.json"))) as! [String: Any]
        let reference = names["initializers"] as! [String: [String: Any]]
        #expect(model.initializers.count == reference.count)
        for (name, entry) in reference {
            let view = try #require(model.initializers[name], "initializer \(name) missing")
            #expect(view.shape == (entry["shape"] as! [Int]), "\(name)")
            #expect(view.dtype == .float32)
        }
    }

    /// External data is mapped once and every initializer is a view into that mapping.
    @Test func externalDataIsZeroCopy() throws {
        let model = try ONNXModel(path: Self.tinyModelPath)
        #expect(model.externalDataFiles.count == 1)
        let file = try #require(model.externalDataFiles.first)
        #expect(file.path.hasSuffix("/unet.onnx.data"))
        var external = 0
        for (name, view) in model.initializers.tensors where pointsInto(view, file) {
            #expect(view.contiguousBytes != nil, "\(name)")
            external += 1
        }
        #expect(external == model.initializers.count)
        #expect(model.initializers.totalBytes <= file.count)
    }

    /// Initializers that keep their PyTorch names hold exactly the base model's values.
    @Test func moduleNamedInitializersMatchBaseWeights() throws {
        let model = try ONNXModel(path: Self.tinyModelPath)
        let base = try SafetensorsFile(path: Self.tinyBase)
        var compared = 0
        for (name, view) in model.initializers.tensors where !name.hasPrefix("onnx::") {
            let expected = try #require(base.table[name], "\(name) not in the base UNet")
            #expect(view.shape == expected.shape, "\(name)")
            #expect(view.toFloat32() == expected.toFloat32(), "\(name)")
            compared += 1
        }
        #expect(compared > 50)
    }

    // MARK: - Bad corpus (Tests/Fixtures/bad)

    /// Expected error kind for every ONNX entry of the bad corpus.
    static let badExpectations: [String: (FormatError.Kind, String)] = [
        "onnx_external_absolute.onnx": (.unsafe, "absolute path"),
        "onnx_external_escape.onnx": (.unsafe, "leaves the model's folder"),
        "onnx_external_missing.onnx": (.io, "onnx_external_missing.bin"),
        "onnx_external_past_eof.onnx": (.malformed, "past the end"),
        "onnx_malformed.onnx": (.malformed, "not a valid ONNX protobuf"),
    ]

    @Test func badCorpusIsRefused() throws {
        let bad = TestPaths.fixtures.appendingPathComponent("bad")
        let manifest = try JSONSerialization.jsonObject(
            with: Data(contentsOf: bad.appendingPathComponent("manifest.json"))) as! [String: [String: Any]]
        let onnxEntries = manifest.filter { $0.value["kind"] as? String == "onnx" }.keys.sorted()
        #expect(!onnxEntries.isEmpty)
        for name in onnxEntries {
            let path = bad.appendingPathComponent(name).path
            guard let (kind, phrase) = Self.badExpectations[name] else {
                Issue.record("bad corpus entry \(name) has no expectation in ONNXModelTests.badExpectations")
                continue
            }
            do {
                _ = try ONNXModel(path: path)
                Issue.record("\(name) was accepted: \(manifest[name]?["problem"] ?? "")")
            } catch let error as FormatError {
                #expect(error.kind == kind, "\(name): \(error)")
                #expect(error.description.contains(path), "\(name): \(error)")
                #expect(error.description.contains(phrase), "\(name): \(error)")
                if name.hasPrefix("onnx_external") {
                    #expect(error.tensor == "W", "\(name): \(error)")
                }
            }
        }
    }

    // MARK: - Edge cases built in memory

    @Test func readsInlineAndTypedData() throws {
        let folder = try TestPaths.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let bytes = model(
            initializers: [
                tensor("raw", dims: [2, 2], raw: littleEndianBytes([1, -2, 0.5, 3])),
                tensor("floats", dims: [3], floats: [1.5, -0.25, 7]),
                // FLOAT16 in int32_data as bit patterns: 1.0, -2.0 (0xC000 written unsigned and signed).
                tensor("half", dims: [3], type: 10, int32s: [0x3C00, 0xC000, -16384]),
                tensor("bf16", dims: [2], type: 16, int32s: [0x3FC0, 0xC040]),
                tensor("i8", dims: [3], type: 3, int32s: [-128, 0, 127]),
                tensor("u8", dims: [2], type: 2, int32s: [0, 255]),
                tensor("flag", dims: [2], type: 9, int32s: [1, 0]),
                tensor("i64", dims: [2], type: 7, int64s: [-5, 1 << 40]),
                tensor("f64", dims: [1, 2], type: 11, doubles: [0.125, -4]),
                tensor("scalar", dims: [], floats: [42]),
                tensor("empty", dims: [0, 3]),
            ], metadata: [("source", "unit test")])
        let path = try TestPaths.write(bytes, name: "typed.onnx", in: folder)
        let m = try ONNXModel(path: path)
        let t = m.initializers
        #expect(t.names == ["raw", "floats", "half", "bf16", "i8", "u8", "flag", "i64", "f64", "scalar", "empty"])
        #expect(t["raw"]!.toFloat32() == [1, -2, 0.5, 3])
        #expect(t["raw"]!.shape == [2, 2])
        #expect(t["floats"]!.toFloat32() == [1.5, -0.25, 7])
        #expect(t["half"]!.dtype == .float16)
        #expect(t["half"]!.toFloat32() == [1, -2, -2])
        #expect(t["bf16"]!.dtype == .bfloat16)
        #expect(t["bf16"]!.toFloat32() == [1.5, -3])
        #expect(t["i8"]!.dtype == .int8)
        #expect(t["i8"]!.toFloat32() == [-128, 0, 127])
        #expect(t["u8"]!.toFloat32() == [0, 255])
        #expect(t["flag"]!.dtype == .bool)
        #expect(t["flag"]!.toFloat32() == [1, 0])
        #expect(t["i64"]!.contiguousData() == [-5, 1 << 40].flatMap { (v: Int64) in withUnsafeBytes(of: v.littleEndian, Array.init) })
        #expect(t["f64"]!.toFloat32() == [0.125, -4])
        #expect(t["scalar"]!.shape == [])
        #expect(t["scalar"]!.toFloat32() == [42])
        #expect(t["empty"]!.elementCount == 0)
        #expect(t.metadata["source"] == "unit test")
        #expect(m.externalDataFiles.isEmpty)
        #expect(m.graphName == "g")
        #expect(m.graphInputs == ["x"])
        #expect(m.graphOutputs == ["y"])
    }

    @Test func readsNodesAndAttributes() throws {
        let folder = try TestPaths.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let bytes = model(
            initializers: [tensor("w", dims: [2, 2], floats: [1, 2, 3, 4])],
            nodes: [node("/fc/Gemm", "Gemm", inputs: ["x", "w", ""], outputs: ["y"], transB: 1)])
        let m = try ONNXModel(path: try TestPaths.write(bytes, name: "gemm.onnx", in: folder))
        #expect(m.nodes == [
            ONNXNode(
                name: "/fc/Gemm", opType: "Gemm", inputs: ["x", "w", ""], outputs: ["y"],
                attributes: ["transB": .int(1)])
        ])
        #expect(m.nodes[0].intAttribute("transB") == 1)
    }

    /// Each problem is refused with the expected kind, naming the file and the initializer.
    @Test func refusesBadInitializers() throws {
        let cases: [(String, Proto, FormatError.Kind, String)] = [
            ("raw_data length", tensor("w", dims: [2, 3], raw: littleEndianBytes([1, 2, 3, 4])), FormatError.Kind.malformed, "raw_data has 16 bytes but shape [2, 3] × F32 needs 24"),
            ("float_data count", tensor("w", dims: [3], floats: [1, 2]), .malformed, "float_data has 2 values but shape [3] has 3 elements"),
            ("no data", tensor("w", dims: [3]), .malformed, "has no data"),
            ("raw and typed", tensor("w", dims: [1], raw: littleEndianBytes([1]), floats: [1]), .malformed, "both raw_data and float_data"),
            ("wrong typed field", tensor("w", dims: [1], int64s: [1]), .malformed, "carries int64_data"),
            ("int8 out of range", tensor("w", dims: [1], type: 3, int32s: [200]), .malformed, "does not fit"),
            ("string", tensor("w", dims: [1], type: 8), .unsupported, "STRING (8) is not supported"),
            ("uint16", tensor("w", dims: [1], type: 4, int32s: [1]), .unsupported, "UINT16 (4) is not supported"),
            ("float8", tensor("w", dims: [1], type: 17, raw: [0]), .unsupported, "FLOAT8E4M3FN (17)"),
            ("unknown type", tensor("w", dims: [1], type: 99, raw: [0]), .unsupported, "unknown code 99"),
            ("undefined type", tensor("w", dims: [1], type: 0, raw: [0]), .malformed, "data_type is missing"),
            ("negative dim", tensor("w", dims: [-1], raw: []), .malformed, "negative"),
            ("overflow", tensor("w", dims: [1 << 40, 1 << 40], raw: []), .malformed, "overflows"),
            // Zero elements, but the other dimensions' product overflows (strides would trap;
            // found by Tools/fuzz, target onnx).
            ("overflow after a zero dim", tensor("w", dims: [0, 1 << 40, 1 << 40], raw: []), .malformed, "overflows"),
            ("external and raw", { var t = tensor("w", dims: [1], raw: littleEndianBytes([1])); t.int(14, 1); return t }(), .malformed, "EXTERNAL but the tensor also has raw_data"),
            ("external without location", tensor("w", dims: [1], external: [("offset", "0")]), .malformed, "no 'location'"),
            ("external bad offset", tensor("w", dims: [1], external: [("location", "d.bin"), ("offset", "-4")]), .malformed, "non-negative integer"),
        ]
        let folder = try TestPaths.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        for (label, t, kind, phrase) in cases {
            let error = try readError(model(initializers: [t]), name: "\(label).onnx", in: folder)
            #expect(error?.kind == kind, "\(label): \(String(describing: error))")
            #expect(error?.tensor == "w", "\(label)")
            #expect(error?.message.contains(phrase) == true, "\(label): \(String(describing: error))")
        }
    }

    @Test func refusesMalformedFiles() throws {
        let folder = try TestPaths.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let good = model(initializers: [tensor("w", dims: [4], floats: [1, 2, 3, 4])])
        let cases: [(String, [UInt8], FormatError.Kind, String)] = [
            ("empty", [], .malformed, "not a valid ONNX protobuf"),
            ("text", Array("this is not a protobuf at all\n".utf8), .malformed, "not a valid ONNX protobuf"),
            ("truncated", Array(good.prefix(good.count - 5)), .malformed, "not a valid ONNX protobuf"),
            ("safetensors", safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]), .malformed, "not a valid ONNX protobuf"),
            ("no graph", { var m = Proto(); m.int(1, 8); return m.bytes }(), .malformed, "no graph"),
            ("no ir_version", model(initializers: [], irVersion: nil), .malformed, "ir_version"),
            ("duplicate", model(initializers: [tensor("w", dims: [1], floats: [1]), tensor("w", dims: [1], floats: [2])]), .malformed, "appears twice"),
            ("unnamed", model(initializers: [tensor("", dims: [1], floats: [1])]), .malformed, "initializer #0 has no name"),
            ("sparse", model(initializers: [], sparse: true), .unsupported, "sparse"),
        ]
        for (label, bytes, kind, phrase) in cases {
            let error = try readError(bytes, name: "\(label).onnx", in: folder)
            #expect(error?.kind == kind, "\(label): \(String(describing: error))")
            #expect(error?.message.contains(phrase) == true, "\(label): \(String(describing: error))")
        }
    }

    // MARK: - External data

    @Test func externalDataSharedFileMappedOnceAndZeroCopy() throws {
        let folder = try TestPaths.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("weights"), withIntermediateDirectories: true)
        _ = try TestPaths.write(littleEndianBytes([9, 1, 2, 3, 4, 5, 6]), name: "weights/all.bin", in: folder)
        _ = try TestPaths.write(littleEndianBytes([7, 8]), name: "other.bin", in: folder)
        let bytes = model(initializers: [
            tensor("a", dims: [2, 2], external: [("location", "weights/all.bin"), ("offset", "4"), ("length", "16")]),
            tensor("b", dims: [2], external: [("location", "./weights/../weights/all.bin"), ("offset", "20"), ("length", "8"), ("checksum", "ignored")]),
            tensor("c", dims: [2], external: [("location", "other.bin")]),  // no offset/length: the whole file
        ])
        let m = try ONNXModel(path: try TestPaths.write(bytes, name: "ext.onnx", in: folder))
        #expect(m.externalDataFiles.count == 2)
        #expect(m.initializers["a"]!.toFloat32() == [1, 2, 3, 4])
        #expect(m.initializers["b"]!.toFloat32() == [5, 6])
        #expect(m.initializers["c"]!.toFloat32() == [7, 8])
        #expect(pointsInto(m.initializers["a"]!, m.externalDataFiles[0]))
        #expect(pointsInto(m.initializers["b"]!, m.externalDataFiles[0]))
        #expect(pointsInto(m.initializers["c"]!, m.externalDataFiles[1]))
        #expect(m.initializers["b"]!.storage.bytes.baseAddress == m.externalDataFiles[0].bytes.baseAddress! + 20)
    }

    /// protoc-c hands strings out NUL-terminated: "data.bin\0…" used to be read as "data.bin".
    @Test func refusesNULInExternalDataLocation() throws {
        let folder = try TestPaths.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        _ = try TestPaths.write(littleEndianBytes([1, 2]), name: "data.bin", in: folder)
        let ok = model(initializers: [tensor("w", dims: [2], external: [("location", "data.bin")])])
        #expect(try readError(ok, name: "ok.onnx", in: folder) == nil)
        for (key, value) in [("location", "data.bin\u{0}../../etc/passwd"), ("location\u{0}x", "data.bin")] {
            let bad = model(initializers: [tensor("w", dims: [2], external: [(key, value)])])
            let error = try #require(try readError(bad, in: folder), "a NUL in \(key.debugDescription) was accepted")
            #expect(error.kind == .malformed && error.tensor == "w")
            #expect(error.message.contains("NUL"), "\(error)")
        }
    }

    @Test func refusesBadExternalData() throws {
        let folder = try TestPaths.temporaryFolder()
        let outside = try TestPaths.temporaryFolder()
        defer {
            try? FileManager.default.removeItem(at: folder)
            try? FileManager.default.removeItem(at: outside)
        }
        _ = try TestPaths.write(littleEndianBytes([1, 2, 3, 4]), name: "data.bin", in: folder)
        let secret = try TestPaths.write(littleEndianBytes([1, 2]), name: "secret.bin", in: outside)
        try FileManager.default.createSymbolicLink(
            atPath: folder.appendingPathComponent("link.bin").path, withDestinationPath: secret)
        try FileManager.default.createSymbolicLink(
            atPath: folder.appendingPathComponent("linkdir").path, withDestinationPath: outside.path)

        func ext(_ location: String, offset: String = "0", length: String = "8") -> Proto {
            tensor("w", dims: [2], external: [("location", location), ("offset", offset), ("length", length)])
        }
        let cases: [(String, Proto, FormatError.Kind, String)] = [
            ("absolute", ext(secret), .unsafe, "is an absolute path"),
            ("dotdot", ext("../\(outside.lastPathComponent)/secret.bin"), .unsafe, "leaves the model's folder"),
            ("dotdot missing", ext("a/../../nothing.bin"), .unsafe, "leaves the model's folder"),
            ("symlink file", ext("link.bin"), .unsafe, "outside"),
            ("symlink folder", ext("linkdir/secret.bin"), .unsafe, "outside"),
            ("missing", ext("nothing.bin"), .io, "'nothing.bin'"),
            ("folder", ext("."), .io, "not a regular file"),
            ("past end", ext("data.bin", offset: "12", length: "8"), .malformed, "runs past the end of 'data.bin' (16 bytes"),
            ("offset past end", ext("data.bin", offset: "20"), .malformed, "offset 20 is past the end"),
            ("length mismatch", ext("data.bin", offset: "0", length: "12"), .malformed, "has 12 bytes but shape [2] × F32 needs 8"),
            ("rest of file mismatch", tensor("w", dims: [2], external: [("location", "data.bin")]), .malformed, "has 16 bytes but shape [2] × F32 needs 8"),
        ]
        for (label, t, kind, phrase) in cases {
            let error = try readError(model(initializers: [t]), name: "\(label).onnx", in: folder)
            #expect(error?.kind == kind, "\(label): \(String(describing: error))")
            #expect(error?.tensor == "w", "\(label)")
            #expect(error?.message.contains(phrase) == true, "\(label): \(String(describing: error))")
        }
        // The symlinked folder itself is fine when the model sits inside it (the model's folder is
        // resolved too).
        let viaLink = folder.appendingPathComponent("linkdir")
        let ok = try TestPaths.write(model(initializers: [ext("secret.bin")]), name: "ok.onnx", in: viaLink)
        #expect(try ONNXModel(path: ok).initializers["w"]!.toFloat32() == [1, 2])
    }
}
