import DLoRALFormats
import Foundation
import Testing

@Suite("safetensors reader")
struct SafetensorsReaderTests {
    /// Reads a valid two-tensor file whose values are known in closed form.
    @Test func readsValidFile() throws {
        let folder = try TestPaths.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        // a: F32 [2,2] = 1, -2, 0.5, 3 ; b: F16 [3] = 1.0, -0.5, 2.0 (IEEE half bit patterns)
        var data = [UInt8]()
        for v: Float in [1, -2, 0.5, 3] { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        for bits: UInt16 in [0x3C00, 0xB800, 0x4000] { withUnsafeBytes(of: bits.littleEndian) { data.append(contentsOf: $0) } }
        let header = #"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F16","shape":[3],"data_offsets":[16,22]}}"#
        let path = try TestPaths.write(safetensorsBytes(header: header, data: data), in: folder)
        let file = try SafetensorsFile(path: path)
        #expect(file.table.names == ["a", "b"])
        #expect(file.table.metadata["format"] == "pt")
        #expect(file.table["a"]!.toFloat32() == [1, -2, 0.5, 3])
        #expect(file.table["b"]!.toFloat32() == [1.0, -0.5, 2.0])
        #expect(file.table["b"]!.shape == [3])
    }

    @Test func bfloat16AndIntegersConvert() throws {
        let folder = try TestPaths.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        var data = [UInt8]()
        // BF16 of 1.5 is the top half of 0x3FC00000; -3.0 → 0xC040.
        for bits: UInt16 in [0x3FC0, 0xC040] { withUnsafeBytes(of: bits.littleEndian) { data.append(contentsOf: $0) } }
        for v: Int64 in [-5, 1 << 20] { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
        data.append(contentsOf: [0, 1, 1])
        let header = #"{"bf":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},"i":{"dtype":"I64","shape":[2],"data_offsets":[4,20]},"m":{"dtype":"BOOL","shape":[3],"data_offsets":[20,23]}}"#
        let path = try TestPaths.write(safetensorsBytes(header: header, data: data), in: folder)
        let file = try SafetensorsFile(path: path)
        #expect(file.table["bf"]!.toFloat32() == [1.5, -3.0])
        #expect(file.table["i"]!.toFloat32() == [-5, 1_048_576])
        #expect(file.table["m"]!.toFloat32() == [0, 1, 1])
    }

    /// Each malformed header is refused with a message that names the problem.
    @Test(arguments: [
        (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#, 16, "appears twice"),
        (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, 12, "overlaps"),
        (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}"#, 20, "gap"),
        (#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, 8, "needs 12"),
        (#"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}"#, 8, "overflows"),
        // Zero elements, but strides [2^80, 2^40, 1] would overflow (found by Tools/fuzz).
        (#"{"a":{"dtype":"F32","shape":[0,1099511627776,1099511627776],"data_offsets":[0,0]}}"#, 0, "overflows"),
        (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 12, "after the last tensor"),
        (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 4, "truncated"),
        (#"{"__metadata__":{"n":1}}"#, 0, "not a string"),
        (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#, 8, "not valid JSON"),
        (#"{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#, 8, "not supported"),
        (#"[1,2]"#, 0, "JSON object"),
        // A key repeated inside one tensor's entry is not a second tensor named after the key.
        (#"{"a":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}}"#, 8, #"tensor 'a': the key "dtype" appears twice in this tensor's header entry"#),
    ])
    func rejectsMalformedHeaders(header: String, dataBytes: Int, expected: String) throws {
        let folder = try TestPaths.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = try TestPaths.write(
            safetensorsBytes(header: header, data: [UInt8](repeating: 0, count: dataBytes)), in: folder)
        do {
            _ = try SafetensorsFile(path: path)
            Issue.record("expected an error containing '\(expected)'")
        } catch let error as FormatError {
            #expect(error.description.contains(expected), "message was: \(error.description)")
            #expect(error.description.hasPrefix(path))
        }
    }

    @Test func rejectsHeaderLengthPastEndAndHugeHeaders() throws {
        let folder = try TestPaths.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        var pastEnd = [UInt8]()
        withUnsafeBytes(of: UInt64(1000).littleEndian) { pastEnd.append(contentsOf: $0) }
        pastEnd.append(contentsOf: Array("{}".utf8))
        let p1 = try TestPaths.write(pastEnd, name: "past.safetensors", in: folder)
        #expect(throws: FormatError.self) { try SafetensorsFile(path: p1) }
        var huge = [UInt8]()
        withUnsafeBytes(of: UInt64(100_000_001).littleEndian) { huge.append(contentsOf: $0) }
        let p2 = try TestPaths.write(huge, name: "huge.safetensors", in: folder)
        do {
            _ = try SafetensorsFile(path: p2)
            Issue.record("expected an error")
        } catch let error as FormatError {
            #expect(error.description.contains("100 MB"))
        }
        let p3 = try TestPaths.write([1, 2, 3], name: "tiny.safetensors", in: folder)
        #expect(throws: FormatError.self) { try SafetensorsFile(path: p3) }
    }

    @Test func invalidUTF8IsRejected() throws {
        let folder = try TestPaths.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        var bytes = safetensorsBytes(header: #"{"__metadata__":{"k":"xx"}}"#, data: [])
        let at = bytes.count - 4
        bytes[at] = 0xFF
        let path = try TestPaths.write(bytes, in: folder)
        do {
            _ = try SafetensorsFile(path: path)
            Issue.record("expected an error")
        } catch let error as FormatError {
            #expect(error.description.contains("UTF-8"))
        }
    }

    /// Control characters of a file or tensor name are escaped in the one-line message.
    @Test func errorMessagesEscapeControlCharacters() throws {
        let error = FormatError(.malformed, file: "dir/evil\nname\u{1B}[31m.safetensors", tensor: "t\r\u{7F}\u{85}\u{0}", "bad")
        #expect(error.description == #"dir/evil\nname\u{1B}[31m.safetensors: tensor 't\r\u{7F}\u{85}\u{0}': bad"#)
        #expect(!error.description.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) })
        #expect(FormatError(.io, file: "plain é.safetensors", "ok").description == "plain é.safetensors: ok")
    }
}
