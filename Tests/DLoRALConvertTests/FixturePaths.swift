import Foundation

enum FixturePaths {
    static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let tiny = root.appendingPathComponent("Tests/Fixtures/tiny")

    static func tiny(_ relative: String) -> String { tiny.appendingPathComponent(relative).path }
}
