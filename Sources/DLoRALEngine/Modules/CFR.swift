import DLoRALFormats

// DLoRAL's Cross-Frame Retrieval (CFR) at inference (docs/model.md): SpyNet optical flow on
// the ×1/8 bicubic LQ frames, the previous latent warped by it, and the cross-frame "absolute"
// attention fusing the aligned previous latent into the current one.
// Reference: Tools/fixtures/dloral_cfr.py (SPyNet, flow_warp, CrossFrameAbsoluteAttn,
// CFRModel.downsample_lq / flows_forward / forward_pair).

/// SpyNet (BasicVSR / mmedit flavour) as DLoRAL uses it: 6 pyramid levels, each a
/// `SPyNetBasicModule` of five 7×7 convolutions (8→32→64→32→16→2, ReLU after all but the last).
public struct SpyNet: Sendable {
    /// One 7×7 convolution with its bias.
    struct Conv: Sendable {
        var weight: Tensor
        var bias: Tensor
    }

    /// `basic_module[level].basic_module[layer].conv`, level 0 the coarsest.
    let levels: [[Conv]]
    /// ImageNet mean / std, `[3]` each (the `spynet.mean` / `spynet.std` buffers).
    let mean: [Float]
    let std: [Float]

    /// Number of pyramid levels (and of basic modules).
    public static let levelCount = 6
    /// Convolutions per basic module.
    public static let layersPerLevel = 5

    /// Loads `<prefix>basic_module.{0..5}.basic_module.{0..4}.conv.{weight,bias}`,
    /// `<prefix>mean` and `<prefix>std` from `table`.
    /// - Throws: `EngineError.missingTensor` / `.shapeMismatch` for an absent or misshapen tensor.
    public init(from table: TensorTable, prefix: String = "spynet.") throws {
        let channels = [8, 32, 64, 32, 16, 2]
        var levels: [[Conv]] = []
        for level in 0..<Self.levelCount {
            var layers: [Conv] = []
            for layer in 0..<Self.layersPerLevel {
                let name = "\(prefix)basic_module.\(level).basic_module.\(layer).conv"
                let weight = try Tensor.load("\(name).weight", from: table)
                let bias = try Tensor.load("\(name).bias", from: table)
                let expected = [channels[layer + 1], channels[layer], 7, 7]
                guard weight.shape == expected else {
                    throw EngineError.shapeMismatch(
                        operation: "\(name).weight", expected: "\(expected)", actual: weight.shape)
                }
                guard bias.count == expected[0] else {
                    throw EngineError.shapeMismatch(
                        operation: "\(name).bias", expected: "[\(expected[0])]", actual: bias.shape)
                }
                layers.append(Conv(weight: weight, bias: bias))
            }
            levels.append(layers)
        }
        let mean = try Tensor.load("\(prefix)mean", from: table)
        let std = try Tensor.load("\(prefix)std", from: table)
        guard mean.count == 3 else {
            throw EngineError.shapeMismatch(operation: "\(prefix)mean", expected: "[1, 3, 1, 1]", actual: mean.shape)
        }
        guard std.count == 3 else {
            throw EngineError.shapeMismatch(operation: "\(prefix)std", expected: "[1, 3, 1, 1]", actual: std.shape)
        }
        self.levels = levels
        self.mean = mean.data
        self.std = std.data
    }

