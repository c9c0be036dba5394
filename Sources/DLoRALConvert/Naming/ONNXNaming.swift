import DLoRALFormats

/// Maps the initializers of an exported diffusers UNet (or other diffusers module) to canonical
/// parameter names, `<component>.<diffusers name>`, in PyTorch layout.
///
/// PyTorch's ONNX exporter (TorchScript, opset 17, constant folding) leaves three kinds of name:
/// - module paths, kept as they are: `conv_in.weight`, `down_blocks.0.resnets.0.conv1.bias`,
///   `…transformer_blocks.0.norm1.weight` (LayerNormalization), `…proj_in.bias`;
/// - `onnx::MatMul_<n>`: a Linear weight folded into the transposed layout [in, out]. The MatMul
///   node that consumes it is named after the module
///   (`/down_blocks.0/attentions.0/transformer_blocks.0/attn1/to_q/MatMul`), which gives
///   `down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight`; the view is presented
///   as [out, in] with swapped strides (no copy);
/// - `onnx::Mul_<n>` / `onnx::Add_<n>` of shape [C, 1, 1]: a GroupNorm scale / shift consumed by
///   `/…/norm1/Mul` / `/…/norm1/Add`, giving `…norm1.weight` / `…norm1.bias` reshaped to [C].
///   A 1-D `onnx::Add_<n>` added to the output of the same module's MatMul is that Linear's bias.
/// Conv, Gemm (with transB), LayerNormalization and GroupNormalization inputs are mapped by
/// position the same way when their initializers carry generated names.
///
/// Anything else (attention scales, shape constants, an initializer no node uses) is returned in
/// `unmatched` with the reason, for `inspect` to report.
public enum ONNXCanonicalNames {
    /// How an initializer's values were rearranged to PyTorch layout.
    public enum Transform: String, Sendable {
        /// As stored.
        case identity
        /// A [in, out] MatMul weight presented as [out, in].
        case transpose
        /// A broadcastable norm parameter ([C, 1, 1], [1, C, 1, 1]) presented as [C].
        case squeeze
    }

    /// One mapped initializer.
    public struct Entry: Sendable, Equatable {
        /// The raw ONNX initializer name.
        public let initializer: String
        /// The canonical name, with the component prefix.
        public let canonical: String
        public let transform: Transform
    }

    /// The full result of a mapping pass.
    public struct Mapping: Sendable {
        /// Canonical name → view in PyTorch layout, in initializer order.
        public var tensors: TensorTable
        public var entries: [Entry]
        /// Initializers that could not be placed, with the reason.
        public var unmatched: [(name: String, reason: String)]
    }

    /// Maps `model`'s initializers to canonical names under `component` (`unet.` by default).
    /// - Throws: `FormatError` (`.invalidModel`) naming the model file if two initializers claim
    ///   the same parameter.
    public static func map(_ model: ONNXModel, component: ModelComponent = .unet) throws
        -> (tensors: TensorTable, unmatched: [(name: String, reason: String)])
    {
        let mapping = try resolve(model, component: component)
        return (mapping.tensors, mapping.unmatched)
    }

    /// Like `map`, also listing which initializer became which parameter and how.
    public static func resolve(_ model: ONNXModel, component: ModelComponent = .unet) throws -> Mapping {
        let graph = GraphIndex(model)
        let wrapper = component == .unet ? wrapperPrefix(model) : nil
        let prefix = component.rawValue + "."

        var result = Mapping(tensors: TensorTable(), entries: [], unmatched: [])
        result.tensors.metadata = model.initializers.metadata
        var claimedBy: [String: String] = [:]

        for (name, view) in model.initializers.tensors {
            var placements: [(String, Transform, TensorView)] = []
            var reasons: [String] = []

            if let path = modulePath(ofParameter: name) {
                // Already a module path: keep it (minus an export wrapper's prefix).
                placements.append((strip(wrapper, from: path), .identity, view))
            } else {
                let consumers = graph.consumers[name] ?? []
                if consumers.isEmpty {
                    reasons.append("no node uses it")
                }
                var seen = Set<String>()
                for (node, slot) in consumers {
                    switch place(name, view, node: node, slot: slot, graph: graph, wrapper: wrapper) {
                    case let .placed(parameter, transform, placedView):
                        if seen.insert(parameter).inserted {
                            placements.append((parameter, transform, placedView))
                        }
                    case let .rejected(reason):
                        reasons.append(reason)
                    }
                }
            }

            if placements.isEmpty {
                let reason = reasons.isEmpty ? "not recognised" : reasons.prefix(3).joined(separator: "; ")
                result.unmatched.append((name: name, reason: reason))
                continue
            }
            for (parameter, transform, placedView) in placements {
                let canonical = prefix + parameter
                if let other = claimedBy[canonical] {
                    throw FormatError(
                        .invalidModel, file: model.path, tensor: name,
                        "maps to '\(canonical)', which initializer '\(other)' already provides; cannot tell which holds the parameter")
                }
                claimedBy[canonical] = name
                result.tensors.set(canonical, placedView)
                result.entries.append(Entry(initializer: name, canonical: canonical, transform: transform))
            }
        }
        return result
    }

