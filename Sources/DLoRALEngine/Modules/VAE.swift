import DLoRALFormats

/// The VAE mid-block attention (diffusers `Attention` with `group_norm`, one head of dim C,
/// residual connection, rescale_output_factor 1): `x + to_out(attn(to_q(n), to_k(n), to_v(n)))`
/// with `n = GroupNorm(x)` seen as `[N, H·W, C]` tokens.
public struct VAEAttentionBlock: Sendable {
    public let groupNorm: BlocksGroupNorm
    public let toQ: BlocksLinear
    public let toK: BlocksLinear
    public let toV: BlocksLinear
    public let toOut: BlocksLinear
    public let heads: Int

    public init(table: TensorTable, prefix: String, groups: Int, eps: Float, heads: Int = 1) throws {
        groupNorm = try BlocksGroupNorm(table: table, prefix: blocksName(prefix, "group_norm"), groups: groups, eps: eps)
        toQ = try BlocksLinear(table: table, prefix: blocksName(prefix, "to_q"))
        toK = try BlocksLinear(table: table, prefix: blocksName(prefix, "to_k"))
        toV = try BlocksLinear(table: table, prefix: blocksName(prefix, "to_v"))
        toOut = try BlocksLinear(table: table, prefix: blocksName(prefix, "to_out.0"))
        self.heads = heads
    }

    /// - Parameter statistics: GroupNorm statistics to use instead of `x`'s own (tiled VAE).
    public func callAsFunction(_ x: Tensor, statistics: GroupNormStatistics? = nil) -> Tensor {
        let (_, _, h, w) = x.nchw("VAEAttentionBlock")
        let tokens = Ops.tokens(fromImage: groupNorm(x, statistics: statistics))  // [N, HW, C]
        let attended = Ops.attention(q: toQ(tokens), k: toK(tokens), v: toV(tokens), heads: heads)
        let projected = toOut(attended)  // [N, HW, C]
        let back = Ops.image(fromTokens: projected, height: h, width: w)
        return blocksAdd(back, x)
    }
}


/// diffusers `UNetMidBlock2D` as the VAE uses it: resnet, (attention, resnet) × 1.
public struct VAEMidBlock: Sendable {
    public let resnets: [ResnetBlock2D]
    public let attentions: [VAEAttentionBlock]

    public init(table: TensorTable, prefix: String, groups: Int, eps: Float, addAttention: Bool) throws {
        resnets = [
            try ResnetBlock2D(table: table, prefix: blocksName(prefix, "resnets.0"), groups: groups, eps: eps),
            try ResnetBlock2D(table: table, prefix: blocksName(prefix, "resnets.1"), groups: groups, eps: eps),
        ]
        attentions =
            addAttention
            ? [try VAEAttentionBlock(table: table, prefix: blocksName(prefix, "attentions.0"), groups: groups, eps: eps)]
            : []
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        VAEStep.run(VAEStep.midBlock(self), on: x)
    }
}

/// The VAE encoder followed by `quant_conv`; returns the posterior mean × scaling factor.
public struct VAEEncoder: Sendable {
    public let config: VAEConfig
    let convIn: BlocksConv2d
    let downBlocks: [(resnets: [ResnetBlock2D], downsampler: Downsample2D?)]
    let midBlock: VAEMidBlock
    let normOut: BlocksGroupNorm
    let convOut: BlocksConv2d
    let quantConv: BlocksConv2d?

