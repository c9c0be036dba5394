import DLoRALConvert
import DLoRALFormats
import Foundation
import Testing

private enum ONNXNamingFixtures {
    static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let onnxFolder = fixtures.appendingPathComponent("tiny/onnx")
    static let model = onnxFolder.appendingPathComponent("unet.onnx").path
    static let names = onnxFolder.appendingPathComponent("unet.names.json")
    static let base = fixtures.appendingPathComponent("tiny/base/unet/diffusion_pytorch_model.safetensors").path

    /// unet.names.json: initializer → {"param": diffusers name or null, "transform", "shape", …}.
    static func reference() throws -> (initializers: [String: [String: Any]], notFound: [String]) {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: names)) as! [String: Any]
        return (json["initializers"] as! [String: [String: Any]], json["params_not_found"] as? [String] ?? [])
    }
}

private func floats(_ values: [Float], _ shape: [Int]) -> TensorView {
    TensorView(dtype: .float32, shape: shape, storage: .copying(values, origin: "test"))
}

private func table(_ entries: [(String, TensorView)]) -> TensorTable {
    var t = TensorTable()
    for (name, view) in entries { t.set(name, view) }
    return t
}

@Suite("ONNX canonical names")
struct ONNXNamingTests {
    // MARK: - Against the exported tiny UNet and its value-matched reference

    /// Every initializer gets exactly the name PyTorch value matching found for it.
    @Test func fixtureNamesMatchReference() throws {
        let model = try ONNXModel(path: ONNXNamingFixtures.model)
        let reference = try ONNXNamingFixtures.reference()
        let mapping = try ONNXCanonicalNames.resolve(model)
        let byInitializer = Dictionary(grouping: mapping.entries, by: \.initializer)
        let unmatched = Set(mapping.unmatched.map(\.name))

        #expect(reference.notFound.isEmpty)
        for (initializer, entry) in reference.initializers {
            if let param = entry["param"] as? String {
                let got = byInitializer[initializer]?.map(\.canonical) ?? []
                #expect(got == ["unet." + param], "\(initializer)")
                let transform = byInitializer[initializer]?.first?.transform
                switch entry["transform"] as? String {
                case "transpose": #expect(transform == .transpose, "\(initializer)")
                case "unsqueeze_c11": #expect(transform == .squeeze, "\(initializer)")
                default: #expect(transform == .identity, "\(initializer)")
                }
            } else {
                #expect(unmatched.contains(initializer), "\(initializer) is a graph constant")
            }
        }
        #expect(mapping.entries.count + mapping.unmatched.count == reference.initializers.count)

        // The three kinds of initializer name the exporter produces are all present.
        #expect(mapping.entries.contains { $0.initializer == "conv_in.weight" && $0.canonical == "unet.conv_in.weight" })
        #expect(mapping.entries.contains { $0.initializer.hasPrefix("onnx::MatMul_") && $0.canonical.hasSuffix(".attn1.to_q.weight") })
        #expect(mapping.entries.contains { $0.initializer.hasPrefix("onnx::Mul_") && $0.canonical.hasSuffix(".norm1.weight") })
        #expect(mapping.entries.contains { $0.initializer.hasPrefix("onnx::Add_") && $0.canonical.hasSuffix(".norm1.bias") })
    }

    /// Every mapped tensor equals the base UNet's parameter exactly, in PyTorch layout, and every
    /// base parameter is found.
    @Test func fixtureValuesEqualBaseWeights() throws {
        let model = try ONNXModel(path: ONNXNamingFixtures.model)
        let (tensors, _) = try ONNXCanonicalNames.map(model)
        let base = try SafetensorsFile(path: ONNXNamingFixtures.base)
        #expect(tensors.count == base.table.count)
        for (name, expected) in base.table.tensors {
            let view = try #require(tensors["unet." + name], "unet.\(name) not mapped")
            #expect(view.dtype == expected.dtype, "\(name)")
            #expect(view.shape == expected.shape, "\(name)")
            #expect(view.toFloat32() == expected.toFloat32(), "\(name)")
            #expect(view.contiguousData() == expected.contiguousData(), "\(name)")
        }
    }

