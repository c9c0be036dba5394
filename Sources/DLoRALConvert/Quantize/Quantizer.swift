import CKernels
import DLoRALFormats
import Foundation

/// `dloral-convert quantize` as a library call: reads a merged folder (`unet/`, `vae/`, `cfr/`,
/// `dloral.json`) and writes one `.dlrt` (Formats/dlrt.md), one tensor at a time.
public enum Quantizer {
    static let componentOrder: [ModelComponent] = [.unet, .vae, .cfr]

    /// Storage decision for one tensor under the options.
    static func plan(name: String, view: TensorView, options: QuantizeOptions) -> DLRTWriter.Plan {
        let count = view.elementCount
        let quantizable = view.dtype.isFloatingPoint && (view.shape.count == 2 || view.shape.count == 4)
            && name.hasSuffix(".weight") && !options.keeps(name)
        var plan: DLRTWriter.Plan
        if options.weights == .int8 && quantizable {
            let block = options.granularity.block
            let k = count / max(view.shape[0], 1)
            let kp = Int8Quantizer.paddedK(k, block: block)
            plan = DLRTWriter.Plan(name: name, shape: view.shape, dtype: .int8, scheme: block == 0 ? .int8Channel : .int8Block,
                                   layout: .rowsK32, rawBytes: view.shape[0] * kp, compression: options.compress ? .zstd : .none)
            plan.block = block
            plan.k = k
            plan.kPadded = kp
            plan.scalesShape = block == 0 ? [view.shape[0]] : [view.shape[0], kp / block]
            plan.activations = options.activations(for: name)
        } else {
            let wide = !view.dtype.isFloatingPoint ? view.dtype
                : (options.weights == .fp16 && !options.keeps(name) && view.shape.count >= 2 && name != "prompt_embeds") ? DType.float16 : .float32
            let storage: DType = [.float32, .float16, .int8].contains(wide) ? wide : .float32
            plan = DLRTWriter.Plan(name: name, shape: view.shape, dtype: storage, scheme: .none, layout: .torch,
                                   rawBytes: count * storage.byteSize, compression: options.compress ? (storage == .int8 ? .zstd : .zstdShuffle) : .none)
        }
        return plan
    }

    static func produce(_ plan: DLRTWriter.Plan, view: TensorView) throws -> DLRTWriter.Produced {
        // fp32 sources are read in place when contiguous and aligned; others converted once.
        if view.dtype == .float32, let bytes = view.contiguousBytes,
            Int(bitPattern: bytes.baseAddress) % MemoryLayout<Float>.alignment == 0
        {
            return try produce(plan, view: view, values: bytes.bindMemory(to: Float.self))
        }
        let values = view.toFloat32()
        return try values.withUnsafeBufferPointer { try produce(plan, view: view, values: $0) }
    }

    /// Refuses a source tensor holding NaN or ±inf: int8 would silently turn them into scales and
    /// codes, fp16 / fp32 would carry them into every frame.
    static func checkFinite(_ plan: DLRTWriter.Plan, view: TensorView, values: UnsafeBufferPointer<Float>) throws {
        guard view.dtype.isFloatingPoint, let index = values.firstIndex(where: { !$0.isFinite }) else { return }
        let count = values[index...].count(where: { !$0.isFinite })
        throw FormatError(.invalidModel, file: view.storage.origin, tensor: plan.name,
                          "holds \(count) non-finite value\(count == 1 ? "" : "s") (the first, \(values[index]), at element \(index)); a model's weights and prompt embeddings must be finite numbers: fix or re-export the source")
    }

    /// Largest |value|, for the error naming an overflow.
    static func largestMagnitude(_ values: UnsafeBufferPointer<Float>) -> Float {
        values.reduce(Float(0)) { max($0, abs($1)) }
    }

    static func produce(_ plan: DLRTWriter.Plan, view: TensorView, values: UnsafeBufferPointer<Float>) throws -> DLRTWriter.Produced {
        try checkFinite(plan, view: view, values: values)
        switch plan.layout {
        case .rowsK32:
            let result = Int8Quantizer.quantize(values, shape: plan.shape, block: plan.block)
            // A scale is max|w| / 127 in float32: finite for finite weights, but a group whose
            // largest |w| is below 127 × the smallest subnormal gets a zero scale and loses its values.
            if let bad = result.scales.firstIndex(where: { !$0.isFinite || $0 <= 0 }) {
                throw FormatError(.invalidModel, file: view.storage.origin, tensor: plan.name,
                                  "int8 scale \(bad) is \(result.scales[bad]) (largest |value| \(largestMagnitude(values))); int8 scales must be finite and positive: keep this tensor fp32 with --keep '\(plan.name)'")
            }
            return DLRTWriter.Produced(data: result.rows, scales: result.scales, sqnrDB: result.sqnrDB)
        case .torch:
            switch plan.dtype {
            case .float32:
                return DLRTWriter.Produced(data: [UInt8](UnsafeRawBufferPointer(values)))
            case .float16:
                let data = DTypeConversion.encode(values, as: .float16)
                var back = [Float](repeating: 0, count: values.count)
                var energy: [Double] = [0, 0]
                data.withUnsafeBytes { raw in
                    back.withUnsafeMutableBufferPointer {
                        dloral_f16_to_f32(dloral_kernels_auto(), values.count, raw.bindMemory(to: UInt16.self).baseAddress, $0.baseAddress)
                    }
                }
                if back.contains(where: { !$0.isFinite }) {
                    throw FormatError(.invalidModel, file: view.storage.origin, tensor: plan.name,
                                      "largest |value| \(largestMagnitude(values)) exceeds fp16's limit 65504 and would be stored as inf; keep this tensor fp32 with --keep '\(plan.name)'")
                }
                dloral_error_energy(dloral_kernels_auto(), values.count, values.baseAddress, back, &energy)
                return DLRTWriter.Produced(data: data, sqnrDB: Int8Quantizer.sqnr(signal: energy[0], noise: energy[1]))
            default:
                return DLRTWriter.Produced(data: view.contiguousData())
            }
        }
    }

