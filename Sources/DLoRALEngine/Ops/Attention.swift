import CKernels
import DLoRALFormats

extension Ops {
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
    ///   - int8Logits: compute `Q·Kᵀ` on the integer path (K smoothed by its channel means,
    ///     query and key rows quantized to int8, exact int32 sums; Formats/dlrt.md §4.2);
    ///     softmax and `·V` stay fp32.
    /// - Returns: `[B, T, Cv]`.
    public static func attention(q: Tensor, k: Tensor, v: Tensor, heads: Int, int8Logits: Bool = false) -> Tensor {
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
        guard b > 0, t > 0, cv > 0, s > 0 else { return Tensor(zeros: [b, t, cv]) }
        guard d > 0 else {
            var out = Tensor(zeros: [b, t, cv])
            // No channels to compare: every logit is 0, each query the mean of the values.
            for batch in 0..<b {
                for j in 0..<s {
                    for i in 0..<t {
                        for x in 0..<cv { out.data[(batch * t + i) * cv + x] += v.data[(batch * s + j) * cv + x] }
                    }
                }
            }
            return Tensor(shape: out.shape, data: out.data.map { $0 / Float(s) })
        }
        // PyTorch scales by 1/sqrt(d) computed in double and applied as a float.
        let scale = Float(1 / Double(d).squareRoot())
        let kernels = Kernels.current.handle
        // Tasks of one (batch, head, block of queries), each run start to end on one core
        // (dloral_attention_run): the block's scores stay in that core's L2. The tasks write every
        // element of the output.
        return Tensor(shape: [b, t, cv]) { op in
            q.data.withUnsafeBufferPointer { qp in
                k.data.withUnsafeBufferPointer { kp in
                    v.data.withUnsafeBufferPointer { vp in
                        var shape = dloral_attention_shape(
                            batch: b, queries: t, keys: s, heads: heads, d: d, dv: dv, alpha: scale,
                            q: qp.baseAddress!, k: kp.baseAddress!, v: vp.baseAddress!, out: op.baseAddress!,
                            int8_logits: int8Logits ? 1 : 0)
                        let tasks = dloral_attention_tasks(&shape)
                        let work = t * s * (d + dv) * heads * b
                        let problem = shape
                        Ops.parallelRanges(tasks, work: work) { first, end in
                            var local = problem
                            dloral_attention_run(kernels, &local, first, end)
                        }
                    }
                }
            }
        }
    }
}
