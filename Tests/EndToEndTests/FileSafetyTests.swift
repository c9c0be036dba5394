import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Inputs that change or are not files, outputs that would destroy inputs, and signals at any
/// moment of a merge: never a signal death, a hang, a destroyed input or a half-written output.
@Suite("file safety", .serialized)
struct FileSafetyTests {
    static let work: URL = {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("dloral-files-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }()

    static let base = "Tests/Fixtures/tiny/base"
    static let lora = "Tests/Fixtures/tiny/model.pkl"

    struct Outcome {
        var status: Int32
        /// Killed by a signal (status is then the signal number).
        var signaled: Bool
        var timedOut: Bool
        var stdout: String
        var stderr: String
        var seconds: Double
    }

    /// Runs a built tool with a time limit (a hang is killed and reported, not waited for) and
    /// optionally sends `signal` after `signalAfter` seconds.
    static func launch(_ tool: String, _ arguments: [String], timeout: Double = 30,
                       signal: (Int32, Double)? = nil, environment: [String: String] = [:],
                       after: (Double, () -> Void)? = nil) throws -> Outcome {
        let process = Process()
        process.executableURL = tool.hasPrefix("/") ? URL(fileURLWithPath: tool) : CommandRunner.binFolder.appendingPathComponent(tool)
        process.arguments = arguments
        process.currentDirectoryURL = CommandRunner.root
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        final class Box: @unchecked Sendable { var data = Data() }
        let outBox = Box(), errBox = Box()
        let group = DispatchGroup()
        let start = Date()
        try process.run()
        group.enter()
        DispatchQueue.global().async { outBox.data = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        group.enter()
        DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let pid = process.processIdentifier
        if let (sig, delay) = signal {
            usleep(useconds_t(delay * 1e6))
            kill(pid, sig)
        }
        if let (delay, action) = after {
            usleep(useconds_t(delay * 1e6))
            action()
        }
        var timedOut = false
        let finished = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { process.waitUntilExit(); finished.signal() }
        if finished.wait(timeout: .now() + timeout) == .timedOut {
            timedOut = true
            kill(pid, SIGKILL)
            finished.wait()
        }
        group.wait()
        return Outcome(status: process.terminationStatus, signaled: process.terminationReason == .uncaughtSignal,
                       timedOut: timedOut, stdout: String(decoding: outBox.data, as: UTF8.self),
                       stderr: String(decoding: errBox.data, as: UTF8.self), seconds: Date().timeIntervalSince(start))
    }

    static func fresh(_ name: String) throws -> URL {
        let folder = work.appendingPathComponent(name)
        try? FileManager.default.removeItem(at: folder)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }

    static func copy(_ fixture: String, to folder: URL) throws -> URL {
        let target = folder.appendingPathComponent((fixture as NSString).lastPathComponent)
        try FileManager.default.copyItem(at: CommandRunner.root.appendingPathComponent(fixture), to: target)
        return target
    }

    static func makeFIFO(_ url: URL) throws {
        try? FileManager.default.removeItem(at: url)
        guard mkfifo(url.path, 0o644) == 0 else { throw CommandFailed(message: "mkfifo \(url.path): \(errno)") }
    }

    /// A merged folder and its fp32 .dlrt, built once.
    static let model: (merged: URL, dlrt: URL) = {
        let folder = try! fresh("model")
        let merged = folder.appendingPathComponent("merged"), dlrt = folder.appendingPathComponent("tiny.dlrt")
        let m = try! CommandRunner.run("dloral-convert", ["merge", "--base", base, "--lora", lora, "--output", merged.path])
        precondition(m.status == 0, m.stderr)
        let q = try! CommandRunner.run("dloral-convert", ["quantize", merged.path, "--weights", "int8", "--output", dlrt.path])
        precondition(q.status == 0, q.stderr)
        return (merged, dlrt)
    }()

    // MARK: - Item 1: a mapped input that shrinks while read

    static func random(_ count: Int) -> Data {
        var bytes = [UInt8](repeating: 0, count: count)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 7) }
        return Data(bytes)
    }

    static func expectChangedWhileRead(_ r: Outcome, tool: String, file: String) {
        #expect(!r.signaled && !r.timedOut, "died of signal \(r.status) / timed out: \(r.stderr)")
        #expect(r.status == 2, "\(r.stdout)\(r.stderr)")
        let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: true)
        #expect(lines.count == 1, "\(r.stderr)")
        #expect(r.stderr.hasPrefix("\(tool): error: \(file): changed while being read ("), "\(r.stderr)")
    }

