/// An input that cannot be read, or must not be.
///
/// Every error names the file and, where it applies, the tensor, and says what was expected,
/// so that the one-line message is enough to act on. The CLI maps all of them to exit code 2.
public struct FormatError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What went wrong, broadly; the message carries the detail.
    public enum Kind: String, Sendable {
        /// The file is missing, unreadable, or could not be mapped or written.
        case io
        /// The bytes do not follow the format (truncated, inconsistent, out of bounds).
        case malformed
        /// The file asks for something we refuse to do (execute code, leave its folder).
        case unsafe
        /// Well-formed, but a variant this toolchain does not read.
        case unsupported
        /// Well-formed, but not what the command needs (wrong model kind, missing tensor).
        case invalidModel
    }

    public var kind: Kind
    /// The file (or folder) the problem is in, as the user named it where possible.
    public var file: String
    /// The tensor concerned, if any.
    public var tensor: String?
    /// What is wrong and, where useful, what was expected and what to do.
    public var message: String

    public init(_ kind: Kind, file: String, tensor: String? = nil, _ message: String) {
        self.kind = kind
        self.file = file
        self.tensor = tensor
        self.message = message
    }

    public var description: String {
        if let tensor {
            return Self.escapingControls("\(file): tensor '\(tensor)': \(message)")
        }
        return Self.escapingControls("\(file): \(message)")
    }

    /// `text` with its control characters (C0, DEL, C1 and the line and paragraph separators)
    /// written as escapes, so that a file or tensor name cannot break the one-line message or
    /// send terminal controls: `\n`, `\r`, `\t`, else `\u{1B}`.
    public static func escapingControls(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where isControl(scalar): out += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029
    }
}
