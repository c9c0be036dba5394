import DLoRALFormats
import Dispatch

/// Restores a clip pair by pair as upstream's test_DLoRAL.py does, holding only the previous
/// frame (prepared, as model input, and its latent) between pairs: memory does not grow with the
/// clip's length.
///
/// Per frame: FramePreparation (enlarge small inputs, ×upscale bicubic, Lanczos to a multiple of
/// 8), the model input, its latent (VAE encoder, tiled per the options). Per pair (previous,
/// current): `DLoRALPipeline.restorePair`, the 8-bit output image, the colour fix against the
/// prepared current frame, and the resize back of enlarged inputs.
public final class ClipRestorer {
    public let pipeline: DLoRALPipeline
    public let options: RunOptions
    public let promptEmbeds: Tensor

    /// One frame ready to be either side of a pair.
    public struct Frame: Sendable {
        public var index: Int
        public var prepared: PreparedFrame
        /// [1, 3, H, W] in [-1, 1].
        public var input: Tensor
        /// [1, 4, H/8, W/8].
        public var latent: Tensor
    }

    /// One restored pair.
    public struct Pair: Sendable {
        /// The index of the current frame, which the output restores.
        public var index: Int
        public var outputs: DLoRALPipeline.Outputs
        /// What is saved: colour-fixed and resized back.
        public var image: RGBImage
        /// The 8-bit output before the colour fix, and the prepared frame it is fixed against.
        public var beforeColorFix: RGBImage
        public var colorSource: RGBImage
        public var colorFix: ColorFixMode
        public var enlarged: Bool

        /// How far apart this saved frame and another run's may be when their 8-bit outputs
        /// before the colour fix differ by at most one level (`ColorFix.levelBound`). Computed on
        /// demand: only verification needs it.
        public var levelBound: Int {
            ColorFix.levelBound(colorFix, target: beforeColorFix, source: colorSource, enlarged: enlarged)
        }
    }

    public init(pipeline: DLoRALPipeline, options: RunOptions, promptEmbeds: Tensor) {
        self.pipeline = pipeline
        self.options = options
        self.promptEmbeds = promptEmbeds
    }

    public func frame(_ image: RGBImage, index: Int) -> Frame {
        let prepared = options.preparation.prepare(image)
        let input = FramePreparation.modelInput(prepared.image)
        return Frame(index: index, prepared: prepared, input: input, latent: pipeline.encode(input, tiling: options.tiling))
    }

    public func restore(previous: Frame, current: Frame) throws -> Pair {
        let frames = Tensor(shape: [2] + Array(current.input.shape.dropFirst()), data: previous.input.data + current.input.data)
        let latents = Tensor(shape: [2] + Array(current.latent.shape.dropFirst()), data: previous.latent.data + current.latent.data)
        let outputs = try pipeline.restorePair(frames: frames, latents: latents, promptEmbeds: promptEmbeds, tiling: options.tiling)
        let restored = FramePreparation.outputImage(outputs.frames, frame: 0)
        let fixed = ColorFix.apply(options.colorFix, target: restored, source: current.prepared.image)
        return Pair(index: current.index, outputs: outputs, image: options.preparation.finish(fixed, for: current.prepared),
                    beforeColorFix: restored, colorSource: current.prepared.image, colorFix: options.colorFix,
                    enlarged: current.prepared.enlarged)
    }

    /// What happened to one output frame, for progress.
    public struct Progress: Sendable {
        public var index: Int
        public var done: Int
        public var total: Int
        public var skipped: Bool
        public var seconds: Double
        public var path: String?
    }

    public struct Summary: Sendable {
        public var range: Range<Int>
        public var restored: [Int]
        public var skipped: [Int]
        public var paths: [String]
        /// Wall seconds over the restored frames only.
        public var seconds: Double
    }