    @Test func shrinkingMappedInputIsExit2NamingIt() throws {
        let file = try Self.fresh("shrink").appendingPathComponent("input.bin")
        try Self.random(4 << 20).write(to: file)
        let r = try Self.launch("dloral-mapped-input-probe", ["dloral-convert", "bytes", file.path])
        Self.expectChangedWhileRead(r, tool: "dloral-convert", file: file.path)
    }

    @Test func writingFromAShrunkMappingNamesTheInput() throws {
        // write(2) from a mapping whose file shrank returns EFAULT (no SIGBUS): the error names
        // the input that changed, not the output being written.
        let file = try Self.fresh("shrink-write").appendingPathComponent("input.bin")
        try Self.random(4 << 20).write(to: file)
        let r = try Self.launch("dloral-mapped-input-probe", ["dloral-convert", "write", file.path])
        Self.expectChangedWhileRead(r, tool: "dloral-convert", file: file.path)
        #expect(try FileManager.default.contentsOfDirectory(atPath: file.deletingLastPathComponent().path) == ["input.bin"])
    }

    @Test func shrinkingDLRTDuringItsSHA256IsExit2NamingIt() throws {
        let file = try Self.fresh("shrink-dlrt").appendingPathComponent("copy.dlrt")
        try FileManager.default.copyItem(at: Self.model.dlrt, to: file)
        let r = try Self.launch("dloral-mapped-input-probe", ["dloral-verify", "dlrt", file.path])
        Self.expectChangedWhileRead(r, tool: "dloral-verify", file: file.path)
    }

    @Test func faultOutsideMappedInputsStaysASignal() throws {
        // The handler must not swallow real bugs: a wild pointer still dies of SIGSEGV.
        let r = try Self.launch("dloral-mapped-input-probe", ["dloral-verify", "foreign", "-"],
                                environment: ["SWIFT_BACKTRACE": "enable=no"])
        #expect(r.signaled && r.status == SIGSEGV, "status \(r.status) signaled \(r.signaled): \(r.stderr)")
    }

    @Test func verifyNeverDiesWhenItsModelShrinks() throws {
        // The issue's trial: truncate the .dlrt to half while dloral-verify reads it. Whatever
        // the moment, the result is an exit code with one line naming the file, never a signal.
        let folder = try Self.fresh("shrink-verify")
        let size = (try FileManager.default.attributesOfItem(atPath: Self.model.dlrt.path)[.size] as? Int) ?? 0
        var caught = 0
        for (i, delay) in [0.05, 0.1, 0.2, 0.3, 0.5, 0.8].enumerated() {
            let file = folder.appendingPathComponent("run\(i).dlrt")
            try FileManager.default.copyItem(at: Self.model.dlrt, to: file)
            let r = try Self.launch("dloral-verify", [file.path, "--reference", "Tests/Fixtures/tiny/reference_full.safetensors"],
                                    timeout: 120, after: (delay, { truncate(file.path, off_t(size / 2)) }))
            let what = "truncated after \(delay) s"
            #expect(!r.signaled && !r.timedOut, "\(what): signal \(r.status) / timed out: \(r.stderr)")
            if r.status == 2 {
                #expect(r.stderr.hasPrefix("dloral-verify: error: \(file.path): "), "\(what): \(r.stderr)")
                #expect(r.stderr.split(separator: "\n").count == 1, "\(what): \(r.stderr)")
                if r.stderr.contains("changed while being read (") { caught += 1 }
            } else {
                #expect(r.status == 0 || r.status == 1, "\(what): \(r.status) \(r.stderr)")
            }
        }
        #expect(caught > 0, "no run truncated the file while it was mapped")
    }

    // MARK: - Item 6: FIFOs in place of inputs

    static func expectNotRegular(_ r: Outcome, _ what: String) {
        #expect(!r.timedOut, "\(what): hung")
        #expect(!r.signaled && r.status == 2, "\(what): status \(r.status): \(r.stderr)")
        #expect(r.stderr.contains("is not a regular file"), "\(what): \(r.stderr)")
        #expect(r.seconds < 15, "\(what): took \(r.seconds) s")
    }

