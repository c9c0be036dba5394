import DLoRALFormats

/// One down or up block: resnets, each followed by a transformer when the block has
/// cross-attention, then an optional resampler.
struct UNetBlock: Sendable {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2DModel]
    let downsample: Downsample2D?
    let upsample: Upsample2D?
}

/// diffusers `UNet2DConditionModel` with SD 1.x/2.x structure (CrossAttnDownBlock2D /
/// DownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D / CrossAttnUpBlock2D), positional time
/// embedding, no class or added embeddings.
public final class UNet2DCondition: @unchecked Sendable {
    public let config: UNetConfig
    let convIn: BlocksConv2d
    let timeLinear1: BlocksLinear
    let timeLinear2: BlocksLinear
    let downBlocks: [UNetBlock]
    let midResnets: [ResnetBlock2D]
    let midAttentions: [Transformer2DModel]
    let upBlocks: [UNetBlock]
    let convNormOut: BlocksGroupNorm
    let convOut: BlocksConv2d

    /// Loads weights by their diffusers names (no `unet.` prefix): `conv_in.weight`,
    /// `down_blocks.0.resnets.0.conv1.weight`, ….
    /// - Throws: `EngineError.missingTensor` naming the first absent weight.
    public init(table: TensorTable, config: UNetConfig) throws {
        self.config = config
        let groups = config.normNumGroups
        let eps = config.normEps
        convIn = try BlocksConv2d(table: table, prefix: "conv_in")
        guard convIn.inChannels == config.inChannels else {
            throw EngineError.shapeMismatch(
                operation: "conv_in", expected: "[O, \(config.inChannels), kh, kw] (in_channels)",
                actual: convIn.kernel.shape)
        }
        timeLinear1 = try BlocksLinear(table: table, prefix: "time_embedding.linear_1")
        timeLinear2 = try BlocksLinear(table: table, prefix: "time_embedding.linear_2")

        func resnet(_ prefix: String) throws -> ResnetBlock2D {
            try ResnetBlock2D(table: table, prefix: prefix, groups: groups, eps: eps)
        }
        func transformer(_ prefix: String, heads: Int, layers: Int) throws -> Transformer2DModel {
            try Transformer2DModel(table: table, prefix: prefix, heads: heads, layers: layers, groups: groups)
        }

        let count = config.downBlockTypes.count
        var down: [UNetBlock] = []
        for i in 0..<count {
            let prefix = "down_blocks.\(i)"
            let cross = config.downBlockTypes[i] == UNetConfig.crossAttnDown
            let layers = config.layersPerBlock[i]
            let resnets = try (0..<layers).map { try resnet("\(prefix).resnets.\($0)") }
            let attentions =
                cross
                ? try (0..<layers).map {
                    try transformer(
                        "\(prefix).attentions.\($0)", heads: config.attentionHeads[i],
                        layers: config.transformerLayersPerBlock[i])
                } : []
            let downsample =
                i == count - 1
                ? nil : try Downsample2D(table: table, prefix: "\(prefix).downsamplers.0", padding: .symmetric(1))
            down.append(UNetBlock(resnets: resnets, attentions: attentions, downsample: downsample, upsample: nil))
        }
        downBlocks = down

        if config.midBlockType != nil {
            midResnets = try [resnet("mid_block.resnets.0"), resnet("mid_block.resnets.1")]
            midAttentions = [
                try transformer(
                    "mid_block.attentions.0", heads: config.attentionHeads[count - 1],
                    layers: config.transformerLayersPerBlock[count - 1])
            ]
        } else {
            midResnets = []
            midAttentions = []
        }

        let reversedHeads = Array(config.attentionHeads.reversed())
        let reversedLayers = Array(config.layersPerBlock.reversed())
        let reversedTransformerLayers = Array(config.transformerLayersPerBlock.reversed())
        var up: [UNetBlock] = []
        for i in 0..<count {
            let prefix = "up_blocks.\(i)"
            let cross = config.upBlockTypes[i] == UNetConfig.crossAttnUp
            let layers = reversedLayers[i] + 1
            let resnets = try (0..<layers).map { try resnet("\(prefix).resnets.\($0)") }
            let attentions =
                cross
                ? try (0..<layers).map {
                    try transformer(
                        "\(prefix).attentions.\($0)", heads: reversedHeads[i],
                        layers: reversedTransformerLayers[i])
                } : []
            let upsample = i == count - 1 ? nil : try Upsample2D(table: table, prefix: "\(prefix).upsamplers.0")
            up.append(UNetBlock(resnets: resnets, attentions: attentions, downsample: nil, upsample: upsample))
        }
        upBlocks = up

        convNormOut = try BlocksGroupNorm(table: table, prefix: "conv_norm_out", groups: groups, eps: eps)
        convOut = try BlocksConv2d(table: table, prefix: "conv_out")
    }

