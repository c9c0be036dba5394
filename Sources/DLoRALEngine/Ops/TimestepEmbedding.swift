import Foundation

extension Ops {
    /// diffusers' `get_timestep_embedding`: sinusoidal features of each timestep, in float32
    /// arithmetic step by step as diffusers writes it.
    ///
    /// `freq_i = exp(−ln(maxPeriod) · i / (D/2 − downscaleFreqShift))`, `arg = t · freq_i`,
    /// features `[sin(arg), cos(arg)]` (or `[cos, sin]` with `flipSinToCos`), zero-padded by one
    /// column when `dim` is odd.
    /// - Parameters:
    ///   - timesteps: `[B]` (fractional timesteps allowed).
    ///   - dim: embedding width `D` (SD 2.1 UNet: 320).
    ///   - flipSinToCos: put cosines first (SD: true).
    ///   - downscaleFreqShift: SD: 0.
    ///   - maxPeriod: 10000 in every SD model.
    /// - Returns: `[B, D]`.
    public static func timestepEmbedding(
        _ timesteps: Tensor, dim: Int, flipSinToCos: Bool = true,
        downscaleFreqShift: Float = 0, maxPeriod: Float = 10000
    ) -> Tensor {
        precondition(timesteps.rank == 1, "timestepEmbedding expects [B] timesteps, got \(timesteps.shape)")
        precondition(dim >= 0, "timestepEmbedding dim \(dim)")
        let batch = timesteps.count
        let half = dim / 2
        // torch: exponent = -math.log(max_period) * arange(half, float32) / (half - shift);
        // the Python double scalar enters float32 tensor arithmetic as a float.
        let logPeriod = Float(-Foundation.log(Double(maxPeriod)))
        let divisor = Float(half) - downscaleFreqShift
        let frequencies: [Float] = (0..<half).map { i in
            Float(Foundation.exp(Double(logPeriod * Float(i) / divisor)))
        }
        var out = Tensor(zeros: [batch, dim])
        for b in 0..<batch {
            let t = timesteps.data[b]
            for i in 0..<half {
                let argument = t * frequencies[i]
                let sine = Float(Foundation.sin(Double(argument)))
                let cosine = Float(Foundation.cos(Double(argument)))
                out.data[b * dim + i] = flipSinToCos ? cosine : sine
                out.data[b * dim + half + i] = flipSinToCos ? sine : cosine
            }
        }
        return out
    }
}