    /// - Parameter table: AutoencoderKL weights named without a `vae.` prefix
    ///   (`encoder.conv_in.weight`, `quant_conv.weight`, …).
    public init(table: TensorTable, config: VAEConfig) throws {
        self.config = config
        let (g, eps) = (config.normNumGroups, config.eps)
        convIn = try BlocksConv2d(table: table, prefix: "encoder.conv_in", padding: (1, 1))
        var blocks: [(resnets: [ResnetBlock2D], downsampler: Downsample2D?)] = []
        for i in config.blockOutChannels.indices {
            let prefix = "encoder.down_blocks.\(i)"
            let resnets = try (0..<config.layersPerBlock).map {
                try ResnetBlock2D(table: table, prefix: "\(prefix).resnets.\($0)", groups: g, eps: eps)
            }
            let isLast = i == config.blockOutChannels.count - 1
            let down = isLast ? nil : try Downsample2D(table: table, prefix: "\(prefix).downsamplers.0", padding: .asymmetric)
            blocks.append((resnets, down))
        }
        downBlocks = blocks
        midBlock = try VAEMidBlock(
            table: table, prefix: "encoder.mid_block", groups: g, eps: eps, addAttention: config.midBlockAddAttention)
        normOut = try BlocksGroupNorm(table: table, prefix: "encoder.conv_norm_out", groups: g, eps: eps)
        convOut = try BlocksConv2d(table: table, prefix: "encoder.conv_out", padding: (1, 1))
        quantConv = config.useQuantConv ? try BlocksConv2d(table: table, prefix: "quant_conv", padding: (0, 0)) : nil
        // The moments (mean and log-variance) must be 2 × latent_channels wide.
        let momentsChannels = (quantConv ?? convOut).outChannels
        guard momentsChannels == 2 * config.latentChannels else {
            throw EngineError.shapeMismatch(
                operation: "VAE encoder with latent_channels \(config.latentChannels)",
                expected: "\(2 * config.latentChannels) moment channels", actual: [momentsChannels])
        }
    }

    /// diffusers `Encoder.forward` (conv_in … conv_out, before quant_conv) as VAEHook's task
    /// queue: per down block its resnets then its downsampler, the mid block, norm_out → SiLU →
    /// conv_out. The untiled forward and the tiled one (TiledVAE.swift) both run this list.
    var steps: [VAEStep] {
        var steps: [VAEStep] = [.conv(convIn)]
        for block in downBlocks {
            for resnet in block.resnets { steps += VAEStep.resnet(resnet) }
            if let down = block.downsampler { steps.append(.downsample(down)) }
        }
        steps += VAEStep.midBlock(midBlock)
        steps.append(.normalizedConv(normOut, convOut))
        return steps
    }

    /// The posterior moments `[N, 2·latent, H/8, W/8]` (mean then log-variance), after quant_conv.
    public func moments(_ frames: Tensor) -> Tensor {
        quantized(VAEStep.run(steps, on: frames))
    }

    /// `quant_conv` of the encoder network's output (identity without one).
    func quantized(_ h: Tensor) -> Tensor {
        quantConv.map { $0(h) } ?? h
    }

    /// The posterior mean (unscaled), `[N, latent, h, w]`.
    public func mean(_ frames: Tensor) -> Tensor {
        mean(ofMoments: moments(frames))
    }

    /// Frames `[N, 3, H, W]` in [-1, 1] → latents `[N, latent, H/8, W/8]` = mean × scaling factor.
    public func callAsFunction(_ frames: Tensor) -> Tensor {
        scaled(mean(frames))
    }

    /// The first `latent` channels of the moments.
    func mean(ofMoments m: Tensor) -> Tensor {
        let (n, c2, h, w) = m.nchw("VAEEncoder.mean")
        let c = config.latentChannels
        precondition(c2 == 2 * c, "encoder produced \(c2) channels, expected \(2 * c)")
        let plane = c * h * w
        var out = Tensor(zeros: [n, c, h, w])
        for b in 0..<n {
            for i in 0..<plane { out.data[b * plane + i] = m.data[b * 2 * plane + i] }
        }
        return out
    }

    /// The mean × scaling factor.
    func scaled(_ mean: Tensor) -> Tensor {
        var m = mean
        let s = config.scalingFactor
        for i in 0..<m.count { m.data[i] *= s }
        return m
    }
}

