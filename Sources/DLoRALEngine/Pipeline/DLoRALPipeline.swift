import Dispatch
import DLoRALFormats

/// The one-step DLoRAL forward pass (DESIGN §2) over a whole clip.
///
/// Frames are encoded once each (posterior mean × scaling) and reused by the two pairs they
/// belong to; the CFR aligns each previous latent to its current one; the UNet runs once per pair
/// at timestep 1 on concat(aligned previous, fused current); x0 = fused − UNet output; the decoder
/// maps x0 back to a frame clamped to [-1, 1].
public final class DLoRALPipeline {
    /// Every intermediate the reference files record (DESIGN §4), named as there.
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