    /// Transposed and squeezed views share the initializer's (mapped) storage.
    @Test func fixtureViewsAreZeroCopy() throws {
        let model = try ONNXModel(path: ONNXNamingFixtures.model)
        let mapping = try ONNXCanonicalNames.resolve(model)
        var transposed = 0
        for entry in mapping.entries {
            let source = try #require(model.initializers[entry.initializer])
            let view = try #require(mapping.tensors[entry.canonical])
            #expect(view.storage === source.storage, "\(entry.canonical)")
            #expect(view.byteOffset == source.byteOffset)
            if entry.transform == .transpose {
                #expect(view.shape == [source.shape[1], source.shape[0]])
                #expect(!view.isContiguous)
                transposed += 1
            }
        }
        #expect(transposed > 0)
    }

    // MARK: - Rules, on small graphs built in memory

    static let attn = "down_blocks.0.attentions.0.transformer_blocks.0.attn1"

    static func syntheticModel() -> ONNXModel {
        let nodes = [
            ONNXNode(name: "/conv_in/Conv", opType: "Conv", inputs: ["sample", "conv_in.weight", "conv_in.bias"], outputs: ["c"]),
            // Linear to_q: weight folded to [in, out] = [2, 3].
            ONNXNode(name: "/down_blocks.0/attentions.0/transformer_blocks.0/attn1/to_q/MatMul", opType: "MatMul",
                     inputs: ["h", "onnx::MatMul_10"], outputs: ["q0"]),
            // Linear proj_in with its bias folded into an Add after the MatMul.
            ONNXNode(name: "/mid_block/attentions.0/proj_in/MatMul", opType: "MatMul", inputs: ["h", "onnx::MatMul_11"], outputs: ["p0"]),
            ONNXNode(name: "/mid_block/attentions.0/proj_in/Add", opType: "Add", inputs: ["onnx::Add_12", "p0"], outputs: ["p1"]),
            // GroupNorm scale and shift.
            ONNXNode(name: "/mid_block/resnets.0/norm1/Mul", opType: "Mul", inputs: ["n0", "onnx::Mul_13"], outputs: ["n1"]),
            ONNXNode(name: "/mid_block/resnets.0/norm1/Add", opType: "Add", inputs: ["n1", "onnx::Add_14"], outputs: ["n2"]),
            // Gemm without transB: weight stored [in, out].
            ONNXNode(name: "/time_embedding/linear_1/Gemm", opType: "Gemm", inputs: ["t", "onnx::Gemm_15", "onnx::Gemm_16"],
                     outputs: ["e"], attributes: ["transB": .int(0)]),
            // Not parameters: an attention scale and a shape constant.
            ONNXNode(name: "/down_blocks.0/attentions.0/transformer_blocks.0/attn1/Mul", opType: "Mul",
                     inputs: ["q0", "onnx::Mul_17"], outputs: ["q1"]),
            ONNXNode(name: "/down_blocks.0/attentions.0/transformer_blocks.0/attn1/Reshape", opType: "Reshape",
                     inputs: ["q1", "onnx::Reshape_18"], outputs: ["q2"]),
            ONNXNode(name: "", opType: "Mul", inputs: ["q2", "onnx::Mul_19"], outputs: ["q3"]),
        ]
        let initializers = table([
            ("conv_in.weight", floats([1, 2], [2, 1, 1, 1])),
            ("conv_in.bias", floats([3, 4], [2])),
            ("onnx::MatMul_10", floats([1, 2, 3, 4, 5, 6], [2, 3])),
            ("onnx::MatMul_11", floats([1, 2, 3, 4], [2, 2])),
            ("onnx::Add_12", floats([0.5, -0.5], [2])),
            ("onnx::Mul_13", floats([1.5, 2.5, 3.5], [3, 1, 1])),
            ("onnx::Add_14", floats([-1, -2, -3], [3, 1, 1])),
            ("onnx::Gemm_15", floats([1, 2, 3, 4, 5, 6], [3, 2])),
            ("onnx::Gemm_16", floats([7, 8], [2])),
            ("onnx::Mul_17", floats([0.125], [])),
            ("onnx::Reshape_18", TensorView(dtype: .int64, shape: [1], storage: .copying([Int64(-1)], origin: "test"))),
            ("onnx::Mul_19", floats([2], [1])),
            ("onnx::Unused_20", floats([1], [1])),
        ])
        return ONNXModel(path: "synthetic.onnx", nodes: nodes, initializers: initializers)
    }

