import ArgumentParser
import Dispatch
import Foundation
import DLoRALConvert
import DLoRALFormats

/// `dloral-convert inspect`: what a checkpoint holds, under canonical names.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show what a checkpoint file or folder holds.",
        discussion: """
            Reads safetensors (single, sharded, diffusers folders, LDM single files), PyTorch zip \
            checkpoints (model.pkl, .bin, .pt, .ckpt; never executed), ONNX (with external data) and \
            LoRA files (DLoRAL/peft, peft folders, kohya, diffusers). Tensor names are printed in \
            canonical diffusers form with a component prefix (unet., vae., cfr.).
            """)

    @Argument(help: "A checkpoint file or folder.")
    var path: String

    @Flag(help: "Print one JSON object on stdout (human text goes to stderr).")
    var json = false

    @Flag(help: "List every tensor in the text output (default: the first 40).")
    var all = false

    @Option(help: "Prefer this weight variant in diffusers folders (e.g. fp16).")
    var variant: String?

    @Flag(help: "Report on stderr how long opening the file (map, header and metadata checks) took.")
    var timing = false

    @Flag(name: .customLong("verify-all"), help: "For a .dlrt: check every tensor's SHA-256 now (exit 2 naming the first corrupted one).")
    var verifyAll = false

    func run() throws {
        do {
            let start = DispatchTime.now()
            let checkpoint = try CheckpointReader.open(path, variant: variant)
            if timing {
                let ms = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6
                Console.error(String(format: "opened %@ (map, header and metadata checks) in %.2f ms", FormatError.escapingControls(path), ms))
            }
            if verifyAll { try checkpoint.dlrt?.verifyAll() }
            let report = InspectReport(checkpoint)
            if json {
                print(report.json().prettyPrinted())
            } else {
                print(report.text(limit: all ? nil : 40))
            }
        } catch {
            ErrorReporting.exit(for: error, tool: "dloral-convert")
        }
    }
}
