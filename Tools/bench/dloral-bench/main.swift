// dloral-bench: times the engine on a .dlrt without a reference file.
//
//   swift build -c release --product dloral-bench
//   .build/release/dloral-bench unet FILE.dlrt --latent 32 --runs 5 [--json]
//   .build/release/dloral-bench step FILE.dlrt --size 512 --frames 3 --runs 3 [--json]
//
// `unet` runs the UNet alone on a [1, 8, latent, latent] input (as ONNX Runtime runs an exported
// UNet, for Tools/bench/bench_unet_ort.py); `step` runs the whole DLoRAL step on synthetic
// photo-like frames of size × size and reports each phase, and the steady state of a sequence
// (one new frame per step: its encoding, the CFR, the UNet and the decoding). Medians after one
// untimed warm-up; peak RSS from getrusage.
import ArgumentParser
import DLoRALEngine
import DLoRALFormats
import Dispatch
import Foundation

@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dloral-bench", abstract: "Time the DLoRAL engine on a .dlrt.",
        subcommands: [UNetBench.self, StepBench.self])
}

func seconds(_ work: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try work()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

func peakRSSMiB() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

/// Deterministic values in [-1, 1] (a smooth pattern plus texture, like a photo).
func synthetic(_ shape: [Int], seed: UInt64) -> Tensor {
    var state = seed
    let count = shape.reduce(1, *)
    var data = [Float](repeating: 0, count: count)
    let w = shape.last ?? 1, h = shape.count >= 2 ? shape[shape.count - 2] : 1
    for i in 0..<count {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        let noise = Float(Int64(bitPattern: state >> 11) % 1000) / 1000
        let x = Float(i % w) / Float(w), y = Float((i / w) % h) / Float(h)
        data[i] = max(-1, min(1, 0.6 * sinf(6 * x + 3 * y + Float(i / (w * h))) + 0.3 * noise))
    }
    return Tensor(shape: shape, data: data)
}

func promptEmbeds(_ model: RuntimeModel) -> Tensor {
    if let baked = model.defaultPromptEmbeds { return baked }
    let cross = model.configs["unet"]?["cross_attention_dim"]?.intValue ?? 1024
    return synthetic([1, 77, cross], seed: 6)
}

func emit(_ json: Bool, _ pairs: [(String, JSONValue)], text: String) {
    if json {
        print(JSONValue.object(pairs).serialized())
    } else {
        print(text)
    }
}

struct UNetBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unet", abstract: "Time the UNet alone at one latent size.")
    @Argument var model: String
    @Option var latent = 32
    @Option var runs = 5
    @Flag var json = false

    func run() throws {
        let runtime = try RuntimeModel(file: try DLRTFile(path: model))
        let unet = try UNet2DCondition(table: runtime.unet, config: try UNetConfig(json: runtime.configs["unet"]!))
        let x = synthetic([1, 8, latent, latent], seed: 1)
        let prompt = promptEmbeds(runtime)
        var out: Tensor?
        _ = try seconds { out = try unet(x, timestep: 1, encoderHiddenStates: prompt) }
        var times: [Double] = []
        for _ in 0..<max(runs, 1) {
            times.append(try seconds { out = try unet(x, timestep: 1, encoderHiddenStates: prompt) })
        }
        let checksum = out!.data.reduce(0.0) { $0 + Double($1) }
        emit(json, [
            ("model", .string(model)), ("latent", .int(latent)), ("activations", .string(runtime.activations.rawValue)),
            ("median_s", .number(String(format: "%.4f", median(times)))),
            ("runs_s", .array(times.map { .number(String(format: "%.4f", $0)) })),
            ("peak_rss_mib", .number(String(format: "%.0f", peakRSSMiB()))),
            ("checksum", .number(String(format: "%.6g", checksum))),
        ], text: String(format: "%@ UNet at %d×%d latent (%@): median %.3f s of %d (%@), peak RSS %.0f MiB", model, latent, latent,
                        runtime.activations.rawValue, median(times), times.count, times.map { String(format: "%.3f", $0) }.joined(separator: ", "),
                        peakRSSMiB()))
    }
}

struct StepBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "step", abstract: "Time the whole DLoRAL step on synthetic frames.")
    @Argument var model: String
    @Option(help: "Frame height and width (output size; DLoRAL's input after its ×4 upscale).") var size = 512
    @Option(help: "Frames per run (T ≥ 2; T − 1 output frames).") var frames = 2
    @Option var runs = 3
    @Flag var json = false

    func run() throws {
        let runtime = try RuntimeModel(file: try DLRTFile(path: model))
        let pipeline = try DLoRALPipeline(model: runtime)
        let input = synthetic([max(frames, 2), 3, size, size], seed: 5)
        let prompt = promptEmbeds(runtime)
        _ = try pipeline.run(frames: input, promptEmbeds: prompt)
        var walls: [Double] = []
        var phases: [String: [Double]] = [:]
        for _ in 0..<max(runs, 1) {
            var outputs: DLoRALPipeline.Outputs?
            walls.append(try seconds { outputs = try pipeline.run(frames: input, promptEmbeds: prompt) })
            for (phase, value) in outputs!.timings { phases[phase, default: []].append(value) }
        }
        let t = Double(max(frames, 2))
        let m = phases.mapValues(median)
        let steady = (m["vae_encoder"] ?? 0) / t + ((m["cfr"] ?? 0) + (m["unet"] ?? 0) + (m["vae_decoder"] ?? 0)) / (t - 1)
        let order = ["vae_encoder", "cfr", "unet", "vae_decoder"]
        emit(json, [
            ("model", .string(model)), ("size", .int(size)), ("frames", .int(max(frames, 2))),
            ("activations", .string(runtime.activations.rawValue)),
            ("median_s", .number(String(format: "%.3f", median(walls)))),
            ("runs_s", .array(walls.map { .number(String(format: "%.3f", $0)) })),
            ("phase_median_s", .object(order.compactMap { p in m[p].map { (p, .number(String(format: "%.3f", $0))) } })),
            ("steady_state_per_frame_s", .number(String(format: "%.3f", steady))),
            ("peak_rss_mib", .number(String(format: "%.0f", peakRSSMiB()))),
        ], text: String(format: "%@ step, %d frames of %d×%d (%@): median %.2f s; %@; steady state %.2f s per frame; peak RSS %.0f MiB",
                        model, max(frames, 2), size, size, runtime.activations.rawValue, median(walls),
                        order.compactMap { p in m[p].map { "\(p) \(String(format: "%.2f", $0)) s" } }.joined(separator: ", "),
                        steady, peakRSSMiB()))
    }
}
