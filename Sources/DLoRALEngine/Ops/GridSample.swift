extension Ops {
    /// How `gridSample` treats sample points outside the image.
    public enum GridPadding: String, Sendable {
        /// Corners outside the image contribute 0 (PyTorch `padding_mode='zeros'`).
        case zeros
        /// Coordinates are clamped to the image before interpolating (`'border'`).
        case border
    }

    /// `F.grid_sample(x, grid, mode='bilinear')`.
    /// - Parameters:
    ///   - x: `[N, C, H, W]`.
    ///   - grid: `[N, Ho, Wo, 2]`, normalised `(x, y)` in [-1, 1] (x along width).
    ///   - paddingMode: zeros or border.
    ///   - alignCorners: true maps -1 and 1 to the centres of the corner pixels (DLoRAL's
    ///     setting); false to their outer edges.
    /// - Returns: `[N, C, Ho, Wo]`.
    public static func gridSample(
        _ x: Tensor, grid: Tensor, paddingMode: GridPadding = .zeros, alignCorners: Bool = true
    ) -> Tensor {
        let (n, _, h, w) = x.nchw("gridSample")
        precondition(grid.rank == 4 && grid.shape[0] == n && grid.shape[3] == 2,
                     "gridSample grid must be [\(n), Ho, Wo, 2], got \(grid.shape)")
        let (ho, wo) = (grid.shape[1], grid.shape[2])
        return sampleBilinear(x, outputSize: (ho, wo), paddingMode: paddingMode) { batch, oy, ox in
            let g = ((batch * ho + oy) * wo + ox) * 2
            return (
                unnormalize(grid.data[g], size: w, alignCorners: alignCorners),
                unnormalize(grid.data[g + 1], size: h, alignCorners: alignCorners))
        }
    }

    /// BasicSR's `flow_warp` (used by DLoRAL's CFR): samples `x` at `(x + u, y + v)` for each
    /// output pixel, with the flow turned into a normalised grid exactly as BasicSR does
    /// (`2 · p / max(size − 1, 1) − 1`) and sampled bilinearly with `align_corners=True`.
    /// - Parameters:
    ///   - x: `[N, C, H, W]`.
    ///   - flow: `[N, H, W, 2]` pixel offsets `(u, v)` (u along width).
    ///   - paddingMode: zeros (latent warp) or border (SpyNet's inner warps).
    /// - Returns: `[N, C, H, W]`.
    public static func flowWarp(_ x: Tensor, flow: Tensor, paddingMode: GridPadding = .zeros) -> Tensor {
        let (n, _, h, w) = x.nchw("flowWarp")
        precondition(flow.shape == [n, h, w, 2], "flowWarp flow must be [\(n), \(h), \(w), 2], got \(flow.shape)")
        let denominatorX = Float(max(w - 1, 1))
        let denominatorY = Float(max(h - 1, 1))
        return sampleBilinear(x, outputSize: (h, w), paddingMode: paddingMode) { batch, oy, ox in
            let f = ((batch * h + oy) * w + ox) * 2
            let gridX = 2 * (Float(ox) + flow.data[f]) / denominatorX - 1
            let gridY = 2 * (Float(oy) + flow.data[f + 1]) / denominatorY - 1
            return (
                unnormalize(gridX, size: w, alignCorners: true),
                unnormalize(gridY, size: h, alignCorners: true))
        }
    }

    /// PyTorch's `grid_sampler_unnormalize`.
    @inline(__always)
    static func unnormalize(_ coordinate: Float, size: Int, alignCorners: Bool) -> Float {
        // The forms of PyTorch's vectorised CPU kernel (ComputeLocationBase), for equal rounding.
        if alignCorners { return (coordinate + 1) * (Float(size - 1) / 2) }
        let scaling = Float(size) / 2
        return coordinate * scaling + (scaling - 0.5)
    }

    /// Bilinear sampling at pixel coordinates produced by `source(batch, oy, ox)`, with
    /// PyTorch's corner weights and padding rules.
    static func sampleBilinear(
        _ x: Tensor, outputSize: (Int, Int), paddingMode: GridPadding,
        source: (Int, Int, Int) -> (Float, Float)
    ) -> Tensor {
        let (n, c, h, w) = x.nchw("gridSample")
        let (ho, wo) = outputSize
        var out = Tensor(zeros: [n, c, ho, wo])
        guard h > 0, w > 0 else { return out }
        let maxX = Float(w - 1)
        let maxY = Float(h - 1)
        x.data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                for batch in 0..<n {
                    for oy in 0..<ho {
                        for ox in 0..<wo {
                            var (ix, iy) = source(batch, oy, ox)
                            if paddingMode == .border {
                                ix = min(max(ix, 0), maxX)
                                iy = min(max(iy, 0), maxY)
                            }
                            guard ix.isFinite, iy.isFinite else { continue }
                            let x0f = ix.rounded(.down)
                            let y0f = iy.rounded(.down)
                            // Far outside the image nothing contributes; avoid Int overflow.
                            guard x0f > -2, y0f > -2, x0f < Float(w) + 1, y0f < Float(h) + 1 else { continue }
                            let x0 = Int(x0f)
                            let y0 = Int(y0f)
                            let x1f = x0f + 1
                            let y1f = y0f + 1
                            let weights = (
                                nw: (x1f - ix) * (y1f - iy), ne: (ix - x0f) * (y1f - iy),
                                sw: (x1f - ix) * (iy - y0f), se: (ix - x0f) * (iy - y0f))
                            let inX0 = x0 >= 0 && x0 < w
                            let inX1 = x0 + 1 >= 0 && x0 + 1 < w
                            let inY0 = y0 >= 0 && y0 < h
                            let inY1 = y0 + 1 >= 0 && y0 + 1 < h
                            for channel in 0..<c {
                                let plane = src.baseAddress! + (batch * c + channel) * h * w
                                var value: Float = 0
                                if inY0 && inX0 { value += plane[y0 * w + x0] * weights.nw }
                                if inY0 && inX1 { value += plane[y0 * w + x0 + 1] * weights.ne }
                                if inY1 && inX0 { value += plane[(y0 + 1) * w + x0] * weights.sw }
                                if inY1 && inX1 { value += plane[(y0 + 1) * w + x0 + 1] * weights.se }
                                dst[((batch * c + channel) * ho + oy) * wo + ox] = value
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}
