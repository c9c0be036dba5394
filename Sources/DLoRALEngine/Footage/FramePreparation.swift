/// Upstream DLoRAL's input preparation (test_DLoRAL.py): how a decoded frame becomes the model's
/// input, and how a restored frame becomes the saved image.
///
/// A frame with a side shorter than `processSize / upscale` is first enlarged (Pillow bicubic)
/// so that its short side is that length; then every frame is enlarged `upscale` times (Pillow
/// bicubic) and resized (Pillow Lanczos, not cropped) to the multiple of 8 below each side. After
/// restoration and colour fix an enlarged frame is resized (bicubic) to `upscale` × its original
/// size.
public struct FramePreparation: Sendable, Equatable, Codable {
    /// The enlargement factor (upstream's `--upscale`, default 4).
    public var upscale = 4
    /// Upstream's `--process_size` (default 512): frames with a side below
    /// `processSize / upscale` are enlarged first.
    public var processSize = 512

    public init(upscale: Int = 4, processSize: Int = 512) {
        self.upscale = upscale
        self.processSize = processSize
    }

    /// The short side below which a frame is enlarged first (Python's `process_size // upscale`).
    public var minimumSide: Int { upscale > 0 ? processSize / upscale : 0 }

    /// The size of the first enlargement of a `width` × `height` frame, or nil when none is
    /// needed. Python's float arithmetic: `int(scale * side)` with
    /// `scale = (process_size // upscale) / min(width, height)`.
    func enlargedSize(width: Int, height: Int) -> (width: Int, height: Int)? {
        let side = minimumSide
        guard width > 0, height > 0, width < side || height < side else { return nil }
        let scale = Double(side) / Double(min(width, height))
        return (Int(scale * Double(width)), Int(scale * Double(height)))
    }

    /// The size a width × height input is prepared at, and whether it is enlarged first (cheap,
    /// for checks before decoding). A side can come out 0 (a frame narrower than 8 / `upscale`
    /// pixels with a small `processSize`), which `prepare` cannot handle: see `problem(width:height:)`.
    public func preparedSize(width: Int, height: Int) -> (width: Int, height: Int, enlarged: Bool) {
        let enlarged = enlargedSize(width: width, height: height)
        let w = (enlarged?.width ?? width) * upscale
        let h = (enlarged?.height ?? height) * upscale
        return (w - w % 8, h - h % 8, enlarged != nil)
    }

    /// Why a width × height frame cannot be prepared with these options, or nil when it can:
    /// for a clear error before any decoding.
    public func problem(width: Int, height: Int) -> String? {
        if upscale < 1 { return "upscale must be at least 1 (got \(upscale))" }
        if processSize < 0 { return "process size must not be negative (got \(processSize))" }
        if width < 1 || height < 1 { return "the frame is empty (\(width)×\(height))" }
        let enlarged = enlargedSize(width: width, height: height) ?? (width, height)
        let sideW = Double(enlarged.width) * Double(upscale), sideH = Double(enlarged.height) * Double(upscale)
        if sideW * sideH > Double(Self.maximumPixels) {
            return "a \(width)×\(height) frame would be enlarged to \(Int(min(sideW, 1e18)))×\(Int(min(sideH, 1e18))) pixels "
                + "(more than \(Self.maximumPixels)); use frames with a less extreme aspect ratio or a smaller --upscale"
        }
        let size = preparedSize(width: width, height: height)
        if size.width < 8 || size.height < 8 {
            return "a \(width)×\(height) frame becomes \(size.width)×\(size.height) after ×\(upscale) and "
                + "rounding down to a multiple of 8; each prepared side must be at least 8 pixels "
                + "(use a larger frame, --upscale or --process-size)"
        }
        return nil
    }

    /// The largest intermediate image `problem(width:height:)` accepts (16384 × 16384 pixels):
    /// beyond it a frame is refused instead of exhausting memory (a 1-pixel-high strip would be
    /// enlarged to `processSize / upscale` rows and its width in proportion).
    public static let maximumPixels = 1 << 28

