import DLoRALFormats
import Dispatch
import Foundation

/// Receives per-tensor progress from long conversions.
public protocol ConversionProgress: AnyObject {
    func begin(totalBytes: Int)
    func advance(tensor: String, bytes: Int)
    func finish()
}

/// The tool's version, recorded in every provenance record.
public enum ToolVersion {
    public static let string = "0.1.0"
}

/// `dloral-convert merge` as a library call: reads the base model and the LoRA checkpoint,
/// merges the selected adapters into the UNet and writes a diffusers folder (`unet/`, `vae/`,
/// `cfr/`, `dloral.json`), streaming one tensor at a time.
public enum Merger {
    public static func merge(
        base basePath: String, lora loraPath: String, output: String, options: MergeOptions,
        progress: ConversionProgress? = nil
    ) throws -> MergeReport {
        let base = try CheckpointReader.open(basePath)
        let lora = try CheckpointReader.open(loraPath)
        // Existence (and --overwrite) is StagedFolder's check; this one keeps the inputs intact.
        try OutputPath.check(output, inputs: [basePath, loraPath] + base.files + lora.files, overwrite: nil)
        let plan = try MergePlan(base: base, lora: lora, output: output, options: options)
        var report = plan.report

        // Provenance hashes run on the second core while the first merges and writes.
        var inputFiles: [String] = []
        for file in base.files + lora.files where !inputFiles.contains(file) { inputFiles.append(file) }
        let hashing = HashJob(paths: inputFiles)

        let folder = try StagedFolder(path: output, overwrite: options.overwrite)
        let components: [(String, [MergePlan.Item], JSONValue?, String)] = [
            ("unet", plan.unet, plan.unetConfig, "diffusion_pytorch_model.safetensors"),
            ("vae", plan.vae, plan.vaeConfig, "diffusion_pytorch_model.safetensors"),
            ("cfr", plan.cfr, plan.cfrConfig, "model.safetensors"),
        ]
        progress?.begin(totalBytes: components.reduce(0) { total, c in
            total + c.1.reduce(0) { $0 + outputBytes($1, options.dtype) }
        })
        for (name, items, config, weightsFile) in components where !items.isEmpty {
            if let config {
                try writeText(config.prettyPrinted() + "\n", to: try folder.path("\(name)/config.json"))
            }
            let written = try writeTensors(items, to: try folder.path("\(name)/\(weightsFile)"), dtype: options.dtype,
                                           overridden: &report.overridden, progress: progress)
            report.tensorsWritten += items.count
            report.bytesWritten += written
        }
        progress?.finish()
        report.inputs = try hashing.wait()
        var names: [String: String] = [:]
        for file in lora.files { names[file] = FileSystem.provenanceName(file, root: lora.path) }
        for file in base.files { names[file] = FileSystem.provenanceName(file, root: base.path) }
        try writeText(provenance(report, base: FileSystem.provenanceName(basePath, root: basePath),
                                 lora: FileSystem.provenanceName(loraPath, root: loraPath), names: names).prettyPrinted() + "\n",
                      to: try folder.path("dloral.json"))
        try folder.commit()
        return report
    }

    static func outputDType(_ item: MergePlan.Item, _ dtype: DType) -> DType {
        item.source.dtype.isFloatingPoint ? dtype : item.source.dtype
    }

    static func outputBytes(_ item: MergePlan.Item, _ dtype: DType) -> Int {
        item.source.elementCount * outputDType(item, dtype).byteSize
    }