    // MARK: - Graph structure

    struct GraphIndex {
        /// Value name → (node, input slot) for every use.
        var consumers: [String: [(ONNXNode, Int)]] = [:]
        /// Value name → the node that produces it.
        var producer: [String: ONNXNode] = [:]

        init(_ model: ONNXModel) {
            for node in model.nodes {
                for (slot, input) in node.inputs.enumerated() where !input.isEmpty {
                    consumers[input, default: []].append((node, slot))
                }
                for output in node.outputs where !output.isEmpty {
                    producer[output] = node
                }
            }
        }
    }

    enum Placement {
        case placed(String, Transform, TensorView)
        case rejected(String)
    }

    /// Decides what `initializer`, used as input `slot` of `node`, is.
    static func place(
        _ initializer: String, _ view: TensorView, node: ONNXNode, slot: Int, graph: GraphIndex, wrapper: String?
    ) -> Placement {
        let described = "used by \(node.opType) '\(node.name)' input \(slot)"
        guard let rawModule = modulePath(ofNode: node.name) else {
            return .rejected("\(described), whose name is not a module path")
        }
        let module = strip(wrapper, from: rawModule)
        let leaf = module.split(separator: ".").last.map(String.init) ?? module
        let isNorm = leaf.lowercased().contains("norm")

        switch (node.opType, slot) {
        case ("MatMul", 1):
            guard view.shape.count == 2 else {
                return .rejected("\(described), but it is \(view.shape.count)-D, not a [in, out] Linear weight")
            }
            return .placed(module + ".weight", .transpose, transposed(view))
        case ("Gemm", 1):
            guard view.shape.count == 2 else {
                return .rejected("\(described), but it is \(view.shape.count)-D, not a Linear weight")
            }
            if (node.intAttribute("transB") ?? 0) != 0 {
                return .placed(module + ".weight", .identity, view)
            }
            return .placed(module + ".weight", .transpose, transposed(view))
        case ("Gemm", 2), ("Conv", 2), ("ConvTranspose", 2):
            guard view.shape.count == 1 else {
                return .rejected("\(described), but it is \(view.shape.count)-D, not a bias")
            }
            return .placed(module + ".bias", .identity, view)
        case ("Conv", 1), ("ConvTranspose", 1):
            return .placed(module + ".weight", .identity, view)
        case ("LayerNormalization", 1), ("GroupNormalization", 1):
            return .placed(module + ".weight", .identity, view)
        case ("LayerNormalization", 2), ("GroupNormalization", 2):
            return .placed(module + ".bias", .identity, view)
        case ("Mul", 0...1), ("Add", 0...1):
            let parameter = node.opType == "Mul" ? ".weight" : ".bias"
            if isNorm {
                // GroupNorm over NCHW broadcasts [C, 1, 1]; a decomposed LayerNorm broadcasts [C].
                if let squeezed = channelVector(view) {
                    return .placed(module + parameter, view.shape.count == 1 ? .identity : .squeeze, squeezed)
                }
                return .rejected("\(described), but its shape \(view.shape) is not a per-channel [C, 1, 1] or [C]")
            }
            if node.opType == "Add", view.shape.count == 1 {
                // A Linear's bias, added to the output of the same module's MatMul.
                let other = node.inputs.indices.first { $0 != slot }.map { node.inputs[$0] }
                if let other, let producer = graph.producer[other], producer.opType == "MatMul",
                    let producerModule = modulePath(ofNode: producer.name),
                    strip(wrapper, from: producerModule) == module
                {
                    return .placed(module + ".bias", .identity, view)
                }
                return .rejected("\(described), which does not add it to a MatMul of the same module")
            }
            return .rejected("\(described), which is neither a norm nor a Linear bias")
        default:
            return .rejected(described)
        }
    }