    /// Upstream's preparation of one decoded RGB frame.
    /// - Precondition: `problem(width:height:)` is nil for the image's size.
    public func prepare(_ image: RGBImage) -> PreparedFrame {
        precondition(problem(width: image.width, height: image.height) == nil,
                     problem(width: image.width, height: image.height) ?? "")
        var frame = image
        let enlarged = enlargedSize(width: image.width, height: image.height)
        if let enlarged {
            frame = PillowResample.resize(frame, width: enlarged.width, height: enlarged.height, filter: .bicubic)
        }
        frame = PillowResample.resize(
            frame, width: frame.width * upscale, height: frame.height * upscale, filter: .bicubic)
        frame = PillowResample.resize(
            frame, width: frame.width - frame.width % 8, height: frame.height - frame.height % 8, filter: .lanczos)
        return PreparedFrame(
            image: frame, originalWidth: image.width, originalHeight: image.height, enlarged: enlarged != nil)
    }

    /// Undoes the enlargement of small inputs: bicubic to upscale × original size; unchanged otherwise.
    public func finish(_ output: RGBImage, for frame: PreparedFrame) -> RGBImage {
        guard frame.enlarged else { return output }
        return PillowResample.resize(
            output, width: upscale * frame.originalWidth, height: upscale * frame.originalHeight, filter: .bicubic)
    }

    /// to_tensor(image) * 2 - 1 in Float: [1, 3, H, W]. Each step rounds to Float as torch's
    /// float32 ops do (`u8 / 255`, then `* 2`, then `- 1`).
    public static func modelInput(_ image: RGBImage) -> Tensor {
        let plane = image.width * image.height
        var levels = [Float](repeating: 0, count: 256)
        for v in 0..<256 { levels[v] = (Float(v) / 255) * 2 - 1 }
        var data = [Float](repeating: 0, count: 3 * plane)
        image.pixels.withUnsafeBufferPointer { src in
            data.withUnsafeMutableBufferPointer { dst in
                for i in 0..<plane {
                    dst[i] = levels[Int(src[3 * i])]
                    dst[plane + i] = levels[Int(src[3 * i + 1])]
                    dst[2 * plane + i] = levels[Int(src[3 * i + 2])]
                }
            }
        }
        return Tensor(shape: [1, 3, image.height, image.width], data: data)
    }

    /// torchvision ToPILImage of frames[frame] * 0.5 + 0.5 (x * 255 truncated to UInt8); frames in [-1, 1].
    /// Values outside [-1, 1] (not produced by the clamped decoder) are clamped first, where
    /// torch's float-to-byte conversion would be undefined.
    public static func outputImage(_ frames: Tensor, frame: Int) -> RGBImage {
        precondition(frames.rank == 4 && frames.shape[1] == 3 && frame >= 0 && frame < frames.shape[0],
                     "outputImage: frame \(frame) of \(frames.shape), expected [N, 3, H, W]")
        let h = frames.shape[2], w = frames.shape[3], plane = h * w
        var pixels = [UInt8](repeating: 0, count: 3 * plane)
        frames.data.withUnsafeBufferPointer { src in
            pixels.withUnsafeMutableBufferPointer { dst in
                for c in 0..<3 {
                    let base = (frame * 3 + c) * plane
                    for i in 0..<plane {
                        let scaled = (src[base + i] * 0.5 + 0.5) * 255
                        dst[3 * i + c] = byte(truncating: scaled)
                    }
                }
            }
        }
        return RGBImage(width: w, height: h, pixels: pixels)
    }

    /// torch's float → uint8 conversion (truncation toward zero) for values in [0, 255];
    /// NaN and values outside are clamped.
    @inline(__always)
    static func byte(truncating value: Float) -> UInt8 {
        guard value > 0 else { return 0 }
        guard value < 255 else { return 255 }
        return UInt8(value)
    }
}

/// One frame as prepared for the model, with what `FramePreparation.finish` needs.
public struct PreparedFrame: Sendable {
    public var image: RGBImage
    public var originalWidth: Int
    public var originalHeight: Int
    public var enlarged: Bool

    public init(image: RGBImage, originalWidth: Int, originalHeight: Int, enlarged: Bool) {
        self.image = image
        self.originalWidth = originalWidth
        self.originalHeight = originalHeight
        self.enlarged = enlarged
    }
}