    /// `SPyNet.forward(ref, supp)`: the flow from `ref` to `supp` at the input resolution,
    /// `[B, 2, H, W]`, channel 0 the x (width) offset and channel 1 the y offset in pixels, such
    /// that `flowWarp(supp, flow)` lines `supp` up with `ref`.
    /// - Parameters:
    ///   - ref: `[B, 3, H, W]` (DLoRAL: the current frame, in [-1, 1]).
    ///   - supp: `[B, 3, H, W]` (DLoRAL: the previous frame).
    public func flow(ref: Tensor, supp: Tensor) -> Tensor {
        let (n, c, h, w) = ref.nchw("SpyNet.flow")
        precondition(c == 3 && supp.shape == ref.shape, "SpyNet.flow: ref \(ref.shape), supp \(supp.shape)")
        let hUp = h % 32 == 0 ? h : 32 * (h / 32 + 1)
        let wUp = w % 32 == 0 ? w : 32 * (w / 32 + 1)
        let refUp = Ops.interpolateBilinear(ref, size: (hUp, wUp), alignCorners: false)
        let suppUp = Ops.interpolateBilinear(supp, size: (hUp, wUp), alignCorners: false)
        let coarse = computeFlow(ref: refUp, supp: suppUp)
        var flow = Ops.interpolateBilinear(coarse, size: (h, w), alignCorners: false)
        let scaleX = Float(Double(w) / Double(wUp))
        let scaleY = Float(Double(h) / Double(hUp))
        let plane = h * w
        for batch in 0..<n {
            let base = batch * 2 * plane
            for i in 0..<plane {
                flow.data[base + i] *= scaleX
                flow.data[base + plane + i] *= scaleY
            }
        }
        return flow
    }

    /// `SPyNet.compute_flow` on inputs whose sides are multiples of 32: `[B, 2, H, W]`.
    func computeFlow(ref: Tensor, supp: Tensor) -> Tensor {
        let (n, _, h, w) = ref.nchw("SpyNet.computeFlow")
        var refs = [normalize(ref)]
        var supps = [normalize(supp)]
        for _ in 1..<Self.levelCount {
            refs.append(Ops.avgPool2x(refs[refs.count - 1]))
            supps.append(Ops.avgPool2x(supps[supps.count - 1]))
        }
        refs.reverse()
        supps.reverse()
        var flow = Tensor(zeros: [n, 2, h >> 5, w >> 5])
        for level in 0..<Self.levelCount {
            var flowUp: Tensor
            if level == 0 {
                flowUp = flow
            } else {
                let (_, _, fh, fw) = flow.nchw("SpyNet flow")
                flowUp = Ops.interpolateBilinear(flow, size: (fh * 2, fw * 2), alignCorners: true)
                for i in 0..<flowUp.count { flowUp.data[i] *= 2 }
            }
            precondition(Array(flowUp.shape[2...]) == Array(refs[level].shape[2...]),
                         "SpyNet level \(level): flow \(flowUp.shape) vs image \(refs[level].shape)")
            let warped = Ops.flowWarp(supps[level], flow: channelsLast(flowUp), paddingMode: .border)
            var x = concatChannels([refs[level], warped, flowUp])
            let layers = levels[level]
            for (index, conv) in layers.enumerated() {
                x = Ops.conv2d(x, weight: conv.weight, bias: conv.bias, padding: (3, 3))
                if index < layers.count - 1 {
                    for i in 0..<x.count where x.data[i] < 0 { x.data[i] = 0 }  // ReLU (NaN kept)
                }
            }
            for i in 0..<x.count { x.data[i] = flowUp.data[i] + x.data[i] }
            flow = x
        }
        return flow
    }

    /// `(x − mean) / std` per channel.
    func normalize(_ x: Tensor) -> Tensor {
        let (n, c, h, w) = x.nchw("SpyNet.normalize")
        var out = x
        let plane = h * w
        for batch in 0..<n {
            for channel in 0..<c {
                let base = (batch * c + channel) * plane
                let (m, s) = (mean[channel], std[channel])
                for i in base..<(base + plane) { out.data[i] = (x.data[i] - m) / s }
            }
        }
        return out
    }
}

/// DLoRAL's CFR at inference: SpyNet + flow warp + cross-frame absolute attention.
public struct CrossFrameRetrieval: Sendable {
    public let spynet: SpyNet
    public let attention: Ops.CrossFrameAttentionWeights
    /// `attention_heads` of the config.
    public let heads: Int
    /// `attention_temperature` of the config (a constant of DLoRAL's module, not in the checkpoint).
    public let temperature: Float

