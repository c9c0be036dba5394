import DLoRALConvert
import DLoRALFormats
import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// "1 frame", "2 frames"; "--a", "--a and --b", "--a, --b and --c".
enum Wording {
    static func count(_ n: Int, _ singular: String, _ plural: String? = nil) -> String {
        "\(n) \(n == 1 ? singular : plural ?? singular + "s")"
    }

    static func list(_ items: [String]) -> String {
        items.count <= 1 ? items.joined() : items.dropLast().joined(separator: ", ") + " and " + items.last!
    }
}

/// stderr output in one place.
enum Console {
    static func error(_ line: String) {
        fputs(line.hasSuffix("\n") ? line : line + "\n", stderr)
    }

    static var stderrIsTerminal: Bool { isatty(2) != 0 }
}

/// Removes half-built outputs when the user interrupts, then exits 130 (SIGINT) / 143 (SIGTERM) / 129 (SIGHUP)
/// with "interrupted; no output written"; an output already published stays and the command
/// finishes normally. The handlers and the list of temporary outputs live in `FileGuard`.
enum InterruptCleanup {
    static func install(tool: String = "dloral-convert") {
        FileGuard.install(tool: tool, interrupts: true)
    }
}

/// A per-tensor progress bar on stderr, drawn only when stderr is a terminal.
final class TerminalProgress: ConversionProgress {
    let label: String
    var total = 0
    var done = 0
    let start = DispatchTime.now()
    var lastDraw = DispatchTime(uptimeNanoseconds: 0)

    init(label: String) { self.label = label }

    static func ifInteractive(label: String) -> TerminalProgress? {
        Console.stderrIsTerminal ? TerminalProgress(label: label) : nil
    }

    func begin(totalBytes: Int) { total = max(totalBytes, 1) }

    func advance(tensor: String, bytes: Int) {
        done += bytes
        let now = DispatchTime.now()
        guard now.uptimeNanoseconds - lastDraw.uptimeNanoseconds > 100_000_000 || done >= total else { return }
        lastDraw = now
        let seconds = Double(now.uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        let fraction = Double(done) / Double(total)
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let rate = seconds > 0 ? Double(done) / seconds / 1e6 : 0
        let name = tensor.count > 48 ? "…" + tensor.suffix(47) : tensor
        fputs(String(format: "\r\u{1B}[K%@ %@ %5.1f%% %8.1f MB %7.1f MB/s  %@", label, bar, fraction * 100, Double(done) / 1e6, rate, name), stderr)
    }

    func finish() { fputs("\r\u{1B}[K", stderr) }
}
