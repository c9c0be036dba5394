import DLoRALFormats

// diffusers' spatial transformer as the SD UNet uses it: `Transformer2DModel` (continuous input)
// holding `BasicTransformerBlock`s with self-attention, cross-attention and a GEGLU feed-forward.

/// diffusers `Attention` with the default processor, no norms, no mask: `to_q`/`to_k`/`to_v`
/// (bias when the table has one, none in SD), multi-head softmax attention, `to_out.0` (+ bias).
public struct TransformerAttention: Sendable {
    public let toQ: BlocksLinear
    public let toK: BlocksLinear
    public let toV: BlocksLinear
    public let toOut: BlocksLinear
    public let heads: Int
    /// The logits `Q·Kᵀ` on the integer path: when `to_q` and `to_k` both quantize their
    /// activations to int8 (Formats/dlrt.md §4.2).
    public let int8Logits: Bool

    /// Loads `<prefix>.to_q`, `.to_k`, `.to_v`, `.to_out.0`.
    public init(table: TensorTable, prefix: String, heads: Int) throws {
        toQ = try BlocksLinear(table: table, prefix: blocksName(prefix, "to_q"))
        toK = try BlocksLinear(table: table, prefix: blocksName(prefix, "to_k"))
        toV = try BlocksLinear(table: table, prefix: blocksName(prefix, "to_v"))
        toOut = try BlocksLinear(table: table, prefix: blocksName(prefix, "to_out.0"))
        let inner = toQ.outFeatures
        guard heads > 0, inner % heads == 0 else {
            throw EngineError.shapeMismatch(
                operation: "attention \(prefix) with \(heads) heads",
                expected: "inner dimension divisible by the head count", actual: toQ.kernel.shape)
        }
        self.heads = heads
        int8Logits = toQ.kernel.int8RowActivations && toK.kernel.int8RowActivations
    }

    /// - Parameters:
    ///   - x: `[B, T, C]` queries' source.
    ///   - context: `[B, S, Cc]` or `[1, S, Cc]` (shared by the batch); nil for self-attention.
    /// - Returns: `[B, T, C]`.
    public func callAsFunction(_ x: Tensor, context: Tensor? = nil) -> Tensor {
        let q = toQ(x)
        let source = context ?? x
        var k = toK(source)
        var v = toV(source)
        let batch = x.shape[0]
        if k.shape[0] != batch {
            precondition(k.shape[0] == 1, "attention context batch \(k.shape[0]) vs \(batch)")
            k = transformerRepeatBatch(k, batch)
            v = transformerRepeatBatch(v, batch)
        }
        return toOut(Ops.attention(q: q, k: k, v: v, heads: heads, int8Logits: int8Logits))
    }
}

/// `[1, …]` repeated to `[n, …]`.
func transformerRepeatBatch(_ x: Tensor, _ n: Int) -> Tensor {
    var shape = x.shape
    shape[0] = n
    var data = [Float]()
    data.reserveCapacity(x.count * n)
    for _ in 0..<n { data.append(contentsOf: x.data) }
    return Tensor(shape: shape, data: data)
}

/// A `torch.nn.LayerNorm` over the last axis with its affine weights.
public struct TransformerLayerNorm: Sendable {
    public let weight: Tensor?
    public let bias: Tensor?
    public let eps: Float

    public init(table: TensorTable, prefix: String, eps: Float) throws {
        let w = blocksName(prefix, "weight")
        let b = blocksName(prefix, "bias")
        weight = table[w] == nil ? nil : try Tensor.load(w, from: table)
        bias = table[b] == nil ? nil : try Tensor.load(b, from: table)
        guard weight != nil || bias != nil else { throw EngineError.missingTensor(name: w) }
        self.eps = eps
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        Ops.layerNorm(x, weight: weight, bias: bias, eps: eps)
    }
}

/// diffusers `BasicTransformerBlock` (norm_type "layer_norm", eps 1e-5, not only-cross):
/// `x += attn1(norm1(x))`, `x += attn2(norm2(x), context)`, `x += ff(norm3(x))` with the GEGLU
/// feed-forward `ff.net.2(geglu(ff.net.0.proj(·)))`.
public struct BasicTransformerBlock: Sendable {
    public let norm1: TransformerLayerNorm
    public let attn1: TransformerAttention
    public let norm2: TransformerLayerNorm
    public let attn2: TransformerAttention
    public let norm3: TransformerLayerNorm
    public let ffProj: BlocksLinear
    public let ffOut: BlocksLinear