    @Test func fifoAsWeightsFileOrShardIsRefused() throws {
        let folder = try Self.fresh("fifo-shard")
        // A FIFO in place of a model's weights file.
        let model = folder.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
        let unet = try Self.copy("Tests/Fixtures/tiny/merged/full/unet", to: model)
        try Self.makeFIFO(unet.appendingPathComponent("diffusion_pytorch_model.safetensors"))
        Self.expectNotRegular(try Self.launch("dloral-convert", ["inspect", model.path], timeout: 20), "weights file")

        // A FIFO as one shard of a sharded index.
        let real = CommandRunner.root.appendingPathComponent("Tests/Fixtures/tiny/merged/full/unet/diffusion_pytorch_model.safetensors")
        let bytes = try Data(contentsOf: real)
        let headerLength = bytes.prefix(8).withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        let header = try JSONSerialization.jsonObject(with: bytes.subdata(in: 8..<(8 + headerLength))) as! [String: Any]
        let names = header.keys.filter { $0 != "__metadata__" }.sorted()
        try FileManager.default.removeItem(at: unet.appendingPathComponent("diffusion_pytorch_model.safetensors"))
        var map: [String: String] = [:]
        for name in names { map[name] = "diffusion_pytorch_model-00001-of-00001.safetensors" }
        let index = try JSONSerialization.data(withJSONObject: ["metadata": [:], "weight_map": map])
        try index.write(to: unet.appendingPathComponent("diffusion_pytorch_model.safetensors.index.json"))
        try Self.makeFIFO(unet.appendingPathComponent("diffusion_pytorch_model-00001-of-00001.safetensors"))
        Self.expectNotRegular(try Self.launch("dloral-convert", ["inspect", model.path], timeout: 20), "shard")

        // A FIFO as the checkpoint file itself (merge --lora, quantize/verify model).
        let pkl = folder.appendingPathComponent("model.pkl")
        try Self.makeFIFO(pkl)
        Self.expectNotRegular(try Self.launch("dloral-convert", ["merge", "--base", Self.base, "--lora", pkl.path,
                                                                 "--output", folder.appendingPathComponent("out").path], timeout: 20), "--lora")
        let dlrt = folder.appendingPathComponent("model.dlrt")
        try Self.makeFIFO(dlrt)
        Self.expectNotRegular(try Self.launch("dloral-verify", [dlrt.path, "--reference", "Tests/Fixtures/tiny/reference_full.safetensors"],
                                              timeout: 20), ".dlrt")
    }

    @Test func fifoAsONNXExternalDataIsRefused() throws {
        let folder = try Self.fresh("fifo-onnx")
        _ = try Self.copy("Tests/Fixtures/tiny/onnx/unet.onnx", to: folder)
        _ = try Self.copy("Tests/Fixtures/tiny/onnx/unet.names.json", to: folder)
        try Self.makeFIFO(folder.appendingPathComponent("unet.onnx.data"))
        Self.expectNotRegular(try Self.launch("dloral-convert", ["inspect", folder.appendingPathComponent("unet.onnx").path], timeout: 20),
                              "ONNX external data")
    }

    @Test func fifoAsPNGFrameIsRefused() throws {
        let folder = try Self.fresh("fifo-png")
        let frames = folder.appendingPathComponent("frames")
        try FileManager.default.createDirectory(at: frames, withIntermediateDirectories: true)
        // A valid 8×8 grey PNG (written by hand: IHDR, one IDAT of stored zlib, IEND) for frame 0.
        try Self.png(width: 8, height: 8).write(to: frames.appendingPathComponent("000.png"))
        try Self.makeFIFO(frames.appendingPathComponent("001.png"))
        let embeds = folder.appendingPathComponent("embeds.safetensors")
        try Self.promptEmbeds(width: 32).write(to: embeds)
        var r = try Self.launch("dloral-run", [Self.model.dlrt.path, "--input", frames.path, "--prompt-embeds", embeds.path,
                                                  "--output", folder.appendingPathComponent("out").path], timeout: 30)
        Self.expectNotRegular(r, "PNG frame")
        // And a FIFO as the prompt embeddings.
        try FileManager.default.removeItem(at: frames.appendingPathComponent("001.png"))
        try Self.png(width: 8, height: 8).write(to: frames.appendingPathComponent("001.png"))
        try Self.makeFIFO(embeds)
        r = try Self.launch("dloral-run", [Self.model.dlrt.path, "--input", frames.path, "--prompt-embeds", embeds.path,
                                              "--output", folder.appendingPathComponent("out").path], timeout: 30)
        Self.expectNotRegular(r, "--prompt-embeds")
    }

