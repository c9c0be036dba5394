import ArgumentParser
import DLoRALFormats
#if canImport(Glibc)
import Glibc
#endif

/// An error the CLI reports as one line on stderr with a specific exit code.
public struct CLIFailure: Error, CustomStringConvertible {
    public var exitCode: Int32
    public var message: String
    public init(exitCode: Int32, message: String) {
        self.exitCode = exitCode
        self.message = message
    }
    public var description: String { message }
}

/// Maps library errors to the CLI contract (DESIGN §3): one line on stderr, exit 2 for bad input.
enum ErrorReporting {
    static func exit(for error: Error, tool: String) -> Never {
        let (code, message): (Int32, String)
        switch error {
        case let failure as CLIFailure: (code, message) = (failure.exitCode, failure.message)
        case let format as FormatError: (code, message) = (2, format.description)
        default: (code, message) = (2, String(describing: error))
        }
        // An interrupt being handled owns the exit code and message.
        FileGuard.finish()
        Console.error("\(tool): error: \(message)")
        Glibc.exit(code)
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
            for warning in warnings(report) { Console.error("\(tool): warning: \(warning)") }
            if json {
                print(asJSON(report).prettyPrinted())
            } else {
                Console.error(summary(report))
            }
        } catch {
            ErrorReporting.exit(for: error, tool: tool)
        }
    }
}

/// Runs a root command with DESIGN §3's exit codes: usage errors (unknown options, values
/// `validate()` refuses) exit 2 like every other bad input, not ArgumentParser's 64.
enum CommandLineMain {
    static func run<Command: ParsableCommand>(_ type: Command.Type) -> Never {
        do {
            var command = try type.parseAsRoot()
            // A mapped input that shrinks while read is exit 2 naming it, not a SIGBUS; SIGINT /
            // SIGTERM remove temporary outputs and exit 130 / 143 (see FileGuard).
            FileGuard.install(tool: type.configuration.commandName ?? "dloral", interrupts: true)
            try command.run()
            FileGuard.finish()
            Glibc.exit(0)
        } catch {
            let code = type.exitCode(for: error)
            if code == .validationFailure {
                Console.error(type.fullMessage(for: error))
                Glibc.exit(2)
            }
            type.exit(withError: error)
        }
    }
}
