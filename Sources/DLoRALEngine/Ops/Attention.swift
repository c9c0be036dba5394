extension Ops {
    /// Queries processed per block, bounding the score matrix to `queryBlock × S` floats per
    /// head (4096 latent tokens would otherwise need 64 MB per head).
    static let attentionQueryBlock = 1024

    /// Multi-head scaled dot-product attention as in diffusers' `Attention` (and
    /// `F.scaled_dot_product_attention`): channels split into `heads` contiguous groups,
    /// `softmax(Q·Kᵀ / √d) · V` per head, heads concatenated back.
    ///
    /// The input and output projections are not part of this op; apply `linear` around it.
    /// - Parameters:
    ///   - q: `[B, T, C]` queries.
    ///   - k: `[B, S, C]` keys.
    ///   - v: `[B, S, Cv]` values; `Cv` must also be divisible by `heads`.
    ///   - heads: number of heads; divides `C`, and `d = C / heads`.
    /// - Returns: `[B, T, Cv]`.
    public static func attention(q: Tensor, k: Tensor, v: Tensor, heads: Int) -> Tensor {
        precondition(q.rank == 3 && k.rank == 3 && v.rank == 3, "attention expects [B, T, C] inputs: q \(q.shape), k \(k.shape), v \(v.shape)")
        let (b, t, c) = (q.shape[0], q.shape[1], q.shape[2])
        let s = k.shape[1]
        let cv = v.shape[2]
        precondition(k.shape[0] == b && v.shape[0] == b && v.shape[1] == s && k.shape[2] == c,
                     "attention shapes disagree: q \(q.shape), k \(k.shape), v \(v.shape)")
        precondition(heads > 0 && c % heads == 0 && cv % heads == 0,
                     "attention: \(heads) heads do not divide C = \(c) / Cv = \(cv)")
        let d = c / heads
        let dv = cv / heads
        var out = Tensor(zeros: [b, t, cv])
        guard b > 0, t > 0, cv > 0 else { return out }
        guard s > 0 else { return out }
        // PyTorch scales by 1/sqrt(d) computed in double and applied as a float.
        let scale = Float(1 / Double(d).squareRoot())
        let block = min(t, attentionQueryBlock)
        var scores = [Float](repeating: 0, count: block * s)

        q.data.withUnsafeBufferPointer { qp in
            k.data.withUnsafeBufferPointer { kp in
                v.data.withUnsafeBufferPointer { vp in
                    out.data.withUnsafeMutableBufferPointer { op in
                        scores.withUnsafeMutableBufferPointer { sp in
                            for batch in 0..<b {
                                for head in 0..<heads {
                                    let keys = kp.baseAddress! + batch * s * c + head * d
                                    let values = vp.baseAddress! + batch * s * cv + head * dv
                                    var start = 0
                                    while start < t {
                                        let rows = min(block, t - start)
                                        let queries = qp.baseAddress! + (batch * t + start) * c + head * d
                                        let result = op.baseAddress! + (batch * t + start) * cv + head * dv
                                        if d > 0 {
                                            sgemm(
                                                m: rows, n: s, k: d, alpha: scale, a: queries, lda: c,
                                                b: keys, ldb: c, transposeB: true,
                                                c: sp.baseAddress!, ldc: s)
                                        } else {
                                            sp.baseAddress!.update(repeating: 0, count: rows * s)
                                        }
                                        let scoreBase = sp.baseAddress!
                                        parallelRanges(rows, work: rows * s * 16) { r0, r1 in
                                            for row in r0..<r1 {
                                                softmaxInPlace(scoreBase + row * s, count: s, stride: 1)
                                            }
                                        }
                                        if dv > 0 {
                                            sgemm(
                                                m: rows, n: dv, k: s, a: sp.baseAddress!, lda: s,
                                                b: values, ldb: cv, c: result, ldc: cv)
                                        }
                                        start += rows
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}