    /// A safetensors file (its spec: u64 LE header length, JSON header, data) with one zero
    /// fp32 tensor prompt_embeds [1, 77, width].
    static func promptEmbeds(width: Int) -> Data {
        let count = 77 * width * 4
        var header = Array("{\"prompt_embeds\":{\"dtype\":\"F32\",\"shape\":[1,77,\(width)],\"data_offsets\":[0,\(count)]}}".utf8)
        while header.count % 8 != 0 { header.append(UInt8(ascii: " ")) }
        var out = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) }
        out += header
        out += [UInt8](repeating: 0, count: count)
        return Data(out)
    }

    /// A greyscale 8-bit PNG, built from the PNG spec: signature, IHDR, IDAT (zlib stored
    /// block with Adler-32), IEND, each chunk with its CRC-32.
    static func png(width: Int, height: Int) -> Data {
        func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)] }
        func crc32(_ bytes: [UInt8]) -> UInt32 {
            var c: UInt32 = 0xFFFF_FFFF
            for b in bytes {
                c ^= UInt32(b)
                for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
            }
            return ~c
        }
        func chunk(_ type: String, _ body: [UInt8]) -> [UInt8] {
            let typed = Array(type.utf8) + body
            return be32(UInt32(body.count)) + typed + be32(crc32(typed))
        }
        var raw: [UInt8] = []
        for _ in 0..<height { raw += [0] + [UInt8](repeating: 128, count: width) }
        var a: UInt32 = 1, b: UInt32 = 0
        for x in raw { a = (a + UInt32(x)) % 65521; b = (b + a) % 65521 }
        let n = UInt16(raw.count)
        let zlib: [UInt8] = [0x78, 0x01, 1, UInt8(n & 255), UInt8(n >> 8), UInt8(~n & 255), UInt8(~n >> 8)] + raw + be32(b << 16 | a)
        let ihdr = be32(UInt32(width)) + be32(UInt32(height)) + [8, 0, 0, 0, 0]
        return Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", ihdr) + chunk("IDAT", zlib) + chunk("IEND", []))
    }
}

// MARK: - Item 2: outputs that would destroy an input
extension FileSafetyTests {
    static func contents(_ url: URL) -> Data? { try? Data(contentsOf: url) }

    static func expectRefused(_ r: Outcome, _ what: String, mentioning: String) {
        #expect(!r.signaled && r.status == 2, "\(what): status \(r.status): \(r.stderr)")
        #expect(["dloral-convert", "dloral-verify", "dloral-run"].contains { r.stderr.hasPrefix("\($0): error: ") }, "\(what): \(r.stderr)")
        #expect(r.stderr.contains(mentioning), "\(what): \(r.stderr)")
    }

    @Test func quantizeNeverWritesOverOrIntoItsInput() throws {
        let folder = try Self.fresh("own-input")
        let merged = folder.appendingPathComponent("M")
        try FileManager.default.copyItem(at: Self.model.merged, to: merged)
        let weights = merged.appendingPathComponent("unet/diffusion_pytorch_model.safetensors")
        let before = Self.contents(weights)

        // The issue's case: --output is the merged folder's own UNet weights.
        var r = try Self.launch("dloral-convert", ["quantize", merged.path, "--weights", "int8", "--output", weights.path])
        Self.expectRefused(r, "output = input file", mentioning: "input")
        // The same with --overwrite, and spelled through a symlink to the folder.
        let symlink = folder.appendingPathComponent("link")
        try FileManager.default.createSymbolicLink(at: symlink, withDestinationURL: merged)
        r = try Self.launch("dloral-convert", ["quantize", merged.path, "--weights", "int8", "--overwrite",
                                               "--output", symlink.appendingPathComponent("unet/diffusion_pytorch_model.safetensors").path])
        Self.expectRefused(r, "output = input file via a symlink", mentioning: "input")
        // A new file inside the input folder.
        r = try Self.launch("dloral-convert", ["quantize", merged.path, "--weights", "int8", "--output", merged.appendingPathComponent("x.dlrt").path])
        Self.expectRefused(r, "output inside the input folder", mentioning: "inside the input folder")
        #expect(!FileManager.default.fileExists(atPath: merged.appendingPathComponent("x.dlrt").path))
        // A hard link to an input file, with --overwrite.
        let hard = folder.appendingPathComponent("hard.dlrt")
        #expect(link(weights.path, hard.path) == 0)
        r = try Self.launch("dloral-convert", ["quantize", merged.path, "--weights", "int8", "--overwrite", "--output", hard.path])
        Self.expectRefused(r, "output = hard link of an input", mentioning: "hard link")

        #expect(Self.contents(weights) == before, "the input was modified")
        #expect(try FileManager.default.contentsOfDirectory(atPath: merged.path).sorted() == ["dloral.json", "unet", "vae", "cfr"].sorted())
    }

