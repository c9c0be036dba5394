/// How a restored frame's colours are matched to its prepared input frame (upstream's
/// `--align_method`; "none" is upstream's "nofix").
public enum ColorFixMode: String, Sendable, CaseIterable, Codable {
    case adain, wavelet, none
}

/// Upstream DLoRAL's colour fix (my_utils/wavelet_color_fix.py) of an 8-bit restored frame
/// (`target`) against the 8-bit prepared input frame (`source`).
///
/// Both images become float32 in [0, 1] (`u8 / 255`, torchvision's to_tensor); the result is
/// clamped to [0, 1] and converted back as torchvision's ToPILImage does: `x * 255` truncated
/// toward zero. The arithmetic is float32 in torch's operation order, so results equal torch's
/// except where a last-bit difference in a sum (torch's summation order is its own) moves a value
/// across an integer after `* 255`: then the byte differs by one.
public enum ColorFix {
    /// The colour-fixed target.
    /// - Precondition: for `.wavelet`, `target` and `source` have the same size (upstream adds
    ///   their frequency bands pixel by pixel).
    public static func apply(_ mode: ColorFixMode, target: RGBImage, source: RGBImage) -> RGBImage {
        switch mode {
        case .none: return target
        case .adain: return adain(target: target, source: source)
        case .wavelet: return wavelet(target: target, source: source)
        }
    }

    /// to_tensor's value of each byte: `Float(v) / 255` rounded to float32.
    static let unitLevels: [Float] = (0..<256).map { Float($0) / 255 }

    /// ToPILImage of a value already clamped to [0, 1].
    @inline(__always)
    static func byte(_ unit: Float) -> UInt8 {
        FramePreparation.byte(truncating: unit * 255)
    }

    /// Clamp to [0, 1] as `clamp_(0, 1)` (NaN stays NaN there and becomes 0 here).
    @inline(__always)
    static func clampUnit(_ x: Float) -> Float {
        x > 1 ? 1 : (x >= 0 ? x : 0)
    }

    // MARK: AdaIN

    /// How many levels apart two saved frames can be when the images the fix is applied to differ
    /// by at most one level (what truncating two float frames within fp32's bounds to 8 bits gives):
    /// AdaIN scales a channel's deviations by std(source) / std(target), so one level becomes up to
    /// that gain, rounded up; the wavelet fix keeps the target's high frequencies (one level, plus
    /// one for the truncation of the sum); none leaves the level as it is. One more when the frame
    /// is resized back after the fix (`enlarged`): bicubic overshoots a step by up to about 25 %.
    public static func levelBound(_ mode: ColorFixMode, target: RGBImage, source: RGBImage, enlarged: Bool) -> Int {
        let base: Int
        switch mode {
        case .none: base = 1
        case .wavelet: base = 2
        case .adain:
            let (t, s) = (meanAndStd(target), meanAndStd(source))
            let gain = zip(t, s).map { Double($1.std) / Double($0.std) }.max() ?? 1
            base = Int(gain.rounded(.down)) + 1
        }
        return base + (enlarged ? 1 : 0)
    }

    /// Per channel of `image`: the float32 mean and `sqrt(unbiased variance + 1e-5)` that
    /// upstream's `calc_mean_std` computes. The mean is torch's float32 sum divided by the
    /// count (the sum is taken in double and rounded once, as torch's cascaded float sum is
    /// accurate to its last bit); the variance is accumulated in double (torch's Welford
    /// reduction accumulates in double too) and rounded to float32 before `+ eps`.
    static func meanAndStd(_ image: RGBImage) -> [(mean: Float, std: Float)] {
        let n = image.width * image.height
        var counts = [Int](repeating: 0, count: 3 * 256)
        image.pixels.withUnsafeBufferPointer { p in
            counts.withUnsafeMutableBufferPointer { h in
                for i in 0..<n {
                    h[Int(p[3 * i])] += 1
                    h[256 + Int(p[3 * i + 1])] += 1
                    h[512 + Int(p[3 * i + 2])] += 1
                }
            }
        }
        return (0..<3).map { c in
            let histogram = counts[(c * 256)..<(c * 256 + 256)].map { $0 }
            var sum = 0.0
            for v in 0..<256 where histogram[v] > 0 { sum += Double(unitLevels[v]) * Double(histogram[v]) }
            let mean = Float(sum) / Float(n)
            let meanD = sum / Double(n)
            var squares = 0.0
            for v in 0..<256 where histogram[v] > 0 {
                let d = Double(unitLevels[v]) - meanD
                squares += d * d * Double(histogram[v])
            }
            // torch.var of a single value is NaN (division by N - 1 = 0); so is the result.
            let variance = n > 1 ? Float(squares / Double(n - 1)) : Float.nan
            return (mean, (variance + 1e-5).squareRoot())
        }
    }

    static func adain(target: RGBImage, source: RGBImage) -> RGBImage {
        let content = meanAndStd(target), style = meanAndStd(source)
        // Every output byte depends only on its channel and input byte: one table per channel,
        // each entry computed with torch's elementwise float32 steps.
        var table = [UInt8](repeating: 0, count: 3 * 256)
        for c in 0..<3 {
            for v in 0..<256 {
                let normalized = (unitLevels[v] - content[c].mean) / content[c].std
                let value = normalized * style[c].std + style[c].mean
                table[c * 256 + v] = byte(clampUnit(value))
            }
        }
        var pixels = target.pixels
        pixels.withUnsafeMutableBufferPointer { p in
            table.withUnsafeBufferPointer { t in
                for i in 0..<(target.width * target.height) {
                    p[3 * i] = t[Int(p[3 * i])]
                    p[3 * i + 1] = t[256 + Int(p[3 * i + 1])]
                    p[3 * i + 2] = t[512 + Int(p[3 * i + 2])]
                }
            }
        }
        return RGBImage(width: target.width, height: target.height, pixels: pixels)
    }