/// `post_quant_conv` followed by the VAE decoder.
public struct VAEDecoder: Sendable {
    public let config: VAEConfig
    let postQuantConv: BlocksConv2d?
    let convIn: BlocksConv2d
    let midBlock: VAEMidBlock
    let upBlocks: [(resnets: [ResnetBlock2D], upsampler: Upsample2D?)]
    let normOut: BlocksGroupNorm
    let convOut: BlocksConv2d

    /// - Parameter table: AutoencoderKL weights named without a `vae.` prefix.
    public init(table: TensorTable, config: VAEConfig) throws {
        self.config = config
        let (g, eps) = (config.normNumGroups, config.eps)
        postQuantConv =
            config.usePostQuantConv ? try BlocksConv2d(table: table, prefix: "post_quant_conv", padding: (0, 0)) : nil
        convIn = try BlocksConv2d(table: table, prefix: "decoder.conv_in", padding: (1, 1))
        midBlock = try VAEMidBlock(
            table: table, prefix: "decoder.mid_block", groups: g, eps: eps, addAttention: config.midBlockAddAttention)
        var blocks: [(resnets: [ResnetBlock2D], upsampler: Upsample2D?)] = []
        for i in config.blockOutChannels.indices {
            let prefix = "decoder.up_blocks.\(i)"
            let resnets = try (0...config.layersPerBlock).map {
                try ResnetBlock2D(table: table, prefix: "\(prefix).resnets.\($0)", groups: g, eps: eps)
            }
            let isLast = i == config.blockOutChannels.count - 1
            let up = isLast ? nil : try Upsample2D(table: table, prefix: "\(prefix).upsamplers.0")
            blocks.append((resnets, up))
        }
        upBlocks = blocks
        normOut = try BlocksGroupNorm(table: table, prefix: "decoder.conv_norm_out", groups: g, eps: eps)
        convOut = try BlocksConv2d(table: table, prefix: "decoder.conv_out", padding: (1, 1))
    }

    /// diffusers `Decoder.forward` (after post_quant_conv) as VAEHook's task queue: conv_in, the
    /// mid block, per up block its resnets then its upsampler, norm_out → SiLU → conv_out. The
    /// untiled forward and the tiled one (TiledVAE.swift) both run this list.
    var steps: [VAEStep] {
        var steps: [VAEStep] = [.conv(convIn)]
        steps += VAEStep.midBlock(midBlock)
        for block in upBlocks {
            for resnet in block.resnets { steps += VAEStep.resnet(resnet) }
            if let up = block.upsampler { steps.append(.upsample(up)) }
        }
        steps.append(.normalizedConv(normOut, convOut))
        return steps
    }

    /// Unscaled latents `z` `[N, latent, h, w]` → images `[N, 3, 8h, 8w]` (not clamped).
    public func decodeUnscaled(_ z: Tensor) -> Tensor {
        VAEStep.run(steps, on: postQuantized(z))
    }

    /// `post_quant_conv` of unscaled latents (identity without one).
    func postQuantized(_ z: Tensor) -> Tensor {
        postQuantConv.map { $0(z) } ?? z
    }

    /// Scaled latents (as the UNet sees them) → images: decodes `latents / scaling_factor`.
    /// The result is not clamped; see `VAEDecoder.clampFrames`.
    public func callAsFunction(_ latents: Tensor) -> Tensor {
        decodeUnscaled(unscaled(latents))
    }

    /// `latents / scaling_factor`.
    func unscaled(_ latents: Tensor) -> Tensor {
        var z = latents
        let s = config.scalingFactor
        for i in 0..<z.count { z.data[i] /= s }
        return z
    }

    /// `x.clamp(-1, 1)` (NaN stays NaN, as in PyTorch).
    public static func clampFrames(_ x: Tensor) -> Tensor {
        var out = x
        for i in 0..<out.count {
            let v = out.data[i]
            if v < -1 { out.data[i] = -1 } else if v > 1 { out.data[i] = 1 }
        }
        return out
    }
}