    @Test func quantizeRefusesAnExistingOutputUnlessOverwrite() throws {
        let folder = try Self.fresh("existing")
        let output = folder.appendingPathComponent("model.dlrt")
        try Data("precious".utf8).write(to: output)
        var r = try Self.launch("dloral-convert", ["quantize", Self.model.merged.path, "--weights", "fp16", "--output", output.path])
        Self.expectRefused(r, "existing output", mentioning: "already exists")
        #expect(Self.contents(output) == Data("precious".utf8))

        r = try Self.launch("dloral-convert", ["quantize", Self.model.merged.path, "--weights", "fp16", "--overwrite", "--output", output.path])
        #expect(r.status == 0, "\(r.stderr)")
        // Formats/dlrt.md §1: the file starts with the magic 89 44 4C 52 54 0D 0A 1A.
        #expect(Self.contents(output)?.prefix(8) == Data([0x89, 0x44, 0x4C, 0x52, 0x54, 0x0D, 0x0A, 0x1A]))
    }

    @Test func mergeNeverWritesIntoOrOverItsInputs() throws {
        let folder = try Self.fresh("merge-inputs")
        let base = folder.appendingPathComponent("B")
        try FileManager.default.copyItem(at: CommandRunner.root.appendingPathComponent(Self.base), to: base)
        var r = try Self.launch("dloral-convert", ["merge", "--base", base.path, "--lora", Self.lora,
                                                   "--output", base.appendingPathComponent("merged").path])
        Self.expectRefused(r, "merge output inside --base", mentioning: "inside the input folder")
        // --overwrite of a folder that holds the base would delete the base.
        r = try Self.launch("dloral-convert", ["merge", "--base", base.path, "--lora", Self.lora, "--overwrite", "--output", folder.path])
        Self.expectRefused(r, "merge output containing --base", mentioning: "contains the input")
        #expect(FileManager.default.fileExists(atPath: base.appendingPathComponent("unet/config.json").path))
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["B"])
    }

    @Test func runDoesNotWriteFramesOverItsInputFrames() throws {
        let folder = try Self.fresh("verify-frames")
        let frames = folder.appendingPathComponent("frames")
        try FileManager.default.createDirectory(at: frames, withIntermediateDirectories: true)
        for name in ["000.png", "001.png"] { try Self.png(width: 8, height: 8).write(to: frames.appendingPathComponent(name)) }
        let before = Self.contents(frames.appendingPathComponent("001.png"))
        let r = try Self.launch("dloral-run", [Self.model.dlrt.path, "--input", frames.path, "--output", frames.path])
        Self.expectRefused(r, "--output = --input", mentioning: "input")
        #expect(Self.contents(frames.appendingPathComponent("001.png")) == before)
    }
}

// MARK: - Item 3: SIGINT / SIGTERM / SIGHUP at any moment of a merge
extension FileSafetyTests {
    /// Relative path → size of every file under `folder`.
    static func inventory(_ folder: URL) -> [String: Int] {
        var result: [String: Int] = [:]
        for relative in (try? FileManager.default.subpathsOfDirectory(atPath: folder.path)) ?? [] {
            let path = folder.appendingPathComponent(relative).path
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue {
                result[relative] = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? -1
            }
        }
        return result
    }