    @Test func mapsEachInitializerKind() throws {
        let mapping = try ONNXCanonicalNames.resolve(Self.syntheticModel())
        let t = mapping.tensors
        #expect(t.names == [
            "unet.conv_in.weight", "unet.conv_in.bias",
            "unet.\(Self.attn).to_q.weight",
            "unet.mid_block.attentions.0.proj_in.weight", "unet.mid_block.attentions.0.proj_in.bias",
            "unet.mid_block.resnets.0.norm1.weight", "unet.mid_block.resnets.0.norm1.bias",
            "unet.time_embedding.linear_1.weight", "unet.time_embedding.linear_1.bias",
        ])
        // [in, out] = [[1,2,3],[4,5,6]] → PyTorch [out, in] = [[1,4],[2,5],[3,6]].
        let q = try #require(t["unet.\(Self.attn).to_q.weight"])
        #expect(q.shape == [3, 2])
        #expect(q.strides == [1, 3])
        #expect(q.toFloat32() == [1, 4, 2, 5, 3, 6])
        #expect(t["unet.time_embedding.linear_1.weight"]!.shape == [2, 3])
        #expect(t["unet.time_embedding.linear_1.weight"]!.toFloat32() == [1, 3, 5, 2, 4, 6])
        #expect(t["unet.mid_block.resnets.0.norm1.weight"]!.shape == [3])
        #expect(t["unet.mid_block.resnets.0.norm1.weight"]!.toFloat32() == [1.5, 2.5, 3.5])
        #expect(t["unet.mid_block.resnets.0.norm1.bias"]!.toFloat32() == [-1, -2, -3])
        #expect(t["unet.mid_block.attentions.0.proj_in.bias"]!.toFloat32() == [0.5, -0.5])
        #expect(t["unet.conv_in.weight"]!.shape == [2, 1, 1, 1])

        let unmatched = Dictionary(uniqueKeysWithValues: mapping.unmatched.map { ($0.name, $0.reason) })
        #expect(unmatched.keys.sorted() == ["onnx::Mul_17", "onnx::Mul_19", "onnx::Reshape_18", "onnx::Unused_20"])
        #expect(unmatched["onnx::Mul_17"]!.contains("neither a norm nor a Linear bias"))
        #expect(unmatched["onnx::Mul_17"]!.contains("/attn1/Mul"))
        #expect(unmatched["onnx::Reshape_18"]!.contains("Reshape"))
        #expect(unmatched["onnx::Mul_19"]!.contains("not a module path"))
        #expect(unmatched["onnx::Unused_20"] == "no node uses it")

        // The short form returns the same.
        let (tensors, short) = try ONNXCanonicalNames.map(Self.syntheticModel())
        #expect(tensors.names == t.names)
        #expect(short.map(\.name) == mapping.unmatched.map(\.name))
    }

    /// Identical values the exporter merged into one initializer go to every parameter using it.
    @Test func sharedInitializerMapsToEveryConsumer() throws {
        let nodes = ["norm1", "norm2"].flatMap { norm in
            [
                ONNXNode(name: "/mid_block/resnets.0/\(norm)/Mul", opType: "Mul", inputs: ["x", "onnx::Mul_1"], outputs: ["\(norm)m"]),
                ONNXNode(name: "/mid_block/resnets.0/\(norm)/Add", opType: "Add", inputs: ["\(norm)m", "onnx::Add_2"], outputs: ["\(norm)a"]),
            ]
        }
        let model = ONNXModel(
            path: "shared.onnx", nodes: nodes,
            initializers: table([("onnx::Mul_1", floats([1, 1], [2, 1, 1])), ("onnx::Add_2", floats([0, 0], [2, 1, 1]))]))
        let (tensors, unmatched) = try ONNXCanonicalNames.map(model)
        #expect(tensors.names.sorted() == [
            "unet.mid_block.resnets.0.norm1.bias", "unet.mid_block.resnets.0.norm1.weight",
            "unet.mid_block.resnets.0.norm2.bias", "unet.mid_block.resnets.0.norm2.weight",
        ])
        #expect(unmatched.isEmpty)
    }

    @Test func refusesTwoInitializersForOneParameter() throws {
        let model = ONNXModel(
            path: "conflict.onnx",
            nodes: [ONNXNode(name: "/conv_in/Conv", opType: "Conv", inputs: ["x", "onnx::Conv_1", "conv_in.bias"], outputs: ["y"])],
            initializers: table([
                ("conv_in.weight", floats([1], [1, 1, 1, 1])), ("onnx::Conv_1", floats([2], [1, 1, 1, 1])),
                ("conv_in.bias", floats([0], [1])),
            ]))
        let thrown = #expect(throws: FormatError.self) { try ONNXCanonicalNames.map(model) }
        #expect(thrown?.kind == .invalidModel)
        #expect(thrown?.file == "conflict.onnx")
        #expect(thrown?.tensor == "onnx::Conv_1")
        #expect(thrown?.message.contains("'unet.conv_in.weight'") == true)
        #expect(thrown?.message.contains("'conv_in.weight'") == true)
    }

    /// A wrapper module's prefix (`unet.conv_in.weight`, `/unet/conv_in/Conv`) is removed.
    @Test func stripsWrapperPrefix() throws {
        let model = ONNXModel(
            path: "wrapped.onnx",
            nodes: [
                ONNXNode(name: "/unet/conv_in/Conv", opType: "Conv", inputs: ["x", "unet.conv_in.weight", "unet.conv_in.bias"], outputs: ["c"]),
                ONNXNode(name: "/unet/mid_block/attentions.0/proj_in/MatMul", opType: "MatMul", inputs: ["c", "onnx::MatMul_5"], outputs: ["y"]),
            ],
            initializers: table([
                ("unet.conv_in.weight", floats([1], [1, 1, 1, 1])), ("unet.conv_in.bias", floats([0], [1])),
                ("onnx::MatMul_5", floats([1, 2], [1, 2])),
            ]))
        let (tensors, unmatched) = try ONNXCanonicalNames.map(model)
        #expect(tensors.names == ["unet.conv_in.weight", "unet.conv_in.bias", "unet.mid_block.attentions.0.proj_in.weight"])
        #expect(unmatched.isEmpty)
        // Other components keep the names as they are, under their own prefix.
        let vae = try ONNXCanonicalNames.map(
            ONNXModel(path: "vae.onnx", nodes: [], initializers: table([("decoder.conv_in.bias", floats([0], [1]))])),
            component: .vae)
        #expect(vae.tensors.names == ["vae.decoder.conv_in.bias"])
    }

    /// A LayerNorm decomposed into Mul/Add (older opsets) broadcasts [C].
    @Test func mapsDecomposedLayerNorm() throws {
        let prefix = "/up_blocks.1/attentions.0/transformer_blocks.0/norm2"
        let model = ONNXModel(
            path: "ln.onnx",
            nodes: [
                ONNXNode(name: "\(prefix)/Mul", opType: "Mul", inputs: ["x", "onnx::Mul_1"], outputs: ["m"]),
                ONNXNode(name: "\(prefix)/Add_1", opType: "Add", inputs: ["m", "onnx::Add_2"], outputs: ["a"]),
                ONNXNode(name: "/up_blocks.1/attentions.0/norm/Mul", opType: "Mul", inputs: ["x", "onnx::Mul_3"], outputs: ["m2"]),
            ],
            initializers: table([
                ("onnx::Mul_1", floats([1, 2], [2])), ("onnx::Add_2", floats([3, 4], [2])),
                ("onnx::Mul_3", floats([1, 2], [1, 2])),  // wrong broadcast axis for a norm
            ]))
        let mapping = try ONNXCanonicalNames.resolve(model)
        #expect(mapping.tensors.names == [
            "unet.up_blocks.1.attentions.0.transformer_blocks.0.norm2.weight",
            "unet.up_blocks.1.attentions.0.transformer_blocks.0.norm2.bias",
        ])
        #expect(mapping.entries.map(\.transform) == [.identity, .identity])
        #expect(mapping.unmatched.map(\.name) == ["onnx::Mul_3"])
        #expect(mapping.unmatched[0].reason.contains("not a per-channel"))
    }
}
