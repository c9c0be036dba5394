import Dispatch
import DLoRALFormats

/// The one-step DLoRAL forward pass (docs/model.md): over a whole clip at once
/// (`run`), or a frame pair at a time with upstream's latent and VAE tiling (`encode`,
/// `restorePair`).
///
/// Frames are encoded once each (posterior mean × scaling) and reused by the two pairs they
/// belong to; the CFR aligns each previous latent to its current one; the UNet runs once per pair
/// at timestep 1 on concat(aligned previous, fused current); x0 = fused − UNet output; the decoder
/// maps x0 back to a frame clamped to [-1, 1].
public final class DLoRALPipeline {
    /// Every intermediate the reference files record (`output.*` in docs/reference-files.md), named as there.
    public struct Outputs: Sendable {
        public var latents: Tensor
        /// Nil for a latent-tiled pair (each tile had its own).
        public var unetInput: Tensor?
        public var unetOutput: Tensor
        public var x0: Tensor
        public var frames: Tensor
        /// Wall seconds per phase, in order: vae_encoder (`run` only), cfr (when present), unet,
        /// vae_decoder; summed over the tiles of a tiled pair.
        public var timings: [(String, Double)] = []

        public func stage(_ name: String) -> Tensor? {
            switch name {
            case "latents": return latents
            case "unet_input": return unetInput
            case "unet_output": return unetOutput
            case "x0": return x0
            case "frames": return frames
            default: return nil
            }
        }
    }

    /// The timestep DLoRAL's one step uses.
    public static let timestep: Float = 1

    let encoder: VAEEncoder
    let decoder: VAEDecoder
    /// Nil when the file has no CFR weights: the previous latent is then used unaligned and the
    /// current one unfused (what a model without its CFR computes; `dloral-verify` shows where
    /// that diverges from the reference).
    let cfr: CrossFrameRetrieval?
    let unet: UNet2DCondition
    public let model: RuntimeModel
    /// The frame sizes these modules run on and the memory a clip needs.
    public let requirements: FrameRequirements

    /// - Throws: `FormatError` naming the file when its configs do not fit its weights.
    public init(model: RuntimeModel) throws {
        self.model = model
        do {
            (encoder, decoder, cfr, unet) = try Self.modules(model)
        } catch let error as EngineError {
            throw FormatError(.invalidModel, file: model.path, "its configs do not fit its weights: \(error)")
        } catch let error as UNetConfigError {
            throw FormatError(.invalidModel, file: model.path, "its UNet config is not usable: \(error)")
        }
        requirements = Self.requirements(encoder: encoder, decoder: decoder, cfr: cfr, unet: unet)
        if let lq = requirements.lqDownsample, lq != requirements.vaeFactor {
            throw FormatError(.invalidModel, file: model.path, "its VAE downsamples by \(requirements.vaeFactor) but the CFR's flow runs at 1/\(lq) of the frame: the flow cannot warp the latents (a DLoRAL VAE has 4 blocks, 3 downsamplers)")
        }
        let latent = decoder.config.latentChannels
        guard unet.config.inChannels == 2 * latent, unet.config.outChannels == latent else {
            throw FormatError(.invalidModel, file: model.path, "is not a DLoRAL model: its UNet takes \(unet.config.inChannels) channels and returns \(unet.config.outChannels), but DLoRAL's step feeds it the current and the aligned previous latent (2 × the VAE's \(latent) latent channels) and takes back \(latent); quantize a folder written by dloral-convert merge from DLoRAL's checkpoint")
        }
        // The modules hold their own fp32 copies now; let the kernel drop the mapped file's pages
        // so they are not resident twice (a full-size fp32 file is 3.8 GB).
        for table in [model.unet, model.vae, model.cfr] {
            for view in table.tensors.values { view.storage.releasePages() }
        }
    }

