import Foundation
import Testing

/// Outputs named by one character, relative to the working directory: the commands resolve
/// such paths themselves (Foundation's NSString path methods trap on them on Linux).
@Suite("one-character output names")
struct OutputNameTests {
    @Test func mergeAndQuantizeWriteToOneCharacterNames() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("dloral-names-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let tiny = CommandRunner.fixtures.appendingPathComponent("tiny")
        let merge = try CommandRunner.run("dloral-convert", [
            "merge", "--base", tiny.appendingPathComponent("base").path,
            "--lora", tiny.appendingPathComponent("model.pkl").path, "--output", "m",
        ], directory: folder)
        #expect(merge.status == 0, "\(merge.stderr)")
        #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("m/unet/config.json").path))
        let quantize = try CommandRunner.run("dloral-convert", ["quantize", "m", "--weights", "int8", "--output", "k"], directory: folder)
        #expect(quantize.status == 0, "\(quantize.stderr)")
        let written = try Data(contentsOf: folder.appendingPathComponent("k"))
        // Formats/dlrt.md §1: the file starts with the 8-byte magic \x89 D L R T \r \n \x1a.
        #expect(Array(written.prefix(8)) == [0x89, 0x44, 0x4C, 0x52, 0x54, 0x0D, 0x0A, 0x1A], "the file written is not a .dlrt")
    }
}