    public init(table: TensorTable, prefix: String, heads: Int, eps: Float = 1e-5) throws {
        norm1 = try TransformerLayerNorm(table: table, prefix: blocksName(prefix, "norm1"), eps: eps)
        attn1 = try TransformerAttention(table: table, prefix: blocksName(prefix, "attn1"), heads: heads)
        norm2 = try TransformerLayerNorm(table: table, prefix: blocksName(prefix, "norm2"), eps: eps)
        attn2 = try TransformerAttention(table: table, prefix: blocksName(prefix, "attn2"), heads: heads)
        norm3 = try TransformerLayerNorm(table: table, prefix: blocksName(prefix, "norm3"), eps: eps)
        ffProj = try BlocksLinear(table: table, prefix: blocksName(prefix, "ff.net.0.proj"))
        ffOut = try BlocksLinear(table: table, prefix: blocksName(prefix, "ff.net.2"))
    }

    /// - Parameters:
    ///   - x: `[B, T, C]` tokens.
    ///   - context: `[B or 1, S, Cc]` encoder hidden states.
    public func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        var h = blocksAdd(attn1(norm1(x)), x)
        h = blocksAdd(attn2(norm2(h), context: context), h)
        h = blocksAdd(ffOut(Ops.geglu(ffProj(norm3(h)))), h)
        return h
    }
}

/// diffusers `Transformer2DModel` for continuous (image) input:
/// `GroupNorm(eps 1e-6) → proj_in → tokens → blocks → proj_out → image → + input`.
/// With `use_linear_projection` the projections are Linear layers applied to the tokens; without,
/// 1×1 convolutions applied to the image. Which one is read from the weight's rank.
public struct Transformer2DModel: Sendable {
    enum Projection: Sendable {
        case linear(BlocksLinear)
        case conv(BlocksConv2d)
    }

    public let norm: BlocksGroupNorm
    let projIn: Projection
    public let blocks: [BasicTransformerBlock]
    let projOut: Projection

    /// - Parameters:
    ///   - prefix: e.g. `down_blocks.0.attentions.1`.
    ///   - heads: attention heads of every block.
    ///   - layers: number of `transformer_blocks`.
    ///   - groups: GroupNorm groups (the UNet's `norm_num_groups`).
    public init(table: TensorTable, prefix: String, heads: Int, layers: Int, groups: Int) throws {
        norm = try BlocksGroupNorm(table: table, prefix: blocksName(prefix, "norm"), groups: groups, eps: 1e-6)
        func projection(_ name: String) throws -> Projection {
            let p = blocksName(prefix, name)
            let name = blocksName(p, "weight")
            guard let view = table[name] else { throw EngineError.missingTensor(name: name) }
            if (view.int8Rows?.logicalShape ?? view.shape).count == 4 {
                return .conv(try BlocksConv2d(table: table, prefix: p, padding: (0, 0)))
            }
            return .linear(try BlocksLinear(table: table, prefix: p))
        }
        projIn = try projection("proj_in")
        projOut = try projection("proj_out")
        blocks = try (0..<layers).map {
            try BasicTransformerBlock(
                table: table, prefix: blocksName(prefix, "transformer_blocks.\($0)"), heads: heads)
        }
    }

    /// - Parameters:
    ///   - x: `[B, C, H, W]`.
    ///   - context: `[B or 1, S, Cc]`.
    /// - Returns: `[B, C, H, W]`.
    public func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        let (_, _, h, w) = x.nchw("Transformer2DModel")
        var hidden = norm(x)
        var tokens: Tensor
        switch projIn {
        case let .linear(linear):
            tokens = linear(Ops.tokens(fromImage: hidden))
        case let .conv(conv):
            hidden = conv(hidden)
            tokens = Ops.tokens(fromImage: hidden)
        }
        for block in blocks { tokens = block(tokens, context: context) }
        let out: Tensor
        switch projOut {
        case let .linear(linear):
            out = Ops.image(fromTokens: linear(tokens), height: h, width: w)
        case let .conv(conv):
            out = conv(Ops.image(fromTokens: tokens, height: h, width: w))
        }
        return blocksAdd(out, x)
    }
}
