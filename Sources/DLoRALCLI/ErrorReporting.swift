import ArgumentParser
import DLoRALFormats
#if canImport(Glibc)
import Glibc
#endif

/// Maps library errors to the CLI contract (README.md): one line on stderr, exit 2 for bad input.
enum ErrorReporting {
    /// - Parameter file: named before the message of errors that do not name their file.
    static func exit(for error: Error, tool: String, file: String? = nil) -> Never {
        // FormatError escapes its own text; other errors may carry file or tensor names too, and
        // a control byte in one must not reach the terminal raw or break the one-line contract.
        let message = (error as? FormatError)?.description
            ?? FormatError.escapingControls(file.map { "\($0): \(error)" } ?? String(describing: error))
        // An interrupt being handled owns the exit code and message.
        FileGuard.finish()
        Console.error("\(tool): error: \(message)")
        Glibc.exit(2)
    }
}

/// The shape every converting subcommand shares: run the work with interrupt cleanup, print
/// its warnings on stderr, then one JSON object on stdout (`--json`) or a summary on stderr;
/// any error becomes one line on stderr and its exit code.
enum CommandRun {
    static func report<Report>(
        json: Bool, tool: String = "dloral-convert",
        _ work: () throws -> Report, warnings: (Report) -> [String],
        asJSON: (Report) -> JSONValue, summary: (Report) -> String
    ) {
        InterruptCleanup.install(tool: tool)
        do {
            let report = try work()
            // File names in a summary or warning are the user's bytes: escaped like an error's, so
            // a name cannot move the terminal's cursor or colour (a summary's lines stay lines).
            for warning in warnings(report) { Console.error(FormatError.escapingControls("\(tool): warning: \(warning)")) }
            if json {
                print(asJSON(report).prettyPrinted())
            } else {
                Console.error(summary(report).split(separator: "\n", omittingEmptySubsequences: false)
                    .map { FormatError.escapingControls(String($0)) }.joined(separator: "\n"))
            }
        } catch {
            ErrorReporting.exit(for: error, tool: tool)
        }
    }
}

/// Runs a root command with README's exit codes: usage errors (unknown options, values
/// `validate()` or `run()` refuses) exit 2 like every other bad input, not ArgumentParser's 64,
/// and every error is printed as `<tool>: error: …`, followed for usage errors by the usage of the
/// (sub)command that was given.
enum CommandLineMain {
    static func run<Command: ParsableCommand>(_ type: Command.Type) -> Never {
        let tool = type.configuration.commandName ?? "\(type)"
        var command: ParsableCommand
        do {
            command = try type.parseAsRoot()
        } catch {
            // --help and --version print on stdout and exit 0.
            if type.exitCode(for: error) == .success { type.exit(withError: error) }
            let text = type.fullMessage(for: error)
            Console.error(errorStyle(text, tool: tool))
            Glibc.exit(2)
        }
        do {
            // A mapped input that shrinks while read is exit 2 naming it, not a SIGBUS; SIGINT /
            // SIGTERM / SIGHUP remove temporary outputs and exit 130 / 143 / 129 (see FileGuard).
            FileGuard.install(tool: tool, interrupts: true)
            try command.run()
            FileGuard.finish()
            Glibc.exit(0)
        } catch let exit as ExitCode {
            FileGuard.finish()
            Glibc.exit(exit.rawValue)
        } catch let validation as ValidationError {
            // Raised by run() itself (options checked when they are used): the usage shown is
            // that of the subcommand that ran, as for errors found while parsing.
            let subcommand = Swift.type(of: command)
            let names = subcommand == type ? tool : "\(tool) \(subcommand.configuration.commandName ?? "")"
            FileGuard.finish()
            Console.error("\(tool): error: \(validation.message)")
            Console.error("Usage: \(type.usageString(for: subcommand))\n  See '\(names) --help' for more information.")
            Glibc.exit(2)
        } catch let error as FormatError {
            ErrorReporting.exit(for: error, tool: tool)
        } catch {
            switch type.exitCode(for: error) {
            // ArgumentParser's own requests and errors raised while running (help, a usage error).
            case .success: type.exit(withError: error)
            case .validationFailure:
                Console.error(errorStyle(type.fullMessage(for: error), tool: tool))
                Glibc.exit(2)
            default: ErrorReporting.exit(for: error, tool: tool)
            }
        }
    }

    /// ArgumentParser's "Error: …" first line in this toolchain's one style, "<tool>: error: …";
    /// the usage lines that follow are kept.
    static func errorStyle(_ text: String, tool: String) -> String {
        let prefix = "Error: "
        guard text.hasPrefix(prefix) else { return "\(tool): error: \(text)" }
        return "\(tool): error: " + text.dropFirst(prefix.count)
    }
}
