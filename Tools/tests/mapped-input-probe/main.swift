// Test helper for EndToEndTests/FileSafetyTests: makes a mapped input shrink while it is being
// read, deterministically (the tools themselves can only be raced against). Not shipped.
//
//   dloral-mapped-input-probe <tool> bytes <file>    map, truncate to 0, sum every byte
//   dloral-mapped-input-probe <tool> dlrt <file>     open a .dlrt, truncate to half, verify all
//   dloral-mapped-input-probe <tool> write <file>    map, truncate to 0, write the mapping to <file>.out
//                                                    with AtomicFileWriter (write(2) then fails with EFAULT)
//   dloral-mapped-input-probe <tool> foreign         a fault outside any mapped input
//
// Expected: the first three exit 2 with "<tool>: error: <file>: changed while being read (...)";
// the third dies of SIGSEGV, as it would without the handler.
import DLoRALFormats
#if canImport(Glibc)
import Glibc
#endif

let arguments = CommandLine.arguments
guard arguments.count >= 3 else {
    fputs("usage: dloral-mapped-input-probe <tool> bytes|dlrt <file> | <tool> foreign\n", stderr)
    exit(64)
}
FileGuard.install(tool: arguments[1], interrupts: false)

func truncate(_ path: String, to length: Int) {
    let fd = open(path, O_WRONLY)
    precondition(fd >= 0 && ftruncate(fd, off_t(length)) == 0, "cannot truncate \(path)")
    close(fd)
}

do {
    switch arguments[2] {
    case "bytes":
        let file = try MappedFile(path: arguments[3])
        truncate(arguments[3], to: 0)
        var sum = 0
        for byte in file.bytes { sum &+= Int(byte) }
        print("read all \(file.count) bytes (sum \(sum)) after truncation")
        exit(0)
    case "dlrt":
        let file = try DLRTFile(path: arguments[3])
        var info = stat()
        stat(arguments[3], &info)
        truncate(arguments[3], to: Int(info.st_size) / 2)
        try file.verifyAll()
        print("verified after truncation")
        exit(0)
    case "write":
        let file = try MappedFile(path: arguments[3])
        truncate(arguments[3], to: 0)
        // The writer lives only inside: on the error it is dropped, removing its temporary file.
        func copy() throws {
            let writer = try AtomicFileWriter(path: arguments[3] + ".out")
            try writer.write(file.bytes)
        }
        do {
            try copy()
        } catch let error as FormatError {
            fputs("\(arguments[1]): error: \(error)\n", stderr)
            exit(2)
        }
        print("wrote all \(file.count) bytes after truncation")
        exit(0)
    case "foreign":
        let pointer = UnsafeMutablePointer<Int>(bitPattern: 8)!
        pointer.pointee = 1
        exit(0)
    default:
        exit(64)
    }
} catch {
    fputs("\(arguments[1]): error: \(error)\n", stderr)
    exit(3)
}
