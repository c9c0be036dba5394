import DLoRALFormats
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a model asks of the frames it runs on: the size grid and smallest size its modules can
/// take, and an estimate of the working memory a clip needs, so that a frame too small or too
/// large is refused with a message before anything is allocated for it (an engine precondition
/// or a failed allocation would kill the process instead).
///
/// Sizes are those of the frames the step sees: for `--frames`, after the ×4 upscale.
public struct FrameRequirements: Sendable, Equatable {
    /// The VAE's downsampling factor, 2^(its downsamplers): latents are H/f × W/f.
    public let vaeFactor: Int
    /// The CFR's LQ downsampling (SpyNet runs on the frames scaled by 1/lqDownsample, and its flow
    /// warps the latents, so the two grids must agree); nil without a CFR.
    public let lqDownsample: Int?
    /// SpyNet's pyramid levels; nil without a CFR.
    public let spynetLevels: Int?
    /// Frame sides must be multiples of this (restored frames are cropped to it).
    public let step: Int
    /// The smallest frame side the model runs at.
    public let minimumSide: Int
    /// Estimated working bytes per frame pixel for each frame of the clip (the inputs and the
    /// VAE encoder's batch), and for each frame pair (UNet, VAE decoder, outputs).
    let bytesPerPixelPerFrame: Double
    let bytesPerPixelPerPair: Double

    /// - Parameters:
    ///   - encoderLevels, decoderLevels, unetLevels: per resolution, its downsampling factor
    ///     against the frame and the widest channel count there (from the modules' weights).
    ///   - unetHeld: channels × (1/factor²) the UNet keeps alive across a step (skip connections).
    init(vaeFactor: Int, lqDownsample: Int?, spynetLevels: Int?,
         encoderLevels: [(factor: Int, channels: Int)], decoderLevels: [(factor: Int, channels: Int)],
         unetLevels: [(factor: Int, channels: Int)], unetHeld: Double) {
        self.vaeFactor = vaeFactor
        self.lqDownsample = lqDownsample
        self.spynetLevels = spynetLevels
        // The latent grid and the CFR's flow grid are the same pixels: sides are multiples of both.
        let step = lqDownsample.map { Self.lcm(vaeFactor, $0) } ?? vaeFactor
        self.step = step
        // One latent pixel is the least the VAE and UNet run on (the UNet forwards its upsampling
        // sizes, so any latent size works); the CFR needs one LQ pixel, which SpyNet pads up to
        // 2^(levels − 1) for its pyramid, so its coarsest level has at least one pixel too.
        self.minimumSide = Self.roundUp(max(vaeFactor, lqDownsample ?? 1), to: step)
        // A ResNet block holds its input, the normalised input and the convolution's output (then
        // the sum): about three activations of the widest channel count at a resolution (measured:
        // the tiny model's 3 × 512×512 clip peaks at 134 MB over its baseline, estimated 207 MB).
        func peak(_ levels: [(factor: Int, channels: Int)], live: Double) -> Double {
            levels.map { live * Double($0.channels) / Double($0.factor * $0.factor) }.max() ?? 0
        }
        let float = Double(MemoryLayout<Float>.size)
        // Per frame: the input frames (and the copy they are assembled from) plus the encoder.
        bytesPerPixelPerFrame = float * (2 * 3 + peak(encoderLevels, live: 3))
        // Per pair: the decoder or the UNet (its skips, and a transformer's feed-forward of 8×
        // the channels), plus the output frames and their clamped copy.
        let unet = unetHeld + peak(unetLevels, live: 10)
        bytesPerPixelPerPair = float * (2 * 3 + max(peak(decoderLevels, live: 3), unet))
    }

    /// Estimated peak working memory in bytes for `frames` frames of `height` × `width` (a Double:
    /// absurd sizes give a large number, not an overflow).
    public func estimatedBytes(frames: Int, height: Int, width: Int) -> Double {
        let pixels = Double(height) * Double(width)
        return pixels * (Double(frames) * bytesPerPixelPerFrame + Double(max(frames - 1, 1)) * bytesPerPixelPerPair)
    }

    /// The largest side s such that `frames` frames of s × s (scaled from `height` × `width`,
    /// same aspect) fit in `bytes`: a hint for what to run instead.
    public func largestFitting(frames: Int, height: Int, width: Int, bytes: Double) -> (height: Int, width: Int) {
        let scale = (bytes / max(estimatedBytes(frames: frames, height: height, width: width), 1)).squareRoot()
        func side(_ s: Int) -> Int { max(Int((Double(s) * scale).rounded(.down)) / step * step, 0) }
        return (side(height), side(width))
    }

    /// Why the step cannot run `frames` frames of `height` × `width`, or nil when it can: too
    /// small for the model, off its size grid, or beyond this machine's memory.
    public func problem(frames: Int, height: Int, width: Int) -> String? {
        if height < minimumSide || width < minimumSide {
            return "frames are \(width)×\(height) pixels; this model needs at least \(minimumSide)×\(minimumSide) (\(gridReason))"
        }
        if height % step != 0 || width % step != 0 {
            return "frames are \(width)×\(height) pixels; DLoRAL runs at sizes divisible by \(step) (\(gridReason))"
        }
        return memoryProblem(frames: frames, height: height, width: width)
    }