    /// Streams `items` into one safetensors file; returns its size.
    static func writeTensors(
        _ items: [MergePlan.Item], to path: String, dtype: DType, overridden: inout [String],
        progress: ConversionProgress?
    ) throws -> Int {
        var byName: [String: MergePlan.Item] = [:]
        for item in items { byName[item.name] = item }
        let entries = items.map { SafetensorsWriter.Entry(name: $0.name, dtype: outputDType($0, dtype), shape: $0.source.shape) }
        var overrides: [String] = []
        try SafetensorsWriter.write(to: path, entries: entries, metadata: [("format", "pt")]) { entry, sink in
            let item = byName[entry.name]!
            // A NaN or inf already in the base would reach every frame the model renders.
            let (count, first) = item.source.nonFinite()
            if count > 0 {
                throw FormatError(.invalidModel, file: item.source.storage.origin, tensor: item.name,
                                  "holds \(count) non-finite value\(count == 1 ? "" : "s") (the first: \(first)); a model's weights must be finite numbers: fix or re-export the source. No output written")
            }
            if let shadowed = item.shadowed, differs(shadowed, item.source) {
                overrides.append(item.name)
            }
            if item.deltas.isEmpty, item.source.dtype == entry.dtype, let bytes = item.source.contiguousBytes {
                try sink(bytes)
            } else if !entry.dtype.isFloatingPoint {
                try item.source.contiguousData().withUnsafeBytes { try sink($0) }
            } else {
                let values = item.deltas.isEmpty ? item.source.toFloat32() : MergeKernel.merged(item)
                try values.withUnsafeBufferPointer { buffer in
                    if entry.dtype == .float32 {
                        if !item.deltas.isEmpty { try checkFinite(buffer, item: item, dtype: entry.dtype) }
                        try sink(UnsafeRawBufferPointer(buffer))
                    } else {
                        let encoded = DTypeConversion.encode(buffer, as: entry.dtype)
                        try checkEncoded(encoded, buffer, item: item, dtype: entry.dtype)
                        try encoded.withUnsafeBytes { try sink($0) }
                    }
                }
            }
            item.source.storage.releasePages()
            item.shadowed?.storage.releasePages()
            for delta in item.deltas {
                delta.down.storage.releasePages()
                delta.up.storage.releasePages()
            }
            progress?.advance(tensor: entry.name, bytes: entry.byteCount)
        }
        overridden += overrides.sorted()
        return ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
    }

    /// Refuses a merged fp32 weight holding inf or NaN: the deltas overflowed float32.
    static func checkFinite(_ values: UnsafeBufferPointer<Float>, item: MergePlan.Item, dtype: DType) throws {
        guard let index = values.firstIndex(where: { !$0.isFinite }) else { return }
        throw nonFinite(item, index: index, value: "\(values[index])", dtype: dtype, count: values.count(where: { !$0.isFinite }))
    }

    /// Refuses an fp16 / bf16 encoding that rounded a finite value to inf (fp16 tops out at 65504).
    static func checkEncoded(_ encoded: [UInt8], _ values: UnsafeBufferPointer<Float>, item: MergePlan.Item, dtype: DType) throws {
        let exponent: UInt16 = dtype == .float16 ? 0x7C00 : 0x7F80
        var first: Int?
        var count = 0
        encoded.withUnsafeBytes { raw in
            for (i, bits) in raw.bindMemory(to: UInt16.self).enumerated() where bits & exponent == exponent {
                if first == nil { first = i }
                count += 1
            }
        }
        guard let index = first else { return }
        throw nonFinite(item, index: index, value: "\(values[index])", dtype: dtype, count: count)
    }

    static func nonFinite(_ item: MergePlan.Item, index: Int, value: String, dtype: DType, count: Int) -> FormatError {
        let what = MergeOptions.spelling(dtype)
        guard !item.deltas.isEmpty else {
            return FormatError(.invalidModel, file: item.sourceFile, tensor: item.name,
                               "\(count) values do not fit \(what) (element \(index) is \(value)); use --dtype fp32 or bf16. No output written")
        }
        let adapters = item.deltas.map { "\($0.adapter) (scale \($0.scale), \($0.sourceKey))" }.joined(separator: ", ")
        return FormatError(.invalidModel, file: item.sourceFile, tensor: item.name,
                           "merging \(adapters) gives \(count) non-finite \(what) values (element \(index): \(value) in fp32); the adapter's values or scale are too large. No output written")
    }