    @Test func mergeIsWholeOrAbsentUnderSignals() throws {
        let folder = try Self.fresh("signals")
        let reference = folder.appendingPathComponent("reference")
        let first = try Self.launch("dloral-convert", ["merge", "--base", Self.base, "--lora", Self.lora, "--output", reference.path])
        #expect(first.status == 0, "\(first.stderr)")
        let complete = Self.inventory(reference)
        // README: unet/, vae/, cfr/ (config.json and weights each) and dloral.json.
        #expect(Set(complete.keys) == ["unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                                       "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
                                       "cfr/config.json", "cfr/model.safetensors", "dloral.json"])
        let duration = max(first.seconds, 0.2)
        let runs = 20
        var outcomes: [String: Int] = [:]
        func attempt(_ i: Int, delay: Double, signal: Int32? = nil) throws {
            // A closed terminal (SIGHUP) is an interrupt like Ctrl-C (README: exit 129).
            let sig = signal ?? [SIGINT, SIGTERM, SIGHUP][i % 3]
            // Half the runs replace an existing folder (--overwrite), which must stay whole until swapped.
            let overwrite = i % 4 >= 2
            let run = try Self.fresh("signals-\(i)")
            let output = run.appendingPathComponent("out")
            if overwrite {
                try FileManager.default.copyItem(at: reference, to: output)
                try Data("old".utf8).write(to: output.appendingPathComponent("old-marker"))
            }
            let r = try Self.launch("dloral-convert", ["merge", "--base", Self.base, "--lora", Self.lora, "--output", output.path]
                                    + (overwrite ? ["--overwrite"] : []), timeout: 60, signal: (sig, delay))
            let what = "run \(i) (signal \(sig) after \(String(format: "%.3f", delay)) s, overwrite \(overwrite))"
            #expect(!r.timedOut, "\(what): hung")
            let leftovers = (try FileManager.default.contentsOfDirectory(atPath: run.path)).filter { $0 != "out" }
            #expect(leftovers.isEmpty, "\(what): left \(leftovers)")
            let now = Self.inventory(output)
            var expectedOld = complete
            expectedOld["old-marker"] = 3
            if r.status == 0 && !r.signaled {
                outcomes["completed", default: 0] += 1
                #expect(now == complete, "\(what): exit 0 but the output is \(now.keys.sorted())")
                #expect(!r.stderr.contains("interrupted"), "\(what): \(r.stderr)")
            } else if !r.signaled && r.status == 128 + sig {
                outcomes["interrupted", default: 0] += 1
                if sig == SIGHUP { outcomes["hangup", default: 0] += 1 }
                #expect(r.stderr.contains("dloral-convert: interrupted; no output written"), "\(what): \(r.stderr)")
                #expect(now == (overwrite ? expectedOld : [:]), "\(what): interrupted but the output is \(now.keys.sorted())")
            } else if r.signaled && r.status == sig {
                // Before the handlers are installed the default action applies; nothing was written.
                outcomes["killed before start", default: 0] += 1
                #expect(now == (overwrite ? expectedOld : [:]), "\(what): \(now.keys.sorted())")
            } else {
                Issue.record("\(what): status \(r.status) signaled \(r.signaled): \(r.stderr)")
            }
        }
        for i in 0..<runs {
            // Spread over the whole run, densest near its end where the commit happens.
            let fraction = Double(i) / Double(runs - 1)
            try attempt(i, delay: duration * (0.3 + 0.85 * fraction.squareRoot()))
        }
        // A loaded machine can stretch every run past the spread measured on the first one; later
        // signals then reach the completed path, which the spread must also cover.
        for (k, factor) in [2.0, 4.0, 8.0].enumerated() where outcomes["completed", default: 0] == 0 {
            try attempt(runs + k, delay: duration * factor)
        }
        // The first run can be slower than the rest (cold caches, a busy machine), so that the
        // SIGHUP runs all arrive after the commit: retry SIGHUP earlier until one interrupts.
        for (k, fraction) in [0.5, 0.35, 0.25, 0.15, 0.08].enumerated() where outcomes["hangup", default: 0] == 0 {
            try attempt(runs + 3 + k, delay: duration * fraction, signal: SIGHUP)
        }
        // The spread must reach both outcomes, or the test proves nothing.
        #expect(outcomes["completed", default: 0] > 0 && outcomes["interrupted", default: 0] > 0, "\(outcomes)")
        #expect(outcomes["hangup", default: 0] > 0, "no SIGHUP run exited 129: \(outcomes)")
    }
}

