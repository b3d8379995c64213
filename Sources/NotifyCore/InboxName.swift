// Turns an address or a URL path segment into the key of an inbox.
//
// Both programs call `InboxPolicy.normalize`, so a recipient that notify-deliver
// reports and the path a browser waits on always meet at the same key.
// Trust boundary: the input comes from mail headers, the MTA's environment,
// ingest lines and URL paths, all of them written by strangers. Everything that
// could split a path, a log line or a header (control characters, `/`,
// whitespace) is rejected here, before the name reaches any other code.
//
// Rules, in order: optional percent-decoding (URL paths only), surrounding
// angle brackets removed, split at the last `@`, ASCII case folding, optional
// sub-address stripping (`user+tag` -> `user`), RFC 5321 length limits
// (local part 64 octets, domain 255), then the domain policy. UTF-8 local parts
// (SMTPUTF8, RFC 6531) are accepted as they are; only ASCII letters are folded.
//
// NOTE: a quoted local part containing `@` or whitespace ("a b"@example.com)
// is rejected rather than unquoted; such addresses are rare and would need a
// full RFC 5322 parser.

/// How inbox names are formed: the served domains and sub-address handling.
public struct InboxPolicy: Sendable, Equatable {
    /// Domains this relay serves, lowercased; the first one completes a bare
    /// local part. Empty means the key is the local part alone.
    public var domains: [String]
    /// Sub-address delimiter (`+` in `user+tag`); nil keeps the local part whole.
    public var subaddressDelimiter: UInt8?

    public init(domains: [String] = [], subaddressDelimiter: UInt8? = nil) {
        self.domains = domains.map { String(decoding: asciiLowercased(Array($0.utf8)), as: UTF8.self) }
        self.subaddressDelimiter = subaddressDelimiter
    }

    /// Maximum octets of a local part (RFC 5321 section 4.5.3.1.1).
    public static let maxLocalPartOctets = 64
    /// Maximum octets of a domain (RFC 5321 section 4.5.3.1.2).
    public static let maxDomainOctets = 255

    /// Normalizes `raw` into an inbox, or throws an error that names the value.
    ///
    /// - Parameter percentDecoded: true when `raw` is a URL path segment whose
    ///   `%XX` escapes must be decoded first.
    public func normalize(_ raw: String, percentDecoded: Bool = false) throws(InboxNameError) -> Inbox {
        var bytes = Array(raw.utf8)
        if percentDecoded {
            bytes = try percentDecode(bytes, original: raw)
        }
        bytes = trimmed(bytes)
        if bytes.count >= 2, bytes.first == UInt8(ascii: "<"), bytes.last == UInt8(ascii: ">") {
            bytes = Array(bytes[1..<(bytes.count - 1)])
        }
        guard !bytes.isEmpty else { throw InboxNameError(input: raw, reason: "the name is empty") }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw InboxNameError(input: raw, reason: "the name is not valid UTF-8")
        }
        // The byte loop below checks ASCII only, so C1 controls (U+0080-U+009F, NEL among them)
        // and non-ASCII whitespace such as U+00A0 or U+2028 are checked here, by scalar.
        for scalar in text.unicodeScalars where scalar.value >= 0x80 {
            if scalar.value < 0xA0 {
                throw InboxNameError(input: raw, reason: "control characters are not allowed")
            }
            if scalar.properties.isWhitespace {
                throw InboxNameError(input: raw, reason: "whitespace is not allowed")
            }
        }
        for byte in bytes {
            if byte < 0x20 || byte == 0x7F {
                throw InboxNameError(input: raw, reason: "control characters are not allowed")
            }
            if byte == UInt8(ascii: "/") || byte == UInt8(ascii: "\\") {
                throw InboxNameError(input: raw, reason: "'/' and '\\' are not allowed")
            }
            if byte == UInt8(ascii: " ") {
                throw InboxNameError(input: raw, reason: "whitespace is not allowed")
            }
        }

        // Split at the last '@': a quoted local part may not contain one (see NOTE above).
        var local = bytes
        var domain: [UInt8]? = nil
        if let at = bytes.lastIndex(of: UInt8(ascii: "@")) {
            local = Array(bytes[..<at])
            domain = Array(bytes[(at + 1)...])
            if local.contains(UInt8(ascii: "@")) {
                throw InboxNameError(input: raw, reason: "the address contains more than one '@'")
            }
        }
        local = asciiLowercased(local)
        guard !local.isEmpty else { throw InboxNameError(input: raw, reason: "the local part is empty") }
        // The RFC 5321 limit applies to the address as sent, before any sub-address is stripped.
        guard local.count <= Self.maxLocalPartOctets else {
            throw InboxNameError(
                input: raw, reason: "the local part is \(local.count) octets, more than the \(Self.maxLocalPartOctets) allowed")
        }
        if let delimiter = subaddressDelimiter, let cut = local.firstIndex(of: delimiter), cut > 0 {
            local = Array(local[..<cut])
        }