    public static func quantize(
        source: String, output: String, options: QuantizeOptions, progress: ConversionProgress? = nil
    ) throws -> QuantizeReport {
        let model = try CheckpointReader.open(source)
        guard model.format == .diffusersFolder, model.tensors(of: .unet).count > 0 else {
            throw FormatError(.invalidModel, file: source, "expected a merged model folder (unet/, vae/, cfr/) as written by dloral-convert merge; this is \(model.format.rawValue) holding \(model.kinds.joined(separator: ", "))")
        }
        try validateConfigs(model)
        var report = QuantizeReport(output: output, scheme: options.schemeName)
        report.compressed = options.compress
        for component in [ModelComponent.vae, .cfr] where model.tensors(of: component).count == 0 {
            report.warnings.append("\(source) has no \(component.rawValue)/ folder; the .dlrt cannot run the whole DLoRAL step")
        }
        // DLoRAL's step feeds the UNet the current and the aligned previous latent and takes one
        // latent back; another UNet (a plain SD LoRA merge) cannot run it.
        if let unetConfig = model.configs[.unet], let vaeConfig = model.configs[.vae] {
            let latent = vaeConfig["latent_channels"]?.intValue ?? 4
            let input = unetConfig["in_channels"]?.intValue ?? 4, output = unetConfig["out_channels"]?.intValue ?? 4
            if input != 2 * latent || output != latent {
                throw FormatError(.invalidModel, file: FileSystem.join(source, "unet/config.json"),
                                  "is not a DLoRAL model: its UNet takes \(input) channels and returns \(output), but DLoRAL's step feeds it the current and the aligned previous latent (2 × the VAE's \(latent) latent channels) and takes back \(latent); merge DLoRAL's checkpoint (model.pkl) into the base first")
            }
        }

        // Tensors in file order: unet, vae, cfr, then prompt embeddings.
        var items: [(String, TensorView)] = []
        for component in componentOrder {
            for (name, view) in model.tensors(of: component).tensors.sorted(by: { $0.key < $1.key }) {
                items.append(("\(component.rawValue).\(name)", view))
            }
        }
        // A --keep glob that matches nothing is a typo or a name from another naming scheme.
        for glob in options.keep where !items.contains(where: { fnmatch(glob, $0.0, 0) == 0 }) {
            throw FormatError(.invalidModel, file: source,
                              "--keep '\(glob)' matches no tensor; globs match canonical names such as 'unet.conv_in.weight' or 'cfr.*' (list them with dloral-convert inspect \(source))")
        }
        var promptName: JSONValue = .null
        if let path = options.promptEmbeds {
            let embeds = try SafetensorsFile(path: path).table
            guard let view = embeds["prompt_embeds"] ?? (embeds.count == 1 ? embeds.tensors.values.first : nil) else {
                throw FormatError(.invalidModel, file: path, "expected one tensor (or one named prompt_embeds) of shape [1, 77, C]")
            }
            let cross = model.configs[.unet]?["cross_attention_dim"]?.intValue
            guard view.shape.count == 3, view.shape[0] == 1, view.shape[1] >= 1, view.shape[2] >= 1, cross == nil || view.shape[2] == cross,
                view.dtype.isFloatingPoint
            else {
                throw FormatError(.invalidModel, file: path, tensor: "prompt_embeds",
                                  "shape \(view.shape) \(view.dtype.rawValue); expected floating [1, 77, \(cross.map(String.init) ?? "C")] (at least 1 token) matching the UNet's cross_attention_dim")
            }
            items.append(("prompt_embeds", view))
            promptName = .string("prompt_embeds")
        }

        let plans = items.map { plan(name: $0.0, view: $0.1, options: options) }
        var viewsByName: [String: TensorView] = [:]
        for (name, view) in items { viewsByName[name] = view }
        let views = viewsByName
        let mergeRecord = FileSystem.join(source, "dloral.json")
        let mergeProvenance = (try? JSONValue.read(path: mergeRecord)) ?? .null
        // The source by content (the digest of its merge record), never by the folder's name: the
        // same content must give the same bytes whatever its folder is called.
        let sourceDigest: JSONValue = (try? FileDigest.sha256(path: mergeRecord)).map { .string("sha256:\($0.hex)") } ?? .null
        let metadata: [(String, JSONValue)] = [
            ("format", .string("dlrt")),
            ("configs", .object(componentOrder.compactMap { c in model.configs[c].map { (c.rawValue, $0) } })),
            ("quantization", .object([
                ("weights", .string(options.weights.rawValue)),
                ("int8_granularity", .string(options.granularity.rawValue)),
                ("activations", .string(options.weights == .int8 ? options.activations.rawValue : "fp32")),
                ("keep", .array((options.defaultKeepGlobs + options.keep).map { .string($0) })),
                ("policy", .string(policyText(options))),
            ] + (options.calibrationRecord.map { [("calibration", $0)] } ?? []))),
            ("provenance", .object([
                ("tool", .string("dloral-convert")),
                ("version", .string(ToolVersion.string)),
                ("command", .string("quantize")),
                ("source", sourceDigest),
                ("merge", mergeProvenance),
            ])),
            ("default_prompt_embeds", promptName),
        ]
        progress?.begin(totalBytes: plans.reduce(0) { $0 + $1.rawBytes })
        let (entries, size) = try DLRTWriter.write(to: output, metadata: metadata, plans: plans, produce: { plan in
            let view = views[plan.name]!
            defer { view.storage.releasePages() }
            return try produce(plan, view: view)
        }, progress: { plan, _ in progress?.advance(tensor: plan.name, bytes: plan.rawBytes) })
        progress?.finish()
        report.bytes = size
        if options.weights == .int8 {
            report.activations = QuantizeReport.Activations(
                policy: options.activations.rawValue,
                int16Layers: entries.filter { $0.activations == .int16 }.count,
                int8Layers: entries.filter { $0.activations == .int8 }.count)
        }
        report.sourceDTypes = Set(entries.map { views[$0.name]!.dtype.rawValue }).sorted()
        for entry in entries {
            let sourceBytes = views[entry.name]!.byteCount
            report.sourceBytes += sourceBytes
            report.rawBytes += entry.rawBytes
            report.tensors.append(QuantizeReport.Tensor(
                name: entry.name, dtype: entry.dtype.rawValue, scheme: entry.scheme.rawValue,
                bytes: entry.data.bytes + (entry.scales?.bytes ?? 0), sourceBytes: sourceBytes, sqnrDB: entry.sqnrDB))
        }
        return report
    }