// MARK: - Item 3 for quantize: the .dlrt appears whole or not at all
extension FileSafetyTests {
    @Test func quantizeIsWholeOrAbsentUnderSignals() throws {
        let folder = try Self.fresh("quantize-signals")
        let reference = folder.appendingPathComponent("reference.dlrt")
        let first = try Self.launch("dloral-convert", ["quantize", Self.model.merged.path, "--weights", "int8", "--output", reference.path])
        #expect(first.status == 0, "\(first.stderr)")
        let complete = Self.contents(reference)
        let duration = max(first.seconds, 0.2)
        var outcomes: [String: Int] = [:]
        func attempt(_ i: Int, sig: Int32, delay: Double) throws {
            let run = try Self.fresh("quantize-signals-\(i)")
            let output = run.appendingPathComponent("out.dlrt")
            let r = try Self.launch("dloral-convert", ["quantize", Self.model.merged.path, "--weights", "int8", "--output", output.path],
                                    timeout: 60, signal: (sig, delay))
            let what = "run \(i) (signal \(sig) after \(String(format: "%.3f", delay)) s)"
            #expect(!r.timedOut, "\(what): hung")
            let entries = try FileManager.default.contentsOfDirectory(atPath: run.path)
            if r.status == 0 && !r.signaled {
                outcomes["completed", default: 0] += 1
                #expect(entries == ["out.dlrt"] && Self.contents(output) == complete, "\(what): \(entries)")
            } else if (!r.signaled && r.status == 128 + sig) || (r.signaled && r.status == sig) {
                outcomes["interrupted", default: 0] += 1
                if sig == SIGHUP && !r.signaled { outcomes["hangup", default: 0] += 1 }
                if !r.signaled {
                    #expect(r.stderr.contains("dloral-convert: interrupted; no output written"), "\(what): \(r.stderr)")
                }
                #expect(entries.isEmpty, "\(what): left \(entries)")
            } else {
                Issue.record("\(what): status \(r.status) signaled \(r.signaled): \(r.stderr)")
            }
        }
        for i in 0..<12 {
            try attempt(i, sig: [SIGINT, SIGTERM, SIGHUP][i % 3], delay: duration * (0.3 + 0.9 * Double(i) / 11))
        }
        // The first run can be slower than the rest (cold caches, a busy machine), so that the
        // SIGHUP runs all arrive after the rename: retry SIGHUP earlier until one interrupts.
        for (k, fraction) in [0.5, 0.35, 0.25, 0.15, 0.08].enumerated() where outcomes["hangup", default: 0] == 0 {
            try attempt(12 + k, sig: SIGHUP, delay: duration * fraction)
        }
        #expect(outcomes["interrupted", default: 0] > 0, "\(outcomes)")
        #expect(outcomes["hangup", default: 0] > 0, "no SIGHUP run exited 129: \(outcomes)")
    }

    /// SIGPIPE is ignored (README, exit codes): a stray one mid-run neither kills the command nor
    /// leaves its hidden temporary file; the file is the same as an undisturbed run's.
    @Test func quantizeIgnoresSIGPIPE() throws {
        let folder = try Self.fresh("quantize-sigpipe")
        let reference = folder.appendingPathComponent("reference.dlrt")
        let first = try Self.launch("dloral-convert", ["quantize", Self.model.merged.path, "--weights", "int8", "--output", reference.path])
        #expect(first.status == 0, "\(first.stderr)")
        let run = try Self.fresh("quantize-sigpipe-run")
        let output = run.appendingPathComponent("out.dlrt")
        let r = try Self.launch("dloral-convert", ["quantize", Self.model.merged.path, "--weights", "int8", "--output", output.path],
                                timeout: 60, signal: (SIGPIPE, max(first.seconds, 0.2) * 0.5))
        #expect(!r.signaled && r.status == 0, "status \(r.status) signaled \(r.signaled): \(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: run.path) == ["out.dlrt"])
        #expect(Self.contents(output) == Self.contents(reference))
    }
}

// MARK: - Item 2 for dloral-verify: the report and restored frames never replace an input or, without --overwrite, any file
extension FileSafetyTests {
    static let reference = "Tests/Fixtures/tiny/reference_full.safetensors"

