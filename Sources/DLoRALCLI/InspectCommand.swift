import ArgumentParser
import DLoRALFormats

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show what a checkpoint file or folder holds.")

    @Argument(help: "A checkpoint file or folder.")
    var path: String

    @Flag(help: "Print one JSON object on stdout.")
    var json = false

    func run() throws {
        do {
            let file = try SafetensorsFile(path: path)
            for (name, view) in file.table.tensors {
                print(name, view.dtype.rawValue, view.shape)
            }
        } catch {
            ErrorReporting.exit(for: error, tool: "dloral-convert")
        }
    }
}
