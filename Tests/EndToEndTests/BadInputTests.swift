import Foundation
import Testing

/// Every file of the hostile / corrupted corpus gets exit code 2, one line on stderr naming the
/// file, and nothing on stdout (README.md).
@Suite("bad input")
struct BadInputTests {
    static let folder = CommandRunner.fixtures.appendingPathComponent("bad")

    /// The corpus entries, from the manifest the generator wrote next to them.
    static let cases: [String] = {
        guard let data = try? Data(contentsOf: folder.appendingPathComponent("manifest.json")),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return [] }
        return object.keys.sorted()
    }()

    @Test func corpusIsPresent() {
        #expect(Self.cases.count >= 30, "Tests/Fixtures/bad/manifest.json lists \(Self.cases.count) files")
    }

    @Test(arguments: cases)
    func inspectRefusesCleanly(name: String) throws {
        let path = "Tests/Fixtures/bad/\(name)"
        let result = try CommandRunner.run("dloral-convert", ["inspect", path])
        #expect(result.status == 2, "exit \(result.status) for \(name): \(result.stderr)")
        #expect(result.stdout.isEmpty, "stdout for \(name): \(result.stdout)")
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "expected one line on stderr for \(name), got:\n\(result.stderr)")
        #expect(result.stderr.hasPrefix("dloral-convert: error: \(path)"), "\(result.stderr)")
    }

    /// Hostile pickles are refused by naming the global they tried to reach.
    @Test(arguments: [
        ("pt_os_system.pt", "os.system"), ("pt_builtins_eval.pt", "builtins.eval"),
        ("pt_subprocess_popen.pt", "subprocess.Popen"), ("pt_posix_system.pt", "posix.system"),
    ])
    func hostilePicklesNameTheGlobal(name: String, global: String) throws {
        let result = try CommandRunner.run("dloral-convert", ["inspect", "Tests/Fixtures/bad/\(name)"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("'\(global)'"), "\(result.stderr)")
        #expect(result.stderr.contains("not allowed"))
    }

    @Test func missingFileIsBadInput() throws {
        let result = try CommandRunner.run("dloral-convert", ["inspect", "no/such/model.safetensors"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("no/such/model.safetensors"))
    }
}
