import Foundation

/// Runs the built command-line tools the way a user or a CI pipeline does.
enum CommandRunner {
    static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let fixtures = root.appendingPathComponent("Tests/Fixtures")

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// The folder holding the executables built alongside this test bundle.
    static let binFolder: URL = {
        var candidates: [URL] = []
        if let env = ProcessInfo.processInfo.environment["DLORAL_BIN"] {
            candidates.append(URL(fileURLWithPath: env))
        }
        var url = Bundle.main.bundleURL
        for _ in 0..<4 {
            candidates.append(url)
            url = url.deletingLastPathComponent()
        }
        candidates.append(root.appendingPathComponent(".build/debug"))
        for candidate in candidates
        where FileManager.default.isExecutableFile(atPath: candidate.appendingPathComponent("dloral-convert").path) {
            return candidate
        }
        return root.appendingPathComponent(".build/debug")
    }()

    static func run(_ tool: String, _ arguments: [String], environment: [String: String] = [:], directory: URL? = nil) throws -> Result {
        let process = Process()
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.executableURL = tool.hasPrefix("/") ? URL(fileURLWithPath: tool) : binFolder.appendingPathComponent(tool)
        process.arguments = arguments
        process.currentDirectoryURL = directory ?? root
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read both pipes concurrently so a large output cannot block the child.
        final class Box: @unchecked Sendable { var data = Data() }
        let errBox = Box()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errBox.data = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        let errData = errBox.data
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus,
            stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self))
    }
}