    /// Why `frames` frames of `height` × `width` do not fit this machine's memory, or nil.
    /// - Parameter upscale: the frames the user gave are this much smaller (the hint names theirs).
    public func memoryProblem(frames: Int, height: Int, width: Int, upscale: Int = 1) -> String? {
        let need = estimatedBytes(frames: frames, height: height, width: width)
        guard let have = MachineMemory.bytes, need > Double(have) else { return nil }
        let fit = largestFitting(frames: frames, height: height, width: width, bytes: Double(have))
        let hint = fit.height >= minimumSide && fit.width >= minimumSide
            ? "\(upscale == 1 ? "frames" : "input frames") of about \(fit.width / upscale)×\(fit.height / upscale) would fit"
            : "no frame size fits"
        return "\(frames) \(frames == 1 ? "frame" : "frames") of \(width)×\(height) pixels need an estimated "
            + "\(MachineMemory.format(need)) of working memory; this machine has \(MachineMemory.format(Double(have))) "
            + "(\(hint)); use smaller frames"
    }

    /// What the size grid comes from, for messages.
    var gridReason: String {
        var parts = ["the VAE downsamples by \(vaeFactor)"]
        if let lqDownsample, let spynetLevels {
            parts.append("the CFR's SpyNet (\(spynetLevels) levels) runs at 1/\(lqDownsample) of the frame")
        }
        return parts.joined(separator: " and ")
    }

    static func lcm(_ a: Int, _ b: Int) -> Int {
        func gcd(_ x: Int, _ y: Int) -> Int { y == 0 ? x : gcd(y, x % y) }
        return a / gcd(a, b) * b
    }

    static func roundUp(_ value: Int, to step: Int) -> Int { (value + step - 1) / step * step }
}

extension DLoRALPipeline {
    /// The frame requirements of these modules, from their weights (not the configs' numbers).
    static func requirements(encoder: VAEEncoder, decoder: VAEDecoder, cfr: CrossFrameRetrieval?,
                             unet: UNet2DCondition) -> FrameRequirements {
        func widest(_ resnets: [ResnetBlock2D]) -> Int {
            resnets.map { max($0.inChannels, $0.outChannels) }.max() ?? 0
        }
        var encoderLevels: [(factor: Int, channels: Int)] = [(1, encoder.convIn.outChannels)]
        var factor = 1
        for block in encoder.downBlocks {
            encoderLevels.append((factor, widest(block.resnets)))
            if block.downsampler != nil { factor *= 2 }
        }
        let vaeFactor = factor
        encoderLevels.append((vaeFactor, widest(encoder.midBlock.resnets)))

        var decoderLevels: [(factor: Int, channels: Int)] = [(vaeFactor, widest(decoder.midBlock.resnets))]
        factor = vaeFactor
        for block in decoder.upBlocks {
            decoderLevels.append((factor, widest(block.resnets)))
            if let up = block.upsampler {
                factor = max(factor / 2, 1)
                decoderLevels.append((factor, up.conv.outChannels))
            }
        }
        decoderLevels.append((factor, decoder.convOut.inChannels))

        var unetLevels: [(factor: Int, channels: Int)] = [(vaeFactor, unet.convIn.outChannels)]
        var held = Double(unet.convIn.outChannels) / Double(vaeFactor * vaeFactor)
        factor = vaeFactor
        for block in unet.downBlocks {
            let channels = widest(block.resnets)
            unetLevels.append((factor, channels))
            held += Double(channels * (block.resnets.count + 1)) / Double(factor * factor)
            if block.downsample != nil { factor *= 2 }
        }
        for block in unet.upBlocks {
            unetLevels.append((factor, widest(block.resnets)))
            if block.upsample != nil { factor = max(factor / 2, 1) }
        }
        return FrameRequirements(
            vaeFactor: vaeFactor,
            lqDownsample: cfr == nil ? nil : CrossFrameRetrieval.lqDownsample,
            spynetLevels: cfr == nil ? nil : SpyNet.levelCount,
            encoderLevels: encoderLevels, decoderLevels: decoderLevels, unetLevels: unetLevels, unetHeld: held)
    }
}

/// The memory this process can use: physical memory, or a lower cgroup limit (containers).
public enum MachineMemory {
    public static let bytes: Int? = {
        var limits: [Int] = []
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
        if pages > 0, size > 0 { limits.append(pages.multipliedReportingOverflow(by: size).overflow ? Int.max : pages * size) }
        for path in ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"] {
            if let text = try? String(contentsOfFile: path, encoding: .utf8),
               let value = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), value > 0 {
                limits.append(value)
            }
        }
        return limits.min()
    }()

    /// "12.3 GB", "512 MB".
    public static func format(_ bytes: Double) -> String {
        bytes >= 1e9 ? String(format: "%.1f GB", bytes / 1e9) : String(format: "%.0f MB", bytes / 1e6)
    }

    /// `counts` elements of `elementSize` bytes each, for allocations whose size an input decides:
    /// refuses (naming `file` and `what`) a size that overflows or exceeds this machine's memory,
    /// where the allocation itself would abort the process.
    /// - Returns: the byte count.
    public static func checkedBytes(_ counts: [Int], elementSize: Int, what: String, file: String) throws -> Int {
        var total = elementSize
        for count in counts {
            let (product, overflow) = total.multipliedReportingOverflow(by: count)
            guard count >= 0, !overflow else {
                throw FormatError(.malformed, file: file, "\(what) (\(counts.map(String.init).joined(separator: " × ")) elements) is too large to address")
            }
            total = product
        }
        if let bytes, total > bytes {
            throw FormatError(.invalidModel, file: file, "\(what) needs \(format(Double(total))); this machine has \(format(Double(bytes)))")
        }
        return total
    }
}
