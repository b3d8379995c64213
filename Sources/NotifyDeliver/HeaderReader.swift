// Parses a message's header block (RFC 5322 section 2.2) into header fields.
//
// Lines end in LF or CRLF. A line that starts with a space or tab continues
// the previous field, and unfolding removes only the line break, as RFC 5322
// section 2.2.3 specifies. The block ends at the first empty line or at the first
// line that is neither a field nor a continuation, which is where MTAs start
// the body when the blank separator line is missing.
//
// Trust boundary: the bytes are a stranger's message. Field values are decoded
// here (raw 8-bit bytes, then RFC 2047 encoded words) and are cleaned of
// control characters later by `MailRecord`. Nothing here traps on bad input.
//
// Known limits: the caller caps the block (see `MessageReader`), so a field
// that crosses the cap is cut and the last, incomplete line is still parsed.

/// One header field, with its value unfolded but not yet decoded.
public struct HeaderField: Equatable, Sendable {
    /// The field name as written (compare it case-insensitively).
    public var name: String
    /// The value bytes after the colon, unfolded, with leading and trailing whitespace kept.
    public var rawValue: [UInt8]

    public init(name: String, rawValue: [UInt8]) {
        self.name = name
        self.rawValue = rawValue
    }

    /// The value as text: raw 8-bit bytes decoded (see `decodeHeaderBytes`),
    /// surrounding whitespace trimmed and RFC 2047 encoded words decoded.
    public var value: String {
        var bytes = rawValue[...]
        while let first = bytes.first, isFoldingWhitespace(first) { bytes = bytes.dropFirst() }
        while let last = bytes.last, isFoldingWhitespace(last) { bytes = bytes.dropLast() }
        return decodeEncodedWords(decodeHeaderBytes(Array(bytes)))
    }
}

/// The header fields of one message, in the order they appear.
public struct HeaderBlock: Equatable, Sendable {
    public var fields: [HeaderField]

    public init(fields: [HeaderField] = []) {
        self.fields = fields
    }

    /// Returns the topmost field named `name` (case-insensitive), or nil.
    public func first(_ name: String) -> HeaderField? {
        let key = name.lowercased()
        return fields.first { $0.name.lowercased() == key }
    }

    /// Returns the decoded value of the topmost field named `name`, or nil when absent.
    public func value(_ name: String) -> String? {
        first(name)?.value
    }
}

/// Parses the header block at the start of `bytes`. The block ends at the first
/// empty line, at the first line that is not a header field, or at the end.
public func parseHeaderBlock(_ bytes: [UInt8]) -> HeaderBlock {
    var fields: [HeaderField] = []
    var lineStart = 0

    while lineStart < bytes.count {
        var lineEnd = lineStart
        while lineEnd < bytes.count, bytes[lineEnd] != 0x0A { lineEnd += 1 }
        let nextLine = lineEnd + 1
        if lineEnd > lineStart, bytes[lineEnd - 1] == 0x0D { lineEnd -= 1 }
        let line = bytes[lineStart..<lineEnd]
        lineStart = nextLine

        if line.isEmpty { break }

        // A continuation line: unfolding keeps its leading whitespace.
        if line.first == 0x20 || line.first == 0x09 {
            if !fields.isEmpty { fields[fields.count - 1].rawValue += line }
            continue
        }
        guard let field = parseFieldLine(line) else { break }
        fields.append(field)
    }
    return HeaderBlock(fields: fields)
}

/// Splits `name: value`; the name is printable ASCII without a colon (RFC 5322
/// section 3.6.8), with whitespace before the colon allowed as obsolete syntax.
private func parseFieldLine(_ line: ArraySlice<UInt8>) -> HeaderField? {
    guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return nil }
    var name = line[line.startIndex..<colon]
    while let last = name.last, last == 0x20 || last == 0x09 { name = name.dropLast() }
    guard !name.isEmpty, name.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
    return HeaderField(name: String(decoding: name, as: UTF8.self), rawValue: Array(line[(colon + 1)...]))
}
