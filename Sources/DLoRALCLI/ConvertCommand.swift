import ArgumentParser
import DLoRALConvert

/// `dloral-convert`: inspect, merge and quantize DLoRAL checkpoints.
public struct ConvertCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "dloral-convert",
        abstract: "Read, merge and quantize DLoRAL / Stable Diffusion checkpoints.",
        version: ToolVersion.string,
        subcommands: [InspectCommand.self, MergeCommand.self, QuantizeCommand.self])

    public init() {}

    /// Parses and runs, with usage errors exiting 2 (README.md).
    public static func main() { CommandLineMain.run(Self.self) }
}
