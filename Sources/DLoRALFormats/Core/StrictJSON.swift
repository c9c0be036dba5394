/// A JSON value that keeps object keys in file order and numbers as written.
///
/// Foundation's parser drops duplicate keys silently and loses order; the safetensors header
/// must reject duplicates and our outputs must be byte-stable, so headers go through this.
public indirect enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// A number, kept as its literal text so integers up to 2^64 survive exactly.
    case number(String)
    case string(String)
    case array([JSONValue])
    /// Key/value pairs in file order (duplicates are rejected by the parser).
    case object([(String, JSONValue)])

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.number(a), .number(b)): return a == b
        case let (.string(a), .string(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    public subscript(key: String) -> JSONValue? {
        if case let .object(pairs) = self { return pairs.first { $0.0 == key }?.1 }
        return nil
    }

    public var stringValue: String? {
        if case let .string(s) = self { return s }
        return nil
    }

    /// The value as a non-negative or negative integer, if it is an integer literal that fits.
    public var intValue: Int? {
        guard case let .number(text) = self else { return nil }
        return Int(text)
    }

    public var doubleValue: Double? {
        guard case let .number(text) = self else { return nil }
        return Double(text)
    }

    public var boolValue: Bool? {
        if case let .bool(b) = self { return b }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case let .array(a) = self { return a }
        return nil
    }

    public var objectValue: [(String, JSONValue)]? {
        if case let .object(o) = self { return o }
        return nil
    }

    /// Serialises compactly (no spaces), keys in stored order: identical values give identical bytes.
    public func serialized() -> String {
        var out = ""
        write(into: &out)
        return out
    }

    private func write(into out: inout String) {
        switch self {
        case .null: out += "null"
        case let .bool(b): out += b ? "true" : "false"
        case let .number(n): out += n
        case let .string(s): JSONValue.writeString(s, into: &out)
        case let .array(items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.write(into: &out)
            }
            out += "]"
        case let .object(pairs):
            out += "{"
            for (i, (key, value)) in pairs.enumerated() {
                if i > 0 { out += "," }
                JSONValue.writeString(key, into: &out)
                out += ":"
                value.write(into: &out)
            }
            out += "}"
        }
    }

    private static func writeString(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}

/// A strict RFC 8259 parser over UTF-8 bytes that rejects duplicate object keys.
public struct StrictJSONParser {
    /// Why parsing stopped, with the byte offset.
    public struct Failure: Error, CustomStringConvertible {
        public let offset: Int
        public let reason: String
        /// Set when the failure is a repeated object key.
        public var duplicateKey: String? = nil
        /// For a repeated key: the keys of the objects it is nested in, outermost first (empty
        /// when the repeat is in the top-level object).
        public var duplicateKeyPath: [String] = []
        public var description: String { "\(reason) at byte \(offset)" }
    }

    private let bytes: UnsafeRawBufferPointer
    private var position = 0
    private var depth = 0
    private var keyPath: [String] = []
    private static let maxDepth = 64

    /// Parses exactly one value from `bytes`, allowing surrounding whitespace only.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws -> JSONValue {
        var parser = StrictJSONParser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.parseValue()
        parser.skipWhitespace()
        guard parser.position == bytes.count else {
            throw Failure(offset: parser.position, reason: "unexpected data after the JSON value")
        }
        return value
    }

    public static func parse(_ text: String) throws -> JSONValue {
        var copy = text
        return try copy.withUTF8 { try parse(UnsafeRawBufferPointer($0)) }
    }

    private init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    private mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    private func fail(_ reason: String) -> Failure { Failure(offset: position, reason: reason) }

    private mutating func parseValue() throws -> JSONValue {
        guard position < bytes.count else { throw fail("unexpected end of JSON") }
        switch bytes[position] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw fail("unexpected character")
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws {
        let count = literal.utf8CodeUnitCount
        guard position + count <= bytes.count else { throw fail("unexpected end of JSON") }
        for i in 0..<count where bytes[position + i] != literal.utf8Start[i] {
            throw fail("invalid literal")
        }
        position += count
    }

    private mutating func enter() throws {
        depth += 1
        if depth > StrictJSONParser.maxDepth { throw fail("JSON nested deeper than \(StrictJSONParser.maxDepth)") }
    }

    private mutating func parseObject() throws -> JSONValue {
        try enter()
        defer { depth -= 1 }
        position += 1
        var pairs: [(String, JSONValue)] = []
        var seen = Set<String>()
        skipWhitespace()
        if position < bytes.count, bytes[position] == UInt8(ascii: "}") {
            position += 1
            return .object(pairs)
        }
        while true {
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
                throw fail("expected a string key")
            }
            let keyOffset = position
            let key = try parseString()
            guard seen.insert(key).inserted else {
                throw Failure(offset: keyOffset, reason: "duplicate key \"\(key)\"", duplicateKey: key, duplicateKeyPath: keyPath)
            }
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else {
                throw fail("expected ':'")
            }
            position += 1
            skipWhitespace()
            keyPath.append(key)
            pairs.append((key, try parseValue()))
            keyPath.removeLast()
            skipWhitespace()
            guard position < bytes.count else { throw fail("unexpected end of JSON") }
            if bytes[position] == UInt8(ascii: ",") {
                position += 1
                continue
            }
            if bytes[position] == UInt8(ascii: "}") {
                position += 1
                return .object(pairs)
            }
            throw fail("expected ',' or '}'")
        }
    }

    private mutating func parseArray() throws -> JSONValue {
        try enter()
        defer { depth -= 1 }
        position += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if position < bytes.count, bytes[position] == UInt8(ascii: "]") {
            position += 1
            return .array(items)
        }
        while true {
            skipWhitespace()
            items.append(try parseValue())
            skipWhitespace()
            guard position < bytes.count else { throw fail("unexpected end of JSON") }
            if bytes[position] == UInt8(ascii: ",") {
                position += 1
                continue
            }
            if bytes[position] == UInt8(ascii: "]") {
                position += 1
                return .array(items)
            }
            throw fail("expected ',' or ']'")
        }
    }

    private mutating func parseNumber() throws -> JSONValue {
        let start = position
        if bytes[position] == UInt8(ascii: "-") { position += 1 }
        func digits() -> Int {
            let s = position
            while position < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[position]) {
                position += 1
            }
            return position - s
        }
        let intStart = position
        let intDigits = digits()
        guard intDigits > 0 else { throw fail("invalid number") }
        if intDigits > 1, bytes[intStart] == UInt8(ascii: "0") { throw fail("leading zero in number") }
        if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
            position += 1
            guard digits() > 0 else { throw fail("invalid number") }
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: "e") || bytes[position] == UInt8(ascii: "E") {
            position += 1
            if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") {
                position += 1
            }
            guard digits() > 0 else { throw fail("invalid number") }
        }
        return .number(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self))
    }

    private mutating func parseHex4() throws -> UInt32 {
        guard position + 4 <= bytes.count else { throw fail("unexpected end of JSON in \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[position]
            let digit: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("invalid \\u escape")
            }
            value = value * 16 + digit
            position += 1
        }
        return value
    }

    private mutating func parseString() throws -> String {
        position += 1  // opening quote
        var scalars = String.UnicodeScalarView()
        var runStart = position
        func flushRun() throws {
            if runStart < position {
                let run = UnsafeRawBufferPointer(rebasing: bytes[runStart..<position])
                guard let text = String(validating: run, as: UTF8.self) else {
                    throw Failure(offset: runStart, reason: "invalid UTF-8 in string")
                }
                scalars.append(contentsOf: text.unicodeScalars)
            }
        }
        while true {
            guard position < bytes.count else { throw fail("unterminated string") }
            let c = bytes[position]
            if c == UInt8(ascii: "\"") {
                try flushRun()
                position += 1
                return String(scalars)
            }
            if c < 0x20 { throw fail("control character in string") }
            if c != UInt8(ascii: "\\") {
                position += 1
                continue
            }
            try flushRun()
            position += 1
            guard position < bytes.count else { throw fail("unterminated string") }
            let escape = bytes[position]
            position += 1
            switch escape {
            case UInt8(ascii: "\""): scalars.append("\"")
            case UInt8(ascii: "\\"): scalars.append("\\")
            case UInt8(ascii: "/"): scalars.append("/")
            case UInt8(ascii: "b"): scalars.append("\u{08}")
            case UInt8(ascii: "f"): scalars.append("\u{0C}")
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "u"):
                var code = try parseHex4()
                if (0xD800..<0xDC00).contains(code) {
                    guard position + 2 <= bytes.count, bytes[position] == UInt8(ascii: "\\"),
                        bytes[position + 1] == UInt8(ascii: "u")
                    else { throw fail("unpaired surrogate in string") }
                    position += 2
                    let low = try parseHex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw fail("unpaired surrogate in string") }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(code) {
                    throw fail("unpaired surrogate in string")
                }
                guard let scalar = Unicode.Scalar(code) else { throw fail("invalid \\u escape") }
                scalars.append(scalar)
            default:
                throw fail("invalid escape")
            }
            runStart = position
        }
    }
}