    /// Each part's config must describe its weights: the `.dlrt` carries the configs and the
    /// engine builds the model from them.
    static func validateConfigs(_ model: LoadedCheckpoint) throws {
        for component in componentOrder {
            let table = model.tensors(of: component)
            guard table.count > 0 else { continue }
            let file = model.files.first { $0.hasSuffix("\(component.rawValue)/config.json") }
                ?? FileSystem.join(model.path, "\(component.rawValue)/config.json")
            guard let config = model.configs[component], !model.inferredConfigs.contains(component) else {
                throw FormatError(.invalidModel, file: file, "is missing; the \(component.rawValue) weights need their config (dloral-convert merge writes one)")
            }
            var shapes: ModelConfigValidation.Shapes = [:]
            for (name, view) in table.tensors { shapes[name] = view.shape }
            try ModelConfigValidation.validate(component: component.rawValue, config: config, file: file, against: shapes,
                                               tensorFile: FileSystem.join(model.path, component.rawValue))
        }
    }

    static func policyText(_ options: QuantizeOptions) -> String {
        switch options.weights {
        case .int8:
            let activations: String
            switch options.activations {
            case .fp32: activations = "fp32 activations"
            case .int8, .int16: activations = "UNet/VAE activations quantized per row to \(options.activations.rawValue)"
            case .auto:
                let wide = options.layerActivations.values.filter { $0 == .int16 }.count
                activations = "UNet/VAE activations per row, int16 on \(wide) of \(options.layerActivations.count) layers (calibrated), int8 elsewhere"
            }
            return "Linear and Conv2d weights int8 (\(options.granularity.rawValue)\(options.int8CFR ? ", the CFR's too" : "")), \(activations); norms, biases, the timestep embedding, \(options.int8CFR ? "" : "the CFR, ")prompt embeddings and \(options.keep.isEmpty ? "nothing else" : options.keep.joined(separator: ", ")) fp32"
        case .fp16:
            return "floating tensors fp16; norms, biases, the timestep embedding\(options.keep.isEmpty ? "" : ", " + options.keep.joined(separator: ", ")) and prompt embeddings fp32"
        case .fp32:
            return "everything fp32"
        }
    }
}