    /// Sinusoidal projection of `timestep` followed by `time_embedding` (linear_1 → SiLU →
    /// linear_2): `[1, time_embed_dim]`, shared by the batch.
    func timeEmbedding(_ timestep: Float) -> Tensor {
        let features = Ops.timestepEmbedding(
            Tensor(shape: [1], data: [timestep]), dim: convIn.outChannels,
            flipSinToCos: config.flipSinToCos, downscaleFreqShift: config.freqShift)
        return timeLinear2(Ops.silu(timeLinear1(features)))
    }

    /// - Parameters:
    ///   - sample: `[B, in_channels, h, w]` (any h, w).
    ///   - timestep: the diffusion timestep (DLoRAL: 1), the same for the whole batch.
    ///   - encoderHiddenStates: `[B, S, cross_attention_dim]`, or `[1, S, cross_attention_dim]`
    ///     shared by the batch.
    /// - Returns: `[B, out_channels, h, w]`.
    /// - Throws: `EngineError.shapeMismatch` for inputs that do not fit the model.
    public func callAsFunction(_ sample: Tensor, timestep: Float, encoderHiddenStates: Tensor) throws -> Tensor {
        guard sample.rank == 4, sample.shape[1] == config.inChannels else {
            throw EngineError.shapeMismatch(
                operation: "UNet sample", expected: "[B, \(config.inChannels), h, w]", actual: sample.shape)
        }
        let batch = sample.shape[0]
        let context = encoderHiddenStates
        // At least one token: cross-attention over no keys has no softmax to take (SD's text
        // encoder gives 77).
        guard context.rank == 3, context.shape[1] >= 1, context.shape[2] == config.crossAttentionDim,
              context.shape[0] == batch || context.shape[0] == 1
        else {
            throw EngineError.shapeMismatch(
                operation: "UNet encoder hidden states",
                expected: "[\(batch) or 1, S ≥ 1 tokens (77 for SD's text encoder), \(config.crossAttentionDim)]", actual: context.shape)
        }
        let temb = timeEmbedding(timestep)

        // diffusers forwards explicit upsample sizes when h or w is not a multiple of 2^upsamplers.
        let upsamplers = upBlocks.filter { $0.upsample != nil }.count
        let factor = 1 << upsamplers
        let forwardSize = sample.shape[2] % factor != 0 || sample.shape[3] % factor != 0

        var h = convIn(sample)
        var skips: [Tensor] = [h]
        for block in downBlocks {
            for j in block.resnets.indices {
                h = block.resnets[j](h, timeEmbedding: temb)
                if !block.attentions.isEmpty { h = block.attentions[j](h, context: context) }
                skips.append(h)
            }
            if let downsample = block.downsample {
                h = downsample(h)
                skips.append(h)
            }
        }

        if !midResnets.isEmpty {
            h = midResnets[0](h, timeEmbedding: temb)
            for (attention, resnet) in zip(midAttentions, midResnets.dropFirst()) {
                h = attention(h, context: context)
                h = resnet(h, timeEmbedding: temb)
            }
        }

        for block in upBlocks {
            let n = block.resnets.count
            guard skips.count >= n else {
                preconditionFailure("UNet: \(skips.count) skip connections left for \(n) resnets")
            }
            var blockSkips = Array(skips.suffix(n))
            skips.removeLast(n)
            for j in 0..<n {
                let skip = blockSkips.removeLast()
                h = block.resnets[j](Self.concatChannels(h, skip), timeEmbedding: temb)
                if !block.attentions.isEmpty { h = block.attentions[j](h, context: context) }
            }
            if let upsample = block.upsample {
                var size: (h: Int, w: Int)? = nil
                if forwardSize, let next = skips.last { size = (next.shape[2], next.shape[3]) }
                h = upsample(h, size: size)
            }
        }

        return convOut(normalizing: h, with: convNormOut, silu: true)
    }

    /// `torch.cat([a, b], dim=1)` for NCHW tensors of equal batch and spatial size.
    static func concatChannels(_ a: Tensor, _ b: Tensor) -> Tensor {
        let (n, ca, h, w) = a.nchw("concat")
        let (nb, cb, hb, wb) = b.nchw("concat")
        precondition(n == nb && h == hb && w == wb, "concat \(a.shape) with \(b.shape)")
        let plane = h * w
        var data = [Float]()
        data.reserveCapacity(n * (ca + cb) * plane)
        for i in 0..<n {
            data.append(contentsOf: a.data[(i * ca * plane)..<((i + 1) * ca * plane)])
            data.append(contentsOf: b.data[(i * cb * plane)..<((i + 1) * cb * plane)])
        }
        return Tensor(shape: [n, ca + cb, h, w], data: data)
    }
}
