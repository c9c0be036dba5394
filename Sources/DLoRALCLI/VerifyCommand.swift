import ArgumentParser

/// `dloral-verify`: run the one-step engine on a `.dlrt` and compare with a reference.
public struct VerifyCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "dloral-verify",
        abstract: "Run a .dlrt model and check its outputs against a PyTorch reference.")

    @Argument(help: "The runtime file (.dlrt) to verify.")
    var model: String

    @Option(help: "Reference safetensors file (DESIGN §4).")
    var reference: String?

    public init() {}

    public func run() throws {
        throw CLIFailure(exitCode: 2, message: "\(model): the engine is not built yet (issue 5); dloral-verify cannot run a .dlrt in this version")
    }
}
