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
            return "\(file): tensor '\(tensor)': \(message)"
        }
        return "\(file): \(message)"
    }
}
