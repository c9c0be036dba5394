import ArgumentParser
import DLoRALConvert
import DLoRALEngine
import DLoRALFormats
import Dispatch
import Foundation

/// `dloral-run`: restores a clip (a folder of frames or a video) with a `.dlrt`, as upstream's
/// test_DLoRAL.py does, frame by frame.
public struct RunCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "dloral-run",
        abstract: "Restore a clip (a folder of frames or a video) with a .dlrt model, as upstream DLoRAL runs it.",
        discussion: """
            Frames are prepared as upstream's test_DLoRAL.py does (inputs under --process-size / \
            --upscale a side enlarged first, ×--upscale with Pillow's bicubic, Lanczos to a multiple \
            of 8), restored pair by pair (the latent tiled as upstream when it exceeds --latent-tile², \
            the VAE tiled past its tile sizes), colour-fixed against the prepared input frame and \
            written one PNG per frame after the first (a folder input keeps each frame's name, a \
            video input gives frame_0001.png …), or as one video when --output ends in .mp4, .mkv, \
            .mov, .avi or .webm. Memory does not grow with the clip's length. Videos go through \
            ffmpeg (apt-get install ffmpeg); folders of PNG or JPEG frames need nothing (JPEGs are \
            decoded with libjpeg-turbo to Pillow's bytes).

            Each frame is written atomically: an interrupted run leaves only complete frames, and \
            --resume continues it. --frames START:END restores output frames START to END−1 only, \
            reading frame START−1 as the previous one, so shards give exactly one run's frames.

            Exit 0 when every frame is written, 2 on bad input (checked before anything runs: \
            sizes, memory, outputs that exist or are inputs). DLORAL_KERNELS=<level> caps the CPU \
            kernels (docs/kernel-levels.md).
            """,
        version: ToolVersion.string)

    @Argument(help: "The runtime file (.dlrt).")
    var model: String

    @Option(help: ArgumentHelp("A folder of PNG or JPEG frames in name order, or a video file.", valueName: "folder|video"))
    var input: String

    @Option(help: ArgumentHelp("A folder for the restored PNG frames (created if needed), or a video file (.mp4, .mkv, .mov, .avi, .webm).", valueName: "folder|video"))
    var output: String

    @OptionGroup(title: "Preparation, tiling and colour fix (upstream's defaults)")
    var runOptions: RunOptionFlags

    @Option(name: .customLong("prompt-embeds"), help: ArgumentHelp("Prompt embeddings ([1, 77, C] safetensors) if the file has none baked in.", valueName: "file"))
    var promptEmbeds: String?

    @Option(help: ArgumentHelp("Only output frames START to END−1 (END left out: to the end); frame START−1 is read as the previous frame.", valueName: "START:END"))
    var frames: String?

    @Flag(help: "Skip output frames already in the --output folder.")
    var resume = false

    @Flag(help: "Replace output files of the same names (never an input).")
    var overwrite = false

    @Flag(help: "Print one JSON summary on stdout.")
    var json = false

    static let videoExtensions = ["mp4", "mkv", "mov", "avi", "webm"]

    var outputIsVideo: Bool { Self.videoExtensions.contains((output as NSString).pathExtension.lowercased()) }

    var options: RunOptions { runOptions.options }

    public init() {}

    /// Parses and runs, with usage errors exiting 2 (README.md).
    public static func main() { CommandLineMain.run(Self.self) }

    public func validate() throws {
        if let problem = KernelLevel.environmentProblem() { throw ValidationError(problem) }
        if let frames, case .failure(let error) = FrameRange.parse(frames) {
            throw ValidationError(error.message)
        }
        if resume && overwrite {
            throw ValidationError("--resume keeps the frames already written and --overwrite replaces them: give one")
        }
        if resume && outputIsVideo {
            throw ValidationError("--resume needs a folder --output (a video is written in one piece); write frames to a folder, or run again without --resume")
        }
    }

    public func run() throws {
        let tool = "dloral-run"
        do {
            let inputs = [model, input] + [promptEmbeds].compactMap { $0 }
            try OutputPath.check(output, inputs: inputs, overwrite: nil, replacesFolder: false, isFile: outputIsVideo)
            let source = try FrameSources.open(input)
            let range = try (frames.flatMap { try? FrameRange.parse($0).get() } ?? FrameRange(start: 1, end: nil))
                .outputs(of: source.frameCount, file: input)
            // ffmpeg for a video output is looked for before the model loads (nothing is written yet).
            let video = outputIsVideo ? try VideoSink(path: output, frameRate: source.frameRate) : nil
            let runtime = try RuntimeModel(file: try DLRTFile(path: model))
            if runtime.cfr.count == 0 {
                Console.error(FormatError.escapingControls("\(tool): warning: \(model) has no CFR weights; running without frame alignment"))
            }
            let pipeline = try DLoRALPipeline(model: runtime)
            let prompt = try PromptEmbeddings.load(file: promptEmbeds, pipeline: pipeline)
            let sizes = try ClipRestorer.check(source: source, pipeline: pipeline, options: options)
            // Every file to be written is checked before the model runs.
            let sink: FrameSink
            if let video {
                try OutputPath.check(output, inputs: inputs, overwrite: overwrite ? nil : false, isFile: true)
                sink = video
            } else {
                for index in range where !resume {
                    try OutputPath.check((output as NSString).appendingPathComponent(source.outputName(index)), option: "--output",
                                         inputs: inputs, overwrite: overwrite ? nil : false, isFile: true)
                }
                sink = try FolderSink(folder: output)
            }
            let restorer = ClipRestorer(pipeline: pipeline, options: options, promptEmbeds: prompt)
            let progress = Console.stderrIsTerminal ? RunProgress(tool: tool) : nil
            let summary = try restorer.run(source: source, range: range, sink: sink, resume: resume,
                                           progress: { progress?.draw($0) })
            progress?.finish()
            let perFrame = summary.restored.isEmpty ? 0 : summary.seconds / Double(summary.restored.count)
            if json {
                print(JSONValue.object([
                    ("frames", .int(summary.restored.count)),
                    ("skipped", .int(summary.skipped.count)),
                    ("range", .array([.int(range.lowerBound), .int(range.upperBound)])),
                    ("input", .string(input)), ("output", .string(output)),
                    ("width", .int(sizes.output.width)), ("height", .int(sizes.output.height)),
                    ("model_width", .int(sizes.prepared.width)), ("model_height", .int(sizes.prepared.height)),
                    ("seconds", .number(String(format: "%.3f", summary.seconds))),
                    ("seconds_per_frame", .number(String(format: "%.3f", perFrame))),
                    ("outputs", .array(summary.paths.map { .string($0) })),
                    ("options", options.json),
                    ("scheme", .string(runtime.weights.rawValue)),
                    ("kernels", .string(KernelLevel.current)),
                ]).prettyPrinted())
            }
            var line = String(format: "%@: restored %@ (%d×%d) into %@ in %.2f s (%.2f s per frame)", tool,
                              Wording.count(summary.restored.count, "frame"), sizes.output.width, sizes.output.height,
                              FormatError.escapingControls(output), summary.seconds, perFrame)
            if !summary.skipped.isEmpty { line += "; \(summary.skipped.count) already there (--resume)" }
            Console.error(line)
        } catch {
            ErrorReporting.exit(for: error, tool: tool, file: model)
        }
    }
}