    static func modules(_ model: RuntimeModel) throws
        -> (VAEEncoder, VAEDecoder, CrossFrameRetrieval?, UNet2DCondition)
    {
        let vaeConfig = VAEConfig(json: model.configs["vae"]!)
        let cfr = model.cfr.count == 0 ? nil : try CrossFrameRetrieval(
            from: model.cfr, config: model.configs["cfr"].map(CFRConfig.init(json:)) ?? .dloral)
        return (
            try VAEEncoder(table: model.vae, config: vaeConfig),
            try VAEDecoder(table: model.vae, config: vaeConfig),
            cfr,
            try UNet2DCondition(table: model.unet, config: try UNetConfig(json: model.configs["unet"]!))
        )
    }

    /// Runs T frames [T, 3, H, W] in [-1, 1] to T−1 output frames, untiled, the whole clip in
    /// one batch per module (`restorePair` is the per-pair, tiled form).
    public func run(frames: Tensor, promptEmbeds: Tensor) throws -> Outputs {
        guard frames.rank == 4, frames.shape[0] >= 2, frames.shape[1] == 3 else {
            throw EngineError.shapeMismatch(operation: "DLoRAL step frames", expected: "[T ≥ 2, 3, H, W]", actual: frames.shape)
        }
        // Callers name the file in their own check first; this keeps preconditions deep in the
        // modules (and allocations beyond the machine) from ever being reached.
        if let problem = requirements.problem(frames: frames.shape[0], height: frames.shape[2], width: frames.shape[3]) {
            throw FormatError(.invalidModel, file: model.path, "cannot run these frames: \(problem)")
        }
        if let problem = promptEmbedsProblem(promptEmbeds.shape, pairs: frames.shape[0] - 1) {
            throw FormatError(.invalidModel, file: model.path, "cannot run these prompt embeddings: \(problem)")
        }
        var timings = PhaseTimings()
        let latents = timings.measure("vae_encoder") { encodeFrames(frames, tileSize: TilingOptions.untiled.vaeEncoderTile) }
        let step = try predict(frames: frames, latents: latents, promptEmbeds: promptEmbeds, timings: &timings)
        let x0 = Self.denoised(encoded: step.fused, prediction: step.unetOutput)
        let decoded = timings.measure("vae_decoder") {
            VAEDecoder.clampFrames(decodeLatents(x0, tileSize: TilingOptions.untiled.vaeDecoderTile))
        }
        return Outputs(latents: latents, unetInput: step.unetInput, unetOutput: step.unetOutput, x0: x0, frames: decoded,
                       timings: timings.phases)
    }

    /// The CFR (or, without one, the latents unaligned and unfused) and the UNet on T frames and
    /// their latents: for each pair (t−1, t) the UNet input concat(aligned previous, fused
    /// current), `[T−1, 8, h, w]`, the fused current latent and the UNet output `[T−1, 4, h, w]`.
    func predict(frames: Tensor, latents: Tensor, promptEmbeds: Tensor, timings: inout PhaseTimings) throws
        -> (unetInput: Tensor, fused: Tensor, unetOutput: Tensor)
    {
        let aligned: Tensor, fused: Tensor
        if let cfr {
            let out = timings.measure("cfr") { cfr.run(frames: frames, latents: latents) }
            (aligned, fused) = (out.aligned, out.fused)
        } else {
            (aligned, fused) = (latents.frames(0..<(latents.shape[0] - 1)), latents.frames(1..<latents.shape[0]))
        }
        let unetInput = Tensor.concatenateChannels(aligned, fused)
        let unetOutput = try timings.measure("unet") {
            try unet(unetInput, timestep: Self.timestep, encoderHiddenStates: promptEmbeds)
        }
        return (unetInput, fused, unetOutput)
    }

    /// x0 = fused − UNet output.
    static func denoised(encoded: Tensor, prediction: Tensor) -> Tensor {
        var x0 = encoded
        for i in x0.data.indices { x0.data[i] -= prediction.data[i] }
        return x0
    }

    /// The encoder, VAEHook-tiled when the frames exceed `tileSize` + 2 × 32 (VAE.swift, TiledVAE.swift).
    private func encodeFrames(_ frames: Tensor, tileSize: Int) -> Tensor {
        encoder(frames, tileSize: tileSize)
    }