    // MARK: Wavelet

    /// Levels of upstream's `wavelet_decomposition` (radii 1, 2, 4, 8, 16).
    static let waveletLevels = 5

    static func wavelet(target: RGBImage, source: RGBImage) -> RGBImage {
        precondition(target.width == source.width && target.height == source.height,
                     "wavelet colour fix of a \(target.width)×\(target.height) frame against a "
                         + "\(source.width)×\(source.height) source: sizes must match")
        let width = target.width, height = target.height
        let (contentHigh, _) = decompose(target)
        let (_, styleLow) = decompose(source)
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        let plane = width * height
        contentHigh.withUnsafeBufferPointer { high in
            styleLow.withUnsafeBufferPointer { low in
                pixels.withUnsafeMutableBufferPointer { out in
                    for c in 0..<3 {
                        for i in 0..<plane {
                            out[3 * i + c] = byte(clampUnit(high[c * plane + i] + low[c * plane + i]))
                        }
                    }
                }
            }
        }
        return RGBImage(width: width, height: height, pixels: pixels)
    }

    /// Upstream's `wavelet_decomposition`: planar float32 [3][H][W] high and low bands.
    static func decompose(_ image: RGBImage) -> (high: [Float], low: [Float]) {
        let width = image.width, height = image.height, plane = width * height
        var current = [Float](repeating: 0, count: 3 * plane)
        let levels = unitLevels
        image.pixels.withUnsafeBufferPointer { p in
            current.withUnsafeMutableBufferPointer { x in
                levels.withUnsafeBufferPointer { unit in
                    for i in 0..<plane {
                        x[i] = unit[Int(p[3 * i])]
                        x[plane + i] = unit[Int(p[3 * i + 1])]
                        x[2 * plane + i] = unit[Int(p[3 * i + 2])]
                    }
                }
            }
        }
        var high = [Float](repeating: 0, count: 3 * plane)
        var low = [Float](repeating: 0, count: 3 * plane)
        for level in 0..<waveletLevels {
            let radius = 1 << level
            current.withUnsafeBufferPointer { src in
                low.withUnsafeMutableBufferPointer { dst in
                    for c in 0..<3 {
                        blur(src.baseAddress! + c * plane, into: dst.baseAddress! + c * plane,
                             width: width, height: height, radius: radius)
                    }
                }
            }
            high.withUnsafeMutableBufferPointer { h in
                current.withUnsafeBufferPointer { x in
                    low.withUnsafeBufferPointer { l in
                        for i in 0..<(3 * plane) { h[i] += x[i] - l[i] }
                    }
                }
            }
            swap(&current, &low)
        }
        // `current` holds the last level's low band after the swap.
        return (high, current)
    }

    /// Upstream's `wavelet_blur` of one plane: replicate padding by `radius`, then the 3×3 kernel
    /// [[1, 2, 1], [2, 4, 2], [1, 2, 1]] / 16 with dilation `radius`. The nine products are exact
    /// (powers of two); they are summed row by row, left to right.
    static func blur(
        _ input: UnsafePointer<Float>, into output: UnsafeMutablePointer<Float>,
        width: Int, height: Int, radius: Int
    ) {
        let lo = min(radius, width), hi = max(lo, width - radius)
        for y in 0..<height {
            let above = input + max(y - radius, 0) * width
            let row = input + y * width
            let below = input + min(y + radius, height - 1) * width
            let out = output + y * width
            for x in 0..<lo {
                out[x] = blurValue(above, row, below, x, max(x - radius, 0), min(x + radius, width - 1))
            }
            blurInterior(above, row, below, out, lo, hi, radius)
            for x in hi..<width {
                out[x] = blurValue(above, row, below, x, max(x - radius, 0), min(x + radius, width - 1))
            }
        }
    }

    /// One blurred value from columns `left`, `x`, `right` of three rows.
    @inline(__always)
    static func blurValue(
        _ above: UnsafePointer<Float>, _ row: UnsafePointer<Float>, _ below: UnsafePointer<Float>,
        _ x: Int, _ left: Int, _ right: Int
    ) -> Float {
        var s: Float = 0.0625 * above[left]
        s += 0.125 * above[x]
        s += 0.0625 * above[right]
        s += 0.125 * row[left]
        s += 0.25 * row[x]
        s += 0.125 * row[right]
        s += 0.0625 * below[left]
        s += 0.125 * below[x]
        s += 0.0625 * below[right]
        return s
    }

    /// The columns whose whole window lies inside the row: fixed offsets, so the loop vectorises.
    static func blurInterior(
        _ above: UnsafePointer<Float>, _ row: UnsafePointer<Float>, _ below: UnsafePointer<Float>,
        _ out: UnsafeMutablePointer<Float>, _ lo: Int, _ hi: Int, _ radius: Int
    ) {
        guard lo < hi else { return }
        let a0 = above + (lo - radius), a1 = above + lo, a2 = above + (lo + radius)
        let r0 = row + (lo - radius), r1 = row + lo, r2 = row + (lo + radius)
        let b0 = below + (lo - radius), b1 = below + lo, b2 = below + (lo + radius)
        let o = out + lo
        for i in 0..<(hi - lo) {
            var s: Float = 0.0625 * a0[i]
            s += 0.125 * a1[i]
            s += 0.0625 * a2[i]
            s += 0.125 * r0[i]
            s += 0.25 * r1[i]
            s += 0.125 * r2[i]
            s += 0.0625 * b0[i]
            s += 0.125 * b1[i]
            s += 0.0625 * b2[i]
            o[i] = s
        }
    }
}