/// The options that decide the pixels (`RunOptions`), shared by dloral-run and dloral-verify --against.
public struct RunOptionFlags: ParsableArguments {
    @Option(name: .customLong("latent-tile"), help: "Latent tile side (tiling starts when h·w > tile²).")
    var latentTile = 96

    @Option(name: .customLong("latent-overlap"), help: "Overlap of latent tiles (less than --latent-tile).")
    var latentOverlap = 32

    @Option(name: .customLong("vae-encoder-tile"), help: "VAE encoder tile in pixels (upstream's README runs 4096).")
    var vaeEncoderTile = 1024

    @Option(name: .customLong("vae-decoder-tile"), help: "VAE decoder tile in latent pixels.")
    var vaeDecoderTile = 224

    @Option(name: .customLong("color-fix"), help: ArgumentHelp("Colour fix of each output against its prepared input frame.", valueName: "adain|wavelet|none"))
    var colorFix = "adain"

    @Option(help: "Upscale factor.")
    var upscale = 4

    @Option(name: .customLong("process-size"), help: "Inputs with a side under process-size / upscale are enlarged first (and the output resized back to upscale × their size).")
    var processSize = 512

    public init() {}

    var options: RunOptions {
        RunOptions(tiling: TilingOptions(latentTile: latentTile, latentOverlap: latentOverlap, vaeEncoderTile: vaeEncoderTile, vaeDecoderTile: vaeDecoderTile),
                   colorFix: ColorFixMode(rawValue: colorFix) ?? .adain,
                   preparation: FramePreparation(upscale: upscale, processSize: processSize))
    }

    /// The flags given on the command line, for "applies only with" messages.
    var given: [String] {
        let defaults = RunOptions()
        return [("--latent-tile", latentTile != defaults.tiling.latentTile), ("--latent-overlap", latentOverlap != defaults.tiling.latentOverlap),
                ("--vae-encoder-tile", vaeEncoderTile != defaults.tiling.vaeEncoderTile), ("--vae-decoder-tile", vaeDecoderTile != defaults.tiling.vaeDecoderTile),
                ("--color-fix", colorFix != defaults.colorFix.rawValue), ("--upscale", upscale != defaults.preparation.upscale),
                ("--process-size", processSize != defaults.preparation.processSize)].filter(\.1).map(\.0)
    }

    public func validate() throws {
        guard ColorFixMode(rawValue: colorFix) != nil else {
            throw ValidationError("--color-fix '\(colorFix)' is not a colour fix; use adain (upstream's default), wavelet or none")
        }
        if let problem = options.problem {
            throw ValidationError("\(problem) (--latent-tile, --latent-overlap, --vae-encoder-tile, --vae-decoder-tile, --upscale, --process-size)")
        }
    }
}

/// One line on stderr per frame, redrawn in place, with the time per frame and an ETA.
final class RunProgress {
    let tool: String
    var seconds = 0.0
    var restored = 0

    init(tool: String) { self.tool = tool }

    func draw(_ p: ClipRestorer.Progress) {
        if !p.skipped {
            seconds += p.seconds
            restored += 1
        }
        let perFrame = restored > 0 ? seconds / Double(restored) : 0
        let left = Double(p.total - p.done) * perFrame
        let eta = left >= 3600 ? String(format: "%dh%02dm", Int(left) / 3600, Int(left) % 3600 / 60)
            : String(format: "%dm%02ds", Int(left) / 60, Int(left) % 60)
        fputs(String(format: "\r\u{1B}[K%@: frame %d (%d/%d) %@ %.2f s/frame, ETA %@", tool, p.index, p.done, p.total,
                     p.skipped ? "already there" : "restored", perFrame, eta), stderr)
    }

    func finish() { fputs("\r\u{1B}[K", stderr) }
}