    /// Restores output frames `range` of `source` into `sink`: frame range.lowerBound − 1 is read
    /// as the previous frame. With `resume`, frames the sink already has are skipped (the latent
    /// of the frame before the next missing one is then computed again).
    public func run(source: FrameSource, range: Range<Int>, sink: FrameSink?, resume: Bool,
                    onFrame: ((Frame) throws -> Void)? = nil, onPair: ((Pair) throws -> Void)? = nil,
                    progress: ((Progress) -> Void)? = nil) throws -> Summary {
        precondition(range.lowerBound >= 1 && range.upperBound <= source.frameCount)
        let start = DispatchTime.now().uptimeNanoseconds
        var previousImage: RGBImage? = try source.read(range.lowerBound - 1)
        var previous: Frame?
        var summary = Summary(range: range, restored: [], skipped: [], paths: [], seconds: 0)
        var done = 0
        for index in range {
            let image = try source.read(index)
            let name = source.outputName(index)
            if resume, let sink, sink.exists(name: name) {
                summary.skipped.append(index)
                previousImage = image
                previous = nil
                done += 1
                progress?(Progress(index: index, done: done, total: range.count, skipped: true, seconds: 0, path: nil))
                continue
            }
            let frameStart = DispatchTime.now().uptimeNanoseconds
            if previous == nil, let previousImage {
                let made = frame(previousImage, index: index - 1)
                try onFrame?(made)
                previous = made
            }
            previousImage = nil
            let current = frame(image, index: index)
            try onFrame?(current)
            let pair = try restore(previous: previous!, current: current)
            try onPair?(pair)
            var path: String?
            if let sink {
                path = try sink.write(pair.image, name: name)
            }
            summary.restored.append(index)
            previous = current
            done += 1
            progress?(Progress(index: index, done: done, total: range.count, skipped: false,
                               seconds: Double(DispatchTime.now().uptimeNanoseconds - frameStart) / 1e9, path: path))
        }
        if let sink { summary.paths = try sink.finish() }
        summary.seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return summary
    }
}

/// Prompt embeddings from a file (`--prompt-embeds`) or those baked into the `.dlrt`.
public enum PromptEmbeddings {
    /// - Parameter pairs: a reference may hold one row per pair.
    public static func load(file: String?, pipeline: DLoRALPipeline) throws -> Tensor {
        if let file {
            let table = try SafetensorsFile(path: file).table
            let name = table["prompt_embeds"] != nil ? "prompt_embeds" : table.count == 1 ? table.tensors.keys.first : nil
            guard let name, let view = table[name] else {
                throw FormatError(.invalidModel, file: file, "expected one tensor (or one named prompt_embeds) [1, 77, C]")
            }
            if let problem = pipeline.promptEmbedsProblem(view.shape) {
                throw FormatError(.invalidModel, file: file, tensor: name, problem)
            }
            let prompt = Tensor(view)
            if let problem = DLoRALPipeline.nonFiniteProblem(prompt) {
                throw FormatError(.invalidModel, file: file, tensor: name, problem)
            }
            return prompt
        }
        if let baked = pipeline.model.defaultPromptEmbeds {
            if let problem = pipeline.promptEmbedsProblem(baked.shape) {
                throw FormatError(.invalidModel, file: pipeline.model.path, tensor: "prompt_embeds", problem)
            }
            return baked
        }
        throw FormatError(.invalidModel, file: pipeline.model.path, "has no default prompt embeddings; pass --prompt-embeds <file> (or bake them in with dloral-convert quantize --prompt-embeds)")
    }
}

extension ClipRestorer {
    /// Checks, before anything is decoded or allocated for the frames, that `source`'s frames
    /// prepared with `options` fit the model and this machine (two frames and one pair at a time).
    /// - Returns: the size the model runs at and the size of the frames written.
    public static func check(source: FrameSource, pipeline: DLoRALPipeline, options: RunOptions) throws
        -> (prepared: (width: Int, height: Int), output: (width: Int, height: Int))
    {
        let prep = options.preparation
        let size = prep.preparedSize(width: source.width, height: source.height)
        let requirements = pipeline.requirements
        if size.width < requirements.minimumSide || size.height < requirements.minimumSide {
            throw FormatError(.invalidModel, file: source.path, "frames are \(source.width)×\(source.height), prepared at \(size.width)×\(size.height); this model needs at least \(requirements.minimumSide)×\(requirements.minimumSide) (\(requirements.gridReason))")
        }
        if let problem = requirements.memoryProblem(frames: 2, height: size.height, width: size.width, upscale: prep.upscale) {
            throw FormatError(.invalidModel, file: source.path, "frames are \(source.width)×\(source.height), prepared at \(size.width)×\(size.height): \(problem)")
        }
        let factor = requirements.vaeFactor
        do {
            try options.tiling.validate(latentHeight: size.height / factor, latentWidth: size.width / factor)
        } catch {
            throw FormatError(.invalidModel, file: source.path, "frames are \(source.width)×\(source.height), prepared at \(size.width)×\(size.height): \(error)")
        }
        let output = size.enlarged ? (source.width * prep.upscale, source.height * prep.upscale) : (size.width, size.height)
        return ((size.width, size.height), output)
    }
}