    /// Loads `spynet.*` and `cross_attn_module.*` (DLoRAL's `state_dict_bpp` names) from `table`,
    /// with the heads and temperature of `config`.
    /// - Throws: `EngineError.missingTensor` / `.shapeMismatch`.
    public init(from table: TensorTable, config: CFRConfig = .dloral) throws {
        let heads = config.attentionHeads
        spynet = try SpyNet(from: table, prefix: "spynet.")
        func load(_ name: String) throws -> Tensor {
            try Tensor.load("cross_attn_module.\(name)", from: table)
        }
        let query = try load("query_conv.weight")
        let threshold = try load("threshold_fc.weight")
        guard heads > 0, query.rank == 4, query.shape[0] % heads == 0,
            threshold.count == query.shape[0] / heads
        else {
            throw EngineError.shapeMismatch(
                operation: "cross_attn_module.query_conv.weight",
                expected: "[\(heads)·d, C, 1, 1] with threshold_fc.weight [1, d]", actual: query.shape)
        }
        attention = Ops.CrossFrameAttentionWeights(
            queryWeight: query, queryBias: try load("query_conv.bias"),
            keyWeight: try load("key_conv.weight"), keyBias: try load("key_conv.bias"),
            valueWeight: try load("value_conv.weight"), valueBias: try load("value_conv.bias"),
            thresholdWeight: threshold, thresholdBias: try load("threshold_fc.bias"),
            outputWeight: try load("proj_out.weight"), outputBias: try load("proj_out.bias"))
        self.heads = heads
        temperature = Float(config.attentionTemperature)
    }

    /// DLoRAL's `lq_downsample`: SpyNet sees the frames at 1/8 of their size.
    public static let lqDownsample = CFRConfig.lqDownsample

    /// `CFRModel.downsample_lq`: `F.interpolate(frames, scale_factor=0.125, mode='bicubic')`,
    /// `[T, 3, H, W] → [T, 3, ⌊H/8⌋, ⌊W/8⌋]`.
    public static func downsampleLQ(_ frames: Tensor) -> Tensor {
        let (_, _, h, w) = frames.nchw("downsampleLQ")
        let scale = 1 / Double(lqDownsample)
        let size = (Int((Double(h) * scale).rounded(.down)), Int((Double(w) * scale).rounded(.down)))
        return Ops.interpolateBicubic(frames, size: size, alignCorners: false, scaleFactor: (scale, scale))
    }

    /// `CFRModel.flows_forward`: flows current → previous for t = 1 … T−1, `[T−1, 2, h, w]`,
    /// `SpyNet(ref = lq[t], supp = lq[t−1])`.
    /// - Parameter lq: `[T, 3, h, w]`, the downsampled frames (T ≥ 2).
    public func flows(lq: Tensor) -> Tensor {
        let t = lq.nchw("CrossFrameRetrieval.flows").n
        precondition(t >= 2, "CrossFrameRetrieval.flows needs at least two frames, got \(lq.shape)")
        return spynet.flow(ref: batchSlice(lq, 1..<t), supp: batchSlice(lq, 0..<(t - 1)))
    }

    /// The previous latent warped onto the current frame: `flow_warp(prev, flow)` with zeros
    /// padding. `previous` `[B, C, h, w]`, `flow` `[B, 2, h, w]`.
    public func align(previous: Tensor, flow: Tensor) -> Tensor {
        Ops.flowWarp(previous, flow: channelsLast(flow), paddingMode: .zeros)
    }

    /// The cross-frame attention: `current + proj_out(attention(current, alignedPrevious))`.
    public func fuse(current: Tensor, alignedPrevious: Tensor) -> Tensor {
        Ops.crossFrameAttention(
            current: current, previous: alignedPrevious, weights: attention, heads: heads,
            temperature: temperature)
    }

    /// `CFRModel.forward_pair`: `(aligned previous latent, fused current latent)`, each
    /// `[B, C, h, w]`.
    public func pair(previousLatent: Tensor, currentLatent: Tensor, flow: Tensor) -> (aligned: Tensor, fused: Tensor) {
        let aligned = align(previous: previousLatent, flow: flow)
        return (aligned, fuse(current: currentLatent, alignedPrevious: aligned))
    }

