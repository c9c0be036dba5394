import DLoRALFormats
import Foundation
import Testing

@Suite("safetensors writer")
struct SafetensorsWriterTests {
    /// The closed-form tensors that Tools/interop/check_safetensors.py also computes.
    static func closedFormTable() -> TensorTable {
        var table = TensorTable()
        let f32 = (0..<30).map { (Float($0) - 7) * 0.25 }
        let f16 = (0..<7).map { Float16(Float($0) * 0.5 - 1) }
        let i64: [Int64] = [-(1 << 40), -1, 0, 1, 1 << 40]
        let i8: [Int8] = [-128, -1, 0, 1, 127]
        let u8: [UInt8] = Array(0..<9)
        let scalar: [Double] = [3.5]
        try! table.insert("a.f32", TensorView(dtype: .float32, shape: [2, 3, 5], storage: .copying(f32, origin: "test")), file: "test")
        try! table.insert("b.f16", TensorView(dtype: .float16, shape: [7], storage: .copying(f16, origin: "test")), file: "test")
        try! table.insert("c.i64", TensorView(dtype: .int64, shape: [5], storage: .copying(i64, origin: "test")), file: "test")
        try! table.insert("d.i8", TensorView(dtype: .int8, shape: [5], storage: .copying(i8, origin: "test")), file: "test")
        try! table.insert("e.u8", TensorView(dtype: .uint8, shape: [3, 3], storage: .copying(u8, origin: "test")), file: "test")
        try! table.insert("f.scalar", TensorView(dtype: .float64, shape: [], storage: .copying(scalar, origin: "test")), file: "test")
        table.metadata["writer"] = "dloral"
        table.metadata["format"] = "pt"
        return table
    }

    @Test func roundTripsAndAligns() throws {
        let folder = try TestPaths.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("out.safetensors").path
        let table = Self.closedFormTable()
        try SafetensorsWriter.write(to: path, tensors: table)
        let file = try SafetensorsFile(path: path)
        #expect(file.dataStart % SafetensorsWriter.alignmentBytes == 0)
        #expect(Set(file.table.names) == Set(table.names))
        for name in table.names {
            #expect(file.table[name]!.toFloat32() == table[name]!.toFloat32(), "\(name)")
            #expect(file.table[name]!.shape == table[name]!.shape)
            #expect(file.table[name]!.dtype == table[name]!.dtype)
            let offset = file.table[name]!.storage.bytes.baseAddress! - file.file.bytes.baseAddress!
            #expect(offset % file.table[name]!.dtype.byteSize == 0, "\(name) is misaligned")
        }
        #expect(file.table.metadata["writer"] == "dloral")
    }

    @Test func identicalInputsGiveIdenticalBytes() throws {
        let folder = try TestPaths.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let a = folder.appendingPathComponent("a.safetensors").path
        let b = folder.appendingPathComponent("b.safetensors").path
        try SafetensorsWriter.write(to: a, tensors: Self.closedFormTable())
        try SafetensorsWriter.write(to: b, tensors: Self.closedFormTable())
        #expect(try Data(contentsOf: URL(fileURLWithPath: a)) == Data(contentsOf: URL(fileURLWithPath: b)))
    }

    @Test func failedWriteLeavesNoFile() throws {
        let folder = try TestPaths.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("out.safetensors").path
        let entry = SafetensorsWriter.Entry(name: "x", dtype: .float32, shape: [4])
        #expect(throws: FormatError.self) {
            try SafetensorsWriter.write(to: path, entries: [entry]) { _, sink in
                try [Float](repeating: 1, count: 3).withUnsafeBytes { try sink($0) }  // one short
            }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).isEmpty)
    }

    /// The reference Python `safetensors` package reads our file with identical values.
    @Test func pythonSafetensorsReadsOurFile() throws {
        let folder = try TestPaths.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("interop.safetensors").path
        try SafetensorsWriter.write(to: path, tensors: Self.closedFormTable())
        let script = TestPaths.root.appendingPathComponent("Tools/interop/check_safetensors.py").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "python check failed:\n\(output)")
        #expect(output.contains("6 passed, 0 failed"), "\(output)")
    }
}