    /// The decoder, VAEHook-tiled when the latents exceed `tileSize` + 2 × 11.
    private func decodeLatents(_ latents: Tensor, tileSize: Int) -> Tensor {
        decoder(latents, tileSize: tileSize)
    }
}

extension DLoRALPipeline {
    /// Frames `[N, 3, H, W]` in [-1, 1] → latents `[N, 4, H/8, W/8]` (posterior mean × scaling
    /// factor), the encoder VAE-tiled per `tiling.vaeEncoderTile`. Frames are independent: a clip
    /// can be encoded a frame at a time.
    public func encode(_ frames: Tensor, tiling: TilingOptions) -> Tensor {
        encodeFrames(frames, tileSize: tiling.vaeEncoderTile)
    }

    /// One frame pair as upstream DLoRAL's forward runs it: frames `[2, 3, H, W]` in [-1, 1]
    /// (previous, current) and their latents `[2, 4, h, w]` (from `encode`) → the pair's
    /// `Outputs`: `frames` `[1, 3, H, W]` clamped to [-1, 1], `unetOutput` and `x0`
    /// `[1, 4, h, w]`, `unetInput` `[1, 8, h, w]`, and `latents` as given.
    ///
    /// When `h · w > tiling.latentTile²` the CFR and the UNet run per latent tile (on the tile's
    /// latents and the frames under it), and the tiles' UNet outputs and fused latents are
    /// blended with upstream's Gaussian weights (`LatentTileGrid`, `LatentTileBlender`); then
    /// `unetInput` is nil. Only one tile's intermediates are alive at a time. The decoder is
    /// VAE-tiled per `tiling.vaeDecoderTile`.
    /// - Parameter promptEmbeds: `[1, S, cross_attention_dim]`.
    /// - Throws: `TilingOptionError` for tiling options that cannot tile these frames;
    ///   `FormatError` naming the model file for frames, latents or prompt embeddings it cannot run.
    public func restorePair(frames: Tensor, latents: Tensor, promptEmbeds: Tensor, tiling: TilingOptions) throws -> Outputs {
        guard frames.rank == 4, frames.shape[0] == 2, frames.shape[1] == 3 else {
            throw FormatError(.invalidModel, file: model.path, "cannot restore a frame pair from frames of shape \(frames.shape); expected [2, 3, H, W] (previous and current frame)")
        }
        let (height, width) = (frames.shape[2], frames.shape[3])
        let factor = requirements.vaeFactor
        // The size grid only: the memory a pair needs depends on the tiling, which the caller's
        // estimate accounts for.
        if height < requirements.minimumSide || width < requirements.minimumSide
            || height % requirements.step != 0 || width % requirements.step != 0,
            let problem = requirements.problem(frames: 2, height: height, width: width) {
            throw FormatError(.invalidModel, file: model.path, "cannot run these frames: \(problem)")
        }
        let channels = decoder.config.latentChannels
        guard latents.shape == [2, channels, height / factor, width / factor] else {
            throw FormatError(.invalidModel, file: model.path, "cannot restore a frame pair from latents of shape \(latents.shape); frames of \(width)×\(height) have latents [2, \(channels), \(height / factor), \(width / factor)] (encode the two frames with this model)")
        }
        if let problem = promptEmbedsProblem(promptEmbeds.shape, pairs: 1) {
            throw FormatError(.invalidModel, file: model.path, "cannot run these prompt embeddings: \(problem)")
        }
        let (h, w) = (latents.shape[2], latents.shape[3])
        try tiling.validate(latentHeight: h, latentWidth: w)
        let grid = LatentTileGrid(height: h, width: w, tile: tiling.latentTile, overlap: tiling.latentOverlap)

        var timings = PhaseTimings()
        let unetInput: Tensor?, unetOutput: Tensor, encoded: Tensor
        if !grid.isTiled {
            let step = try predict(frames: frames, latents: latents, promptEmbeds: promptEmbeds, timings: &timings)
            (unetInput, unetOutput, encoded) = (step.unetInput, step.unetOutput, step.fused)
        } else {
            var blender = LatentTileBlender(grid: grid, channels: channels)
            let tile = grid.tile
            for (y, x) in grid.offsets {
                let step = try predict(
                    frames: frames.crop(y: y * factor, x: x * factor, height: tile * factor, width: tile * factor),
                    latents: latents.crop(y: y, x: x, height: tile, width: tile),
                    promptEmbeds: promptEmbeds, timings: &timings)
                blender.add(prediction: step.unetOutput, encoded: step.fused)
            }
            (unetInput, (unetOutput, encoded)) = (nil, blender.finish())
        }
        let x0 = Self.denoised(encoded: encoded, prediction: unetOutput)
        let decoded = timings.measure("vae_decoder") {
            VAEDecoder.clampFrames(decodeLatents(x0, tileSize: tiling.vaeDecoderTile))
        }
        return Outputs(latents: latents, unetInput: unetInput, unetOutput: unetOutput, x0: x0, frames: decoded,
                       timings: timings.phases)
    }
}