extension JSONValue {
    /// Reads and parses a small JSON file (configs, indexes) strictly.
    /// - Throws: `FormatError` naming the file.
    public static func read(path: String) throws -> JSONValue {
        let file = try MappedFile(path: path)
        do {
            return try StrictJSONParser.parse(file.bytes)
        } catch let failure as StrictJSONParser.Failure {
            throw FormatError(.malformed, file: path, "not valid JSON: \(failure.description)")
        }
    }

    /// An integer literal value.
    public static func int(_ value: Int) -> JSONValue { .number(String(value)) }

    /// A floating-point value printed with the shortest round-trip text.
    public static func double(_ value: Double) -> JSONValue {
        if value.isFinite, value == value.rounded(), abs(value) < 1e15 {
            return .number(String(Int(value)) + ".0")
        }
        return .number(value.isFinite ? "\(value)" : "null")
    }

    /// Returns a copy of an object with `key` set (appended if new).
    public func setting(_ key: String, _ value: JSONValue) -> JSONValue {
        guard case var .object(pairs) = self else { return self }
        if let index = pairs.firstIndex(where: { $0.0 == key }) {
            pairs[index].1 = value
        } else {
            pairs.append((key, value))
        }
        return .object(pairs)
    }

    /// Integer array value, if every element is an integer.
    public var intArray: [Int]? {
        guard let items = arrayValue else { return nil }
        let ints = items.compactMap(\.intValue)
        return ints.count == items.count ? ints : nil
    }

    /// Pretty-printed with two-space indents and keys in stored order (stable bytes).
    public func prettyPrinted(indent: String = "") -> String {
        let inner = indent + "  "
        switch self {
        case let .array(items) where !items.isEmpty && items.contains(where: { if case .object = $0 { return true } else { return false } }):
            return "[\n" + items.map { inner + $0.prettyPrinted(indent: inner) }.joined(separator: ",\n") + "\n" + indent + "]"
        case let .object(pairs) where !pairs.isEmpty:
            return "{\n" + pairs.map { inner + JSONValue.string($0.0).serialized() + ": " + $0.1.prettyPrinted(indent: inner) }
                .joined(separator: ",\n") + "\n" + indent + "}"
        default:
            return serialized()
        }
    }
}
