import DLoRALConvert
import DLoRALFormats
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `dloral-convert quantize --activations auto`: quantizes once with int16 activations everywhere
/// into a scratch file, calibrates the per-layer choice on it against the fp32 model
/// (`ActivationCalibration`), then writes the output with the chosen precision per layer.
///
/// Here rather than in DLoRALConvert: it runs the engine (the fp32 reference and the candidate
/// assignments) on the quantizer's output, and the engine is the library that sees both.
public enum CalibratedQuantization {
    /// Frames [T, 3, H, W] and prompt embeddings to calibrate on, and a description for the record.
    public static func inputs(_ path: String, crossDim: Int?, promptEmbeds: String?) throws -> (Tensor, Tensor, String) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw FormatError(.io, file: path, "calibration input not found; give a folder of PNG frames or a reference .safetensors with input.frames")
        }
        var frames: Tensor
        var prompt: (TensorView, String, String)?
        if isDirectory.boolValue {
            frames = try FrameSequence.load(folder: path).frames
        } else {
            let table = try SafetensorsFile(path: path).table
            guard let view = table["input.frames"] else {
                throw FormatError(.invalidModel, file: path, "has no input.frames [T, 3, H, W] to calibrate on (the reference layout in docs/reference-files.md)")
            }
            frames = Tensor(view)
            if let p = table["input.prompt_embeds"] { prompt = (p, path, "input.prompt_embeds") }
        }
        guard frames.rank == 4, frames.shape[0] >= 2, frames.shape[1] == 3, frames.shape[2] % 8 == 0, frames.shape[3] % 8 == 0 else {
            throw FormatError(.invalidModel, file: path, tensor: "input.frames", "shape \(frames.shape); expected [T ≥ 2, 3, H, W] with H and W divisible by 8")
        }
        // --prompt-embeds, when given, is what the file will run with: calibrate on it.
        if let promptEmbeds {
            let table = try SafetensorsFile(path: promptEmbeds).table
            guard let view = table["prompt_embeds"] ?? (table.count == 1 ? table.tensors.values.first : nil) else {
                throw FormatError(.invalidModel, file: promptEmbeds, "expected one tensor (or one named prompt_embeds) of shape [1, 77, C]")
            }
            prompt = (view, promptEmbeds, "prompt_embeds")
        }
        guard let (view, file, name) = prompt else {
            throw FormatError(.invalidModel, file: path,
                              "--activations auto calibrates with the prompt embeddings the model will run with; this has none: pass --prompt-embeds <[1, 77, C] safetensors> (or a reference .safetensors with input.prompt_embeds)")
        }
        let width = crossDim.map(String.init) ?? "C"
        guard view.dtype.isFloatingPoint, view.shape.count == 3, view.shape[0] == 1, view.shape[1] >= 1, crossDim == nil || view.shape[2] == crossDim else {
            throw FormatError(.invalidModel, file: file, tensor: name,
                              "prompt embeddings of shape \(view.shape) \(view.dtype.rawValue); expected floating [1, 77, \(width)] (at least 1 token, width the UNet's cross_attention_dim \(width))")
        }
        let description = "\(path) (\(frames.shape[0]) frames of \(frames.shape[3])×\(frames.shape[2]))"
        return (frames, Tensor(view), description)
    }

    /// - Parameter log: one line per step (what it calibrates on, then `ActivationCalibration`'s).
    public static func quantize(
        source: String, output: String, options: QuantizeOptions, calibration calibrationPath: String, targetPSNR: Double,
        progress: ConversionProgress?, log: (String) -> Void = { _ in }
    ) throws -> QuantizeReport {
        let model = try CheckpointReader.open(source)
        var configs: [String: JSONValue] = [:]
        for (component, config) in model.configs { configs[component.rawValue] = config }
        let (frames, prompt, description) = try inputs(
            calibrationPath, crossDim: configs["unet"]?["cross_attention_dim"]?.intValue, promptEmbeds: options.promptEmbeds)

        // A scratch file with every layer at int16, beside the output (same file system), removed
        // when done and on an interrupt.
        let scratch = output + ".calibration-\(getpid()).dlrt"
        let token = FileGuard.removeOnExit(scratch, kind: .scratch)
        defer {
            unlink(scratch)
            FileGuard.forget(token)
        }
        var wide = options
        wide.activations = .int16
        log("calibrating activations on \(description), target \(targetPSNR) dB")
        _ = try Quantizer.quantize(source: source, output: scratch, options: wide)
        let file = try DLRTFile(path: scratch)
        let reference = try RuntimeModel(
            path: source, unet: model.tensors(of: .unet), vae: model.tensors(of: .vae), cfr: model.tensors(of: .cfr),
            configs: configs)
        let result = try ActivationCalibration.calibrate(
            file: file, reference: reference, frames: frames, prompt: prompt, targetPSNR: targetPSNR,
            log: log)

        var final = options
        final.layerActivations = result.assignment.mapValues { Optional($0) }
        let int16 = result.assignment.values.filter { $0 == .int16 }.count
        final.calibrationRecord = .object([
            ("target_psnr_db", .number(String(format: "%.2f", targetPSNR))),
            ("frames", .string(description.replacingOccurrences(of: calibrationPath, with: PathName.last(calibrationPath)))),
            ("psnr_db", .number(String(format: "%.2f", result.psnrDB))),
            ("all_int8_psnr_db", .number(String(format: "%.2f", result.allInt8PSNR))),
            ("all_int16_psnr_db", .number(String(format: "%.2f", result.allInt16PSNR))),
            ("int16_layers", .int(int16)),
            ("int16_mac_share", .number(String(format: "%.4f", result.int16MACShare))),
            ("layers", .int(result.assignment.count)),
            ("target_reached", .bool(result.targetReached)),
        ])
        var report = try Quantizer.quantize(source: source, output: output, options: final, progress: progress)
        report.activations = QuantizeReport.Activations(
            policy: DLRTActivationPolicy.auto.rawValue, int16Layers: int16, int8Layers: result.assignment.count - int16,
            calibrationPSNR: result.psnrDB, targetPSNR: targetPSNR)
        if !result.targetReached {
            report.warnings.append(String(
                format: "calibration could not reach %.2f dB: int16 activations on every layer give %.2f dB (the int8 weights alone limit it); all layers use int16",
                targetPSNR, result.allInt16PSNR))
        }
        return report
    }
}