/// Wall seconds per phase, summed over repeats (tiles), in the order phases first ran.
struct PhaseTimings {
    private(set) var phases: [(String, Double)] = []

    mutating func measure<T>(_ phase: String, _ work: () throws -> T) rethrows -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        defer {
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if let i = phases.firstIndex(where: { $0.0 == phase }) {
                phases[i].1 += seconds
            } else {
                phases.append((phase, seconds))
            }
        }
        return try work()
    }
}

extension DLoRALPipeline {
    /// Why prompt embeddings of `shape` do not fit this model's UNet, or nil: they must be
    /// [1, S ≥ 1, cross_attention_dim] (one prompt shared by every frame pair) or have one row
    /// per pair (`pairs`, when given).
    public func promptEmbedsProblem(_ shape: [Int], pairs: Int? = nil) -> String? {
        let width = unet.config.crossAttentionDim
        guard shape.count == 3, shape[0] == 1 || shape[0] == pairs, shape[1] >= 1, shape[2] == width else {
            return "shape \(shape); this model's UNet takes [1, S, \(width)] (S ≥ 1 tokens, 77 for a CLIP prompt; cross_attention_dim \(width))"
        }
        return nil
    }

    /// An input (frames, prompt embeddings) holding NaN or ±inf would only surface as
    /// non-finite outputs far downstream: it is refused up front, with its count.
    public static func nonFiniteProblem(_ input: Tensor) -> String? {
        guard let index = input.data.firstIndex(where: { !$0.isFinite }) else { return nil }
        let count = input.data[index...].count(where: { !$0.isFinite })
        return "holds \(count) non-finite value\(count == 1 ? "" : "s") (the first, \(input.data[index]), at element \(index)); inputs must be finite numbers"
    }
}

extension Tensor {
    /// Items `range` of the batch axis.
    func frames(_ range: Range<Int>) -> Tensor {
        let size = count / max(shape[0], 1)
        var newShape = shape
        newShape[0] = range.count
        return Tensor(shape: newShape, data: Array(data[(range.lowerBound * size)..<(range.upperBound * size)]))
    }

    /// [B, C1, …] and [B, C2, …] joined along the channel axis into [B, C1 + C2, …].
    static func concatenateChannels(_ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.rank >= 2 && a.shape[0] == b.shape[0] && Array(a.shape.dropFirst(2)) == Array(b.shape.dropFirst(2)),
                     "cannot join \(a.shape) and \(b.shape) along channels")
        let batch = a.shape[0]
        let plane = a.shape.dropFirst(2).reduce(1, *)
        let (ca, cb) = (a.shape[1], b.shape[1])
        var data = [Float]()
        data.reserveCapacity(a.count + b.count)
        for n in 0..<batch {
            data.append(contentsOf: a.data[(n * ca * plane)..<((n + 1) * ca * plane)])
            data.append(contentsOf: b.data[(n * cb * plane)..<((n + 1) * cb * plane)])
        }
        var shape = a.shape
        shape[1] = ca + cb
        return Tensor(shape: shape, data: data)
    }
}
