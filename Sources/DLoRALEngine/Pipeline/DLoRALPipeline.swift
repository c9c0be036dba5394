import Dispatch
import DLoRALFormats

/// The one-step DLoRAL forward pass (README.md, `dloral-verify`) over a whole clip.
///
/// Frames are encoded once each (posterior mean × scaling) and reused by the two pairs they
/// belong to; the CFR aligns each previous latent to its current one; the UNet runs once per pair
/// at timestep 1 on concat(aligned previous, fused current); x0 = fused − UNet output; the decoder
/// maps x0 back to a frame clamped to [-1, 1].
public final class DLoRALPipeline {
    /// Every intermediate the reference files record (`output.*` in Tests/Fixtures/README.md), named as there.
    public struct Outputs: Sendable {
        public var latents: Tensor
        public var unetInput: Tensor
        public var unetOutput: Tensor
        public var x0: Tensor
        public var frames: Tensor
        /// Wall seconds per phase, in order: vae_encoder, cfr (when present), unet, vae_decoder.
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
        let cfrConfig = model.configs["cfr"]
        let cfr = model.cfr.count == 0 ? nil : try CrossFrameRetrieval(
            from: model.cfr, heads: cfrConfig?["attention_heads"]?.intValue ?? 9,
            temperature: Float(cfrConfig?["attention_temperature"]?.doubleValue ?? 3000))
        return (
            try VAEEncoder(table: model.vae, config: vaeConfig),
            try VAEDecoder(table: model.vae, config: vaeConfig),
            cfr,
            try UNet2DCondition(table: model.unet, config: try UNetConfig(json: model.configs["unet"]!))
        )
    }

    /// Runs T frames [T, 3, H, W] in [-1, 1] to T−1 output frames.
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
        var timings: [(String, Double)] = []
        func timed<T>(_ phase: String, _ work: () throws -> T) rethrows -> T {
            let start = DispatchTime.now().uptimeNanoseconds
            defer { timings.append((phase, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)) }
            return try work()
        }
        let latents = timed("vae_encoder") { encoder(frames) }
        let aligned: Tensor, fused: Tensor
        if let cfr {
            let out = timed("cfr") { cfr.run(frames: frames, latents: latents) }
            (aligned, fused) = (out.aligned, out.fused)
        } else {
            (aligned, fused) = (latents.frames(0..<(latents.shape[0] - 1)), latents.frames(1..<latents.shape[0]))
        }
        let unetInput = Tensor.concatenateChannels(aligned, fused)
        let unetOutput = try timed("unet") { try unet(unetInput, timestep: Self.timestep, encoderHiddenStates: promptEmbeds) }
        var x0 = fused
        for i in x0.data.indices { x0.data[i] -= unetOutput.data[i] }
        let decoded = timed("vae_decoder") { VAEDecoder.clampFrames(decoder(x0)) }
        return Outputs(latents: latents, unetInput: unetInput, unetOutput: unetOutput, x0: x0, frames: decoded, timings: timings)
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
