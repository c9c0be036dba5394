extension Ops {
    /// Weights of DLoRAL's cross-frame "absolute" attention (CFR), by their checkpoint names.
    public struct CrossFrameAttentionWeights: Sendable {
        /// `query_conv`: 1×1 conv `[heads·d, C, 1, 1]` and bias `[heads·d]`, on the current latent.
        public var queryWeight: Tensor, queryBias: Tensor?
        /// `key_conv`: 1×1 conv on the aligned previous latent.
        public var keyWeight: Tensor, keyBias: Tensor?
        /// `value_conv`: 1×1 conv on the aligned previous latent.
        public var valueWeight: Tensor, valueBias: Tensor?
        /// `threshold_fc`: Linear `[1, d]` and bias `[1]`, one threshold per query and head.
        public var thresholdWeight: Tensor, thresholdBias: Tensor?
        /// `proj_out`: 1×1 conv `[C, heads·d, 1, 1]` back to latent channels.
        public var outputWeight: Tensor, outputBias: Tensor?

        public init(
            queryWeight: Tensor, queryBias: Tensor?, keyWeight: Tensor, keyBias: Tensor?,
            valueWeight: Tensor, valueBias: Tensor?, thresholdWeight: Tensor, thresholdBias: Tensor?,
            outputWeight: Tensor, outputBias: Tensor?
        ) {
            self.queryWeight = queryWeight
            self.queryBias = queryBias
            self.keyWeight = keyWeight
            self.keyBias = keyBias
            self.valueWeight = valueWeight
            self.valueBias = valueBias
            self.thresholdWeight = thresholdWeight
            self.thresholdBias = thresholdBias
            self.outputWeight = outputWeight
            self.outputBias = outputBias
        }
    }

    /// DLoRAL's `CrossFrameAbsoluteAttn` at latent resolution: per head, `sim = QᵀK / √d`,
    /// per-query threshold `t = threshold_fc(Q row)`, `attn = ReLU((sim − t) / temperature)` (no
    /// softmax; rows may be all zero), `out = attn · V`, then `proj_out`, added to `current`.
    ///
    /// Channels split into heads as `view(B, heads, d, H·W)`: head `h` owns channels
    /// `h·d ..< (h+1)·d`.
    /// - Parameters:
    ///   - current: `[B, C, h, w]`, the current frame's latent (queries, and the residual).
    ///   - previous: `[B, C, h, w]`, the previous frame's latent warped onto the current one.
    ///   - weights: the module's parameters.
    ///   - heads: `CFRConfig.attentionHeads`; `d = heads·d / heads` comes from the query weight.
    ///   - temperature: `CFRConfig.attentionTemperature` (a constant of DLoRAL's module).
    /// - Returns: `[B, C, h, w]`, `current + proj_out(attention)`.
    public static func crossFrameAttention(
        current: Tensor, previous: Tensor, weights: CrossFrameAttentionWeights,
        heads: Int, temperature: Float = 3000
    ) -> Tensor {
        let (n, _, h, w) = current.nchw("crossFrameAttention")
        precondition(previous.shape == current.shape, "crossFrameAttention: previous \(previous.shape) vs current \(current.shape)")
        let q = conv2d(current, weight: weights.queryWeight, bias: weights.queryBias)
        let k = conv2d(previous, weight: weights.keyWeight, bias: weights.keyBias)
        let v = conv2d(previous, weight: weights.valueWeight, bias: weights.valueBias)
        let inner = q.shape[1]
        precondition(heads > 0 && inner % heads == 0 && k.shape[1] == inner && v.shape[1] == inner,
                     "crossFrameAttention: \(heads) heads over \(inner) / \(k.shape[1]) / \(v.shape[1]) channels")
        let d = inner / heads
        precondition(weights.thresholdWeight.count == d, "threshold_fc weight \(weights.thresholdWeight.shape) for head width \(d)")
        let tokens = h * w
        var attended = Tensor(zeros: [n, inner, h, w])
        guard tokens > 0 else { return current }
        let scale = Float(Double(d).squareRoot())
        let thresholdBias = weights.thresholdBias?.data.first ?? 0
        var scores = [Float](repeating: 0, count: tokens * tokens)
        var thresholds = [Float](repeating: 0, count: tokens)
        let kernels = Kernels.current

        q.data.withUnsafeBufferPointer { qp in
            k.data.withUnsafeBufferPointer { kp in
                v.data.withUnsafeBufferPointer { vp in
                    attended.data.withUnsafeMutableBufferPointer { op in
                        scores.withUnsafeMutableBufferPointer { sp in
                            for batch in 0..<n {
                                for head in 0..<heads {
                                    let offset = (batch * inner + head * d) * tokens
                                    let queries = qp.baseAddress! + offset  // [d, tokens]
                                    // sim[i, j] = Σ_d Q[d, i] K[d, j]
                                    sgemm(kernels, m: tokens, n: tokens, k: d, a: queries, lda: tokens, transposeA: true,
                                          b: kp.baseAddress! + offset, ldb: tokens, c: sp.baseAddress!, ldc: tokens)
                                    for i in 0..<tokens {
                                        var t: Float = 0
                                        for j in 0..<d { t += queries[j * tokens + i] * weights.thresholdWeight.data[j] }
                                        thresholds[i] = t + thresholdBias
                                    }
                                    for i in 0..<tokens {
                                        let row = sp.baseAddress! + i * tokens
                                        for j in 0..<tokens {
                                            row[j] = max((row[j] / scale - thresholds[i]) / temperature, 0)
                                        }
                                    }
                                    // out[d, i] = Σ_j V[d, j] attn[i, j]
                                    sgemm(kernels, m: d, n: tokens, k: tokens, a: vp.baseAddress! + offset, lda: tokens,
                                          b: sp.baseAddress!, ldb: tokens, transposeB: true,
                                          c: op.baseAddress! + offset, ldc: tokens)
                                }
                            }
                        }
                    }
                }
            }
        }
        var out = conv2d(attended, weight: weights.outputWeight, bias: weights.outputBias)
        precondition(out.shape == current.shape, "proj_out maps to \(out.shape), expected \(current.shape)")
        for i in 0..<out.count { out.data[i] += current.data[i] }
        return out
    }
}