    /// One DLoRAL step's CFR for the frame pair (previous, current): frames `[1, 3, H, W]` in
    /// [-1, 1] at output resolution, latents `[1, 4, H/8, W/8]`.
    public func step(
        previousFrame: Tensor, currentFrame: Tensor, previousLatent: Tensor, currentLatent: Tensor
    ) -> (flow: Tensor, aligned: Tensor, fused: Tensor) {
        let flow = spynet.flow(ref: Self.downsampleLQ(currentFrame), supp: Self.downsampleLQ(previousFrame))
        let (aligned, fused) = pair(previousLatent: previousLatent, currentLatent: currentLatent, flow: flow)
        return (flow, aligned, fused)
    }

    /// The whole video's CFR as `run_reference` does it: `frames` `[T, 3, H, W]`, `latents`
    /// `[T, 4, H/8, W/8]`; returns the LQ frames `[T, 3, h, w]`, flows `[T−1, 2, h, w]`, and the
    /// aligned previous and fused current latents of pairs (t−1, t), `[T−1, 4, h, w]` each.
    public func run(frames: Tensor, latents: Tensor)
        -> (lq: Tensor, flows: Tensor, aligned: Tensor, fused: Tensor)
    {
        let t = frames.nchw("CrossFrameRetrieval.run").n
        precondition(latents.rank == 4 && latents.shape[0] == t, "latents \(latents.shape) for frames \(frames.shape)")
        let lq = Self.downsampleLQ(frames)
        let flows = flows(lq: lq)
        var aligned: [Tensor] = []
        var fused: [Tensor] = []
        for i in 1..<t {
            let result = pair(
                previousLatent: batchSlice(latents, (i - 1)..<i), currentLatent: batchSlice(latents, i..<(i + 1)),
                flow: batchSlice(flows, (i - 1)..<i))
            aligned.append(result.aligned)
            fused.append(result.fused)
        }
        return (lq, flows, concatBatch(aligned), concatBatch(fused))
    }
}

// MARK: - Layout helpers (file-private)

/// `[N, C, H, W] → [N, H, W, C]` (`permute(0, 2, 3, 1)`).
private func channelsLast(_ x: Tensor) -> Tensor {
    let (n, c, h, w) = x.nchw("channelsLast")
    var out = [Float](repeating: 0, count: x.count)
    let plane = h * w
    for batch in 0..<n {
        for channel in 0..<c {
            let src = (batch * c + channel) * plane
            for p in 0..<plane { out[(batch * plane + p) * c + channel] = x.data[src + p] }
        }
    }
    return Tensor(shape: [n, h, w, c], data: out)
}

/// `torch.cat(parts, dim=1)` for NCHW tensors of equal N, H, W.
private func concatChannels(_ parts: [Tensor]) -> Tensor {
    let (n, _, h, w) = parts[0].nchw("concatChannels")
    let c = parts.reduce(0) { $0 + $1.shape[1] }
    var out = [Float]()
    out.reserveCapacity(n * c * h * w)
    for batch in 0..<n {
        for part in parts {
            precondition(part.rank == 4 && part.shape[0] == n && part.shape[2] == h && part.shape[3] == w,
                         "concatChannels: \(part.shape) vs [\(n), _, \(h), \(w)]")
            let size = part.shape[1] * h * w
            out.append(contentsOf: part.data[(batch * size)..<((batch + 1) * size)])
        }
    }
    return Tensor(shape: [n, c, h, w], data: out)
}

/// `x[range]` along the first axis.
private func batchSlice(_ x: Tensor, _ range: Range<Int>) -> Tensor {
    let size = x.shape.dropFirst().reduce(1, *)
    var shape = x.shape
    shape[0] = range.count
    return Tensor(shape: shape, data: Array(x.data[(range.lowerBound * size)..<(range.upperBound * size)]))
}

/// `torch.cat(parts, dim=0)`.
private func concatBatch(_ parts: [Tensor]) -> Tensor {
    var shape = parts[0].shape
    shape[0] = parts.reduce(0) { $0 + $1.shape[0] }
    return Tensor(shape: shape, data: parts.flatMap(\.data))
}