    /// [in, out] → [out, in] by swapping strides.
    static func transposed(_ view: TensorView) -> TensorView {
        TensorView(
            dtype: view.dtype, shape: [view.shape[1], view.shape[0]], storage: view.storage,
            byteOffset: view.byteOffset, strides: [view.strides[1], view.strides[0]])
    }

    /// A [C], [C, 1, 1] or [1, C, 1, 1] view as [C]; `nil` for any other shape.
    static func channelVector(_ view: TensorView) -> TensorView? {
        let shape = view.shape
        let channels: Int
        switch shape.count {
        case 1: channels = shape[0]
        case 3 where shape[1] == 1 && shape[2] == 1: channels = shape[0]
        case 4 where shape[0] == 1 && shape[2] == 1 && shape[3] == 1: channels = shape[1]
        default: return nil
        }
        let axis = shape.count == 4 ? 1 : 0
        return TensorView(
            dtype: view.dtype, shape: [channels], storage: view.storage, byteOffset: view.byteOffset,
            strides: [view.strides[axis]])
    }

    // MARK: - Names

    /// `down_blocks.0.resnets.0.conv1.weight` → itself; `onnx::MatMul_12`, `/a/b`, `x` → nil.
    static func modulePath(ofParameter name: String) -> String? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 2, parts.allSatisfy(isIdentifierPart) else { return nil }
        guard let first = parts.first?.first, first.isLetter || first == "_" else { return nil }
        return name
    }

    /// `/down_blocks.0/attentions.0/proj_in/MatMul` → `down_blocks.0.attentions.0.proj_in`;
    /// nil for a node at the top level or a name that is not a module path.
    static func modulePath(ofNode name: String) -> String? {
        guard name.hasPrefix("/") else { return nil }
        var parts = name.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 2 else { return nil }
        parts.removeLast()  // the op, e.g. MatMul, Mul_1
        guard parts.allSatisfy({ !$0.isEmpty }) else { return nil }
        let path = parts.joined(separator: ".")
        let pieces = path.split(separator: ".", omittingEmptySubsequences: false)
        guard pieces.allSatisfy(isIdentifierPart) else { return nil }
        return path
    }

    static func isIdentifierPart(_ part: Substring) -> Bool {
        !part.isEmpty && part.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
    }

    /// Top-level modules of a diffusers `UNet2DConditionModel`.
    static let unetTopLevel: Set<String> = [
        "conv_in", "time_proj", "time_embedding", "class_embedding", "add_time_proj", "add_embedding",
        "encoder_hid_proj", "down_blocks", "mid_block", "up_blocks", "conv_norm_out", "conv_act",
        "conv_out", "position_net",
    ]

    /// The prefix a wrapper module adds to every name (`unet` for a `Wrapper.unet` export): every
    /// module-named initializer starts with the same component, which is not a UNet module, and
    /// continues with one.
    static func wrapperPrefix(_ model: ONNXModel) -> String? {
        var common: Substring?
        for name in model.initializers.names where modulePath(ofParameter: name) != nil {
            let parts = name.split(separator: ".")
            guard parts.count >= 3, unetTopLevel.contains(String(parts[1])) else { return nil }
            if let common, common != parts[0] { return nil }
            common = parts[0]
        }
        guard let common, !unetTopLevel.contains(String(common)) else { return nil }
        return String(common)
    }

    static func strip(_ wrapper: String?, from path: String) -> String {
        guard let wrapper, path.hasPrefix(wrapper + ".") else { return path }
        return String(path.dropFirst(wrapper.count + 1))
    }
}