    /// True if two views hold different values (or shapes).
    static func differs(_ a: TensorView, _ b: TensorView) -> Bool {
        guard a.shape == b.shape else { return true }
        if a.dtype == b.dtype, let x = a.contiguousBytes, let y = b.contiguousBytes {
            return x.count != y.count || memcmp(x.baseAddress!, y.baseAddress!, x.count) != 0
        }
        return a.toFloat32() != b.toFloat32()
    }

    static func writeText(_ text: String, to path: String) throws {
        let writer = try AtomicFileWriter(path: path)
        try writer.write(text)
        try writer.commit()
    }

    /// `dloral.json`: where the folder came from and what was done to it. Inputs are recorded
    /// by content (name inside the input, size, SHA-256), never by the paths typed, so the same
    /// inputs give the same bytes from any working directory.
    static func provenance(_ report: MergeReport, base: String, lora: String, names: [String: String]) -> JSONValue {
        .object([
            ("tool", .string("dloral-convert")),
            ("version", .string(ToolVersion.string)),
            ("command", .string("merge")),
            ("base", .string(base)),
            ("lora", .string(lora)),
            ("inputs", .array(report.inputs.map {
                .object([("path", .string(names[$0.path] ?? FileSystem.provenanceName($0.path, root: $0.path))),
                         ("bytes", .int($0.bytes)), ("sha256", .string($0.sha256))])
            })),
            ("stage", .string(report.stage)),
            ("dtype", .string(report.dtype)),
            ("adapters", adaptersJSON(report)),
            ("merged_modules", .int(report.mergedModules)),
            ("tensors_written", .int(report.tensorsWritten)),
            ("overridden", .array(report.overridden.map { .string($0) })),
            ("dropped", .array(report.dropped.map { .object([("name", .string($0.name)), ("reason", .string($0.reason))]) })),
            ("unmatched", .array(report.unmatched.map { .string($0) })),
            ("warnings", .array(report.warnings.map { .string($0) })),
        ])
    }

    public static func adaptersJSON(_ report: MergeReport) -> JSONValue {
        .array(report.adapters.map {
            .object([
                ("name", .string($0.name)), ("weight", .double($0.weight)), ("scale", .double($0.scale)),
                ("alpha", .double($0.alpha)), ("rank", .int($0.rank)), ("modules", .int($0.modules)),
            ])
        })
    }
}

/// Hashes files on background threads: the files are split into two groups of about equal
/// size (largest first), one thread each, so hashing several GB keeps pace with the merge.
final class HashJob: @unchecked Sendable {
    private let group = DispatchGroup()
    private let lock = NSLock()
    private var results: [String: MergeReport.InputFile] = [:]
    private var failure: Error?
    private let order: [String]

    init(paths: [String], threads: Int = 2) {
        order = paths
        let sizes = paths.map { ((try? FileManager.default.attributesOfItem(atPath: $0))?[.size] as? Int) ?? 0 }
        var bins = [[String]](repeating: [], count: max(threads, 1))
        var load = [Int](repeating: 0, count: bins.count)
        for (path, size) in zip(paths, sizes).sorted(by: { $0.1 > $1.1 }) {
            let lightest = load.indices.min { load[$0] < load[$1] }!
            bins[lightest].append(path)
            load[lightest] += size
        }
        for bin in bins where !bin.isEmpty {
            group.enter()
            Thread.detachNewThread {
                defer { self.group.leave() }
                for path in bin {
                    do {
                        let (hex, bytes) = try FileDigest.sha256(path: path)
                        self.lock.lock()
                        self.results[path] = MergeReport.InputFile(path: path, bytes: bytes, sha256: hex)
                        self.lock.unlock()
                    } catch {
                        self.lock.lock()
                        self.failure = self.failure ?? error
                        self.lock.unlock()
                        return
                    }
                }
            }
        }
    }

    /// The digests, in the order the paths were given.
    func wait() throws -> [MergeReport.InputFile] {
        group.wait()
        if let failure { throw failure }
        return order.compactMap { results[$0] }
    }
}