        if var domain {
            domain = asciiLowercased(domain)
            if domain.last == UInt8(ascii: ".") { domain.removeLast() }
            try validateDomain(domain, raw: raw)
            return try inbox(local: local, domain: String(decoding: domain, as: UTF8.self), raw: raw)
        }
        return try inbox(local: local, domain: nil, raw: raw)
    }

    private func inbox(local: [UInt8], domain: String?, raw: String) throws(InboxNameError) -> Inbox {
        let localPart = String(decoding: local, as: UTF8.self)
        if domains.isEmpty {
            let recipient = domain.map { "\(localPart)@\($0)" } ?? localPart
            return Inbox(key: localPart, recipient: recipient)
        }
        let chosen = domain ?? domains[0]
        guard domains.contains(chosen) else {
            throw InboxNameError(
                input: raw,
                reason: "the domain \(chosen) is not served here (served: \(domains.joined(separator: ", ")))")
        }
        let address = "\(localPart)@\(chosen)"
        return Inbox(key: address, recipient: address)
    }

    private func validateDomain(_ domain: [UInt8], raw: String) throws(InboxNameError) {
        guard !domain.isEmpty else { throw InboxNameError(input: raw, reason: "the domain is empty") }
        guard domain.count <= Self.maxDomainOctets else {
            throw InboxNameError(
                input: raw, reason: "the domain is \(domain.count) octets, more than the \(Self.maxDomainOctets) allowed")
        }
        var labelLength = 0
        for byte in domain {
            if byte == UInt8(ascii: ".") {
                if labelLength == 0 { throw InboxNameError(input: raw, reason: "the domain has an empty label") }
                labelLength = 0
                continue
            }
            let allowed =
                (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte >= 0x80
                || byte == UInt8(ascii: "[") || byte == UInt8(ascii: "]") || byte == UInt8(ascii: ":")
            guard allowed else {
                throw InboxNameError(input: raw, reason: "the domain contains the character '\(Character(Unicode.Scalar(byte)))'")
            }
            labelLength += 1
        }
        if labelLength == 0 { throw InboxNameError(input: raw, reason: "the domain has an empty label") }
    }
}

/// A normalized inbox: the key subscribers wait on and the recipient address events carry.
public struct Inbox: Sendable, Hashable {
    /// The key that browsers wait on: `local` with no domain policy, else `local@domain`.
    public var key: String
    /// The recipient as reported in events, lowercased, with its domain when one was given.
    public var recipient: String

    public init(key: String, recipient: String) {
        self.key = key
        self.recipient = recipient
    }
}

/// An inbox name that cannot be used, with the reason.
public struct InboxNameError: Error, Equatable, CustomStringConvertible {
    public var input: String
    public var reason: String

    public var description: String {
        "invalid inbox name \(quotedForMessage(input)): \(reason)"
    }
}

/// Quotes a stranger's string for an error or log line: control characters
/// escaped, length capped at 80 characters so a log line stays one short line.
public func quotedForMessage(_ text: String) -> String {
    quotedForMessage(text, maxCharacters: 80)
}

/// Quotes `text` like `quotedForMessage(_:)`, cut after `maxCharacters` Unicode scalars.
func quotedForMessage(_ text: String, maxCharacters: Int) -> String {
    var out = "\""
    var count = 0
    for scalar in text.unicodeScalars {
        if count == maxCharacters {
            out += "..."
            break
        }
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case _ where scalar.value < 0x20 || scalar.value == 0x7F:
            out += "\\x" + hexByte(UInt8(scalar.value))
        default: out.unicodeScalars.append(scalar)
        }
        count += 1
    }
    return out + "\""
}

func hexByte(_ byte: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
}

/// Lowercases ASCII letters only, so UTF-8 sequences pass through unchanged.
public func asciiLowercased(_ bytes: [UInt8]) -> [UInt8] {
    bytes.map { ($0 >= 0x41 && $0 <= 0x5A) ? $0 + 0x20 : $0 }
}

private func trimmed(_ bytes: [UInt8]) -> [UInt8] {
    var start = 0
    var end = bytes.count
    while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start += 1 }
    while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
    return Array(bytes[start..<end])
}

private func percentDecode(_ bytes: [UInt8], original: String) throws(InboxNameError) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count)
    var i = 0
    while i < bytes.count {
        if bytes[i] == UInt8(ascii: "%") {
            guard i + 2 < bytes.count, let high = hexValue(bytes[i + 1]), let low = hexValue(bytes[i + 2]) else {
                throw InboxNameError(input: original, reason: "invalid percent-encoding (expected %XX)")
            }
            out.append(high << 4 | low)
            i += 3
        } else {
            out.append(bytes[i])
            i += 1
        }
    }
    return out
}

/// The value of one hexadecimal digit, or nil.
public func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
    default: return nil
    }
}