    @Test func verifyReportNeverReplacesItsInputs() throws {
        let folder = try Self.fresh("verify-report-inputs")
        let report = folder.appendingPathComponent("w2")
        try FileManager.default.createDirectory(at: report, withIntermediateDirectories: true)
        // The reference where the report's first picture goes (README: frame_<t>.png).
        let ref = report.appendingPathComponent("frame_0.png")
        try FileManager.default.copyItem(at: CommandRunner.root.appendingPathComponent(Self.reference), to: ref)
        let refBefore = Self.contents(ref)
        for extra in [[], ["--overwrite"]] {
            let r = try Self.launch("dloral-verify", [Self.model.dlrt.path, "--reference", ref.path, "--report", report.path] + extra)
            Self.expectRefused(r, "reference = report frame_0.png \(extra)", mentioning: "input")
            #expect(Self.contents(ref) == refBefore)
            #expect(r.stdout.isEmpty, "the model ran before the refusal: \(r.stdout)")
        }
        // The model where the report's index.html goes, named directly and through a hard link.
        let model = report.appendingPathComponent("index.html")
        try FileManager.default.copyItem(at: Self.model.dlrt, to: model)
        let modelBefore = Self.contents(model)
        let outside = try Self.copy(Self.reference, to: folder)
        for extra in [[], ["--overwrite"]] {
            let r = try Self.launch("dloral-verify", [model.path, "--reference", outside.path, "--report", report.path] + extra)
            Self.expectRefused(r, "model = report index.html \(extra)", mentioning: "input")
            #expect(Self.contents(model) == modelBefore)
        }
        // The reference hard-linked where a picture goes: another path, the same file.
        let other = try Self.fresh("verify-report-inputs-link")
        let linked = other.appendingPathComponent("frame_1.png")
        guard link(outside.path, linked.path) == 0 else { throw CommandFailed(message: "link: \(errno)") }
        let r = try Self.launch("dloral-verify", [Self.model.dlrt.path, "--reference", outside.path, "--report", other.path, "--overwrite"])
        Self.expectRefused(r, "reference hard-linked as frame_1.png", mentioning: "hard link")
        #expect(Self.contents(outside) == refBefore)
    }

    @Test func verifyReportRefusesExistingFilesUnlessOverwrite() throws {
        let folder = try Self.fresh("verify-report-existing")
        let page = folder.appendingPathComponent("index.html")
        try Data("mine".utf8).write(to: page)
        var r = try Self.launch("dloral-verify", [Self.model.dlrt.path, "--reference", Self.reference, "--report", folder.path])
        Self.expectRefused(r, "existing index.html", mentioning: "already exists")
        #expect(r.stderr.contains("--overwrite"), "\(r.stderr)")
        #expect(Self.contents(page) == Data("mine".utf8))
        r = try Self.launch("dloral-verify", [Self.model.dlrt.path, "--reference", Self.reference, "--report", folder.path, "--overwrite"], timeout: 120)
        #expect(!r.signaled && (r.status == 0 || r.status == 1), "\(r.stderr)")
        let html = try String(contentsOf: page, encoding: .utf8)
        #expect(html.contains("<html") || html.contains("<!DOCTYPE"), "index.html was not replaced")
        // --overwrite means nothing without a folder to write to.
        r = try Self.launch("dloral-verify", [Self.model.dlrt.path, "--reference", Self.reference, "--overwrite"])
        #expect(!r.signaled && r.status == 2 && r.stderr.contains("--overwrite"), "\(r.stderr)")
    }

    @Test func runRefusesExistingOutputsUnlessOverwrite() throws {
        let folder = try Self.fresh("verify-frames-existing")
        let input = folder.appendingPathComponent("lq"), out = folder.appendingPathComponent("w3")
        try RestoreFramesTests.writeFrames(input, count: 3, width: 20, height: 14)
        let names = try FileManager.default.contentsOfDirectory(atPath: input.path).sorted()
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let existing = out.appendingPathComponent(names[2])
        try Data("mine".utf8).write(to: existing)
        let prompt = try RestoreFramesTests.promptFile(folder)
        let args = [Self.model.dlrt.path, "--input", input.path, "--output", out.path, "--prompt-embeds", prompt, "--process-size", "32"]
        var r = try Self.launch("dloral-run", args)
        Self.expectRefused(r, "existing restored frame", mentioning: "already exists")
        #expect(Self.contents(existing) == Data("mine".utf8))
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.path) == [names[2]], "a frame was written before the refusal")
        r = try Self.launch("dloral-run", args + ["--overwrite"], timeout: 120)
        #expect(!r.signaled && r.status == 0, "\(r.stderr)")
        #expect(Self.contents(existing)?.prefix(4) == Data([0x89, 0x50, 0x4E, 0x47]), "the frame was not replaced by a PNG")
    }

    /// An --output that is a folder cannot be replaced by the .dlrt file: refused before any work.
    @Test func quantizeRefusesAFolderOutputUpFront() throws {
        let folder = try Self.fresh("quantize-folder-output")
        let target = folder.appendingPathComponent("existing")
        try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
        let r = try Self.launch("dloral-convert", ["quantize", Self.model.merged.path, "--weights", "int8", "--output", target.path, "--overwrite"])
        Self.expectRefused(r, "--output is a folder", mentioning: "is a folder")
        #expect(!r.stderr.contains("rename"), "\(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["existing"])
    }
}
