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
// sub-address stripping (`user+tag` -> `user`, at the first of the configured
// delimiters), RFC 5321 length limits (local part 64 octets, domain 255), then
// the domain policy. UTF-8 local parts (SMTPUTF8, RFC 6531) are accepted as
// they are; only ASCII letters are folded in a local part.
//
// Internationalized domains: a domain label with non-ASCII characters
// (U-label) is lowercased with the Unicode default case mapping. It is then
// converted to its A-label, `xn--` followed by its Punycode (RFC 3492). So
// `user@bücher.example` and `user@xn--bcher-kva.example` are the same inbox,
// and keys and recipients carry the A-label. A label that already starts with
// `xn--` is only lowercased: it is not decoded or checked. The ideographic full
// stops U+3002, U+FF0E and U+FF61 separate labels like `.` (RFC 3490 section 3.1).
// NOTE: this is not full IDNA2008 (RFC 5891): no NFC normalization, no UTS 46
// mapping beyond lowercasing, no check of allowed code points or bidi rules.
// A U-label typed in decomposed form (u + U+0308) gets a different A-label
// than the precomposed one (U+00FC), and is a different inbox.
//
// NOTE: a quoted local part containing `@` or whitespace ("a b"@example.com)
// is rejected rather than unquoted; such addresses are rare and would need a
// full RFC 5322 parser.

/// The rules that form inbox names: the served domains and sub-address handling.
public struct InboxPolicy: Sendable, Equatable {
    /// Domains this relay serves, in canonical form (see `canonicalDomain(_:)`);
    /// the first one completes a bare local part. Empty means the key is the
    /// local part alone.
    public var domains: [String]
    /// Sub-address delimiters (`+` in `user+tag`), as Postfix's recipient_delimiter
    /// lists them: the first occurrence of any of them cuts the local part. Empty
    /// keeps the local part whole.
    public var subaddressDelimiters: [UInt8]

    /// The first sub-address delimiter, or nil when there is none. Setting it
    /// replaces `subaddressDelimiters` with this one delimiter, or with none.
    public var subaddressDelimiter: UInt8? {
        get { subaddressDelimiters.first }
        set { subaddressDelimiters = newValue.map { [$0] } ?? [] }
    }

    public init(domains: [String] = [], subaddressDelimiter: UInt8? = nil) {
        self.init(domains: domains, subaddressDelimiters: subaddressDelimiter.map { [$0] } ?? [])
    }

    /// Creates a policy that cuts a local part at the first of `subaddressDelimiters`.
    ///
    /// A domain in `domains` that `canonicalDomain(_:)` rejects is kept with
    /// its ASCII letters lowercased, so it matches nothing that passes the check.
    public init(domains: [String] = [], subaddressDelimiters: [UInt8]) {
        self.domains = domains.map { domain in
            (try? Self.canonicalDomain(domain)) ?? String(decoding: asciiLowercased(Array(domain.utf8)), as: UTF8.self)
        }
        var unique: [UInt8] = []
        for delimiter in subaddressDelimiters where !unique.contains(delimiter) {
            unique.append(delimiter)
        }
        self.subaddressDelimiters = unique
    }

    /// Characters accepted as sub-address delimiters: the ASCII punctuation that
    /// RFC 5322 allows unquoted in a local part (atext and `.`), except `/`,
    /// which inbox names reject.
    public static let allowedSubaddressDelimiters = "!#$%&'*+-.=?^_`{|}~"

    /// Parses a delimiter option value such as `+` or `+-`, one delimiter a
    /// character, as Postfix's recipient_delimiter is written. The empty string
    /// yields no delimiter. Returns nil when a character is not one of
    /// `allowedSubaddressDelimiters`.
    public static func parseSubaddressDelimiters(_ text: String) -> [UInt8]? {
        let allowed = Array(allowedSubaddressDelimiters.utf8)
        var delimiters: [UInt8] = []
        for byte in text.utf8 {
            guard allowed.contains(byte) else { return nil }
            if !delimiters.contains(byte) { delimiters.append(byte) }
        }
        return delimiters
    }

    /// Maximum octets of a local part (RFC 5321 section 4.5.3.1.1).
    public static let maxLocalPartOctets = 64
    /// Maximum octets of a domain (RFC 5321 section 4.5.3.1.2), counted in its ASCII form.
    public static let maxDomainOctets = 255
    /// Maximum octets of one domain label (RFC 1035 section 2.3.4), counted in its ASCII form.
    public static let maxLabelOctets = 63

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
        // A delimiter at offset 0 would leave an empty local part, so such a name stays whole.
        if let cut = local.firstIndex(where: { subaddressDelimiters.contains($0) }), cut > 0 {
            local = Array(local[..<cut])
        }

        if let domain {
            let canonical = try Self.canonicalDomain(domain, raw: raw)
            return try inbox(local: local, domain: String(decoding: canonical, as: UTF8.self), raw: raw)
        }
        return try inbox(local: local, domain: nil, raw: raw)
    }

    /// Returns `domain` in the form inbox keys use, or throws when it is invalid.
    ///
    /// ASCII letters are lowercased and one trailing dot is removed. Each label
    /// with non-ASCII characters is lowercased and converted to its A-label
    /// (`xn--` and Punycode). The result must fit the length limits: 255 octets
    /// for the domain, 63 for a label (RFC 1035 section 2.3.4).
    ///
    /// The relay can use this for its configured domains, so that `bücher.example`
    /// and `xn--bcher-kva.example` name the same domain.
    public static func canonicalDomain(_ domain: String) throws(InboxNameError) -> String {
        String(decoding: try canonicalDomain(Array(domain.utf8), raw: domain), as: UTF8.self)
    }

    /// Converts and checks a domain; errors name `raw`, the whole input of `normalize`.
    private static func canonicalDomain(_ domain: [UInt8], raw: String) throws(InboxNameError) -> [UInt8] {
        var ascii = asciiLowercased(domain)
        let isInternationalized = ascii.contains { $0 >= 0x80 }
        if isInternationalized {
            ascii = try asciiCompatibleDomain(ascii, raw: raw)
        }
        if ascii.last == UInt8(ascii: ".") { ascii.removeLast() }
        try validateDomain(ascii, raw: raw, isInternationalized: isInternationalized)
        return ascii
    }

    /// Converts each label that has non-ASCII characters to its A-label.
    /// `domain` is valid UTF-8 with ASCII letters already lowercased.
    private static func asciiCompatibleDomain(_ domain: [UInt8], raw: String) throws(InboxNameError) -> [UInt8] {
        let text = String(decoding: domain, as: UTF8.self)
        if text.hasPrefix("[") {
            throw InboxNameError(input: raw, reason: "the address literal contains non-ASCII characters")
        }
        // `normalize` has checked these already; `canonicalDomain(_:)` callers have not.
        for scalar in text.unicodeScalars where !scalar.isASCII {
            if scalar.value < 0xA0 || scalar.properties.isWhitespace || scalar == "\u{FFFD}" {
                throw InboxNameError(input: raw, reason: "the domain contains a control, whitespace or invalid character")
            }
        }
        let labels = text.unicodeScalars.split(omittingEmptySubsequences: false) { labelSeparators.contains($0) }

        var converted: [String] = []
        for label in labels {
            // Lowercasing may turn a label ASCII (U+212A KELVIN SIGN becomes `k`): such a label is kept as it is.
            let lowered = String(String.UnicodeScalarView(label)).lowercased()
            if lowered.unicodeScalars.allSatisfy({ $0.isASCII }) {
                converted.append(lowered)
                continue
            }
            if lowered.hasPrefix(aceLabelPrefix) {
                throw InboxNameError(
                    input: raw, reason: "the domain label \(quotedForMessage(lowered)) starts with xn-- but is not ASCII")
            }
            // Each code point takes at least one octet of the A-label, after the 4 of `xn--`.
            let scalars = Array(lowered.unicodeScalars)
            guard scalars.count <= maxLabelOctets - aceLabelPrefix.utf8.count, let encoded = Punycode.encode(scalars) else {
                throw InboxNameError(
                    input: raw,
                    reason: "the domain label \(quotedForMessage(lowered)) is longer than \(maxLabelOctets) octets as an A-label")
            }
            converted.append(aceLabelPrefix + encoded)
        }
        return Array(converted.joined(separator: ".").utf8)
    }

    /// Label separators: `.` and the three other full stops of RFC 3490 section 3.1.
    private static let labelSeparators: [Unicode.Scalar] = [".", "\u{3002}", "\u{FF0E}", "\u{FF61}"]
    /// The prefix of an A-label (RFC 5890 section 2.3.2.1).
    private static let aceLabelPrefix = "xn--"

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

    private static func validateDomain(_ domain: [UInt8], raw: String, isInternationalized: Bool) throws(InboxNameError) {
        guard !domain.isEmpty else { throw InboxNameError(input: raw, reason: "the domain is empty") }
        let form = isInternationalized ? " as A-labels" : ""
        guard domain.count <= Self.maxDomainOctets else {
            throw InboxNameError(
                input: raw,
                reason: "the domain is \(domain.count) octets\(form), more than the \(Self.maxDomainOctets) allowed")
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
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
                || byte == UInt8(ascii: "[") || byte == UInt8(ascii: "]") || byte == UInt8(ascii: ":")
            guard allowed else {
                throw InboxNameError(input: raw, reason: "the domain contains the character '\(Character(Unicode.Scalar(byte)))'")
            }
            labelLength += 1
            // An address literal such as [IPv6:2001:db8::1] is one token, not a label.
            if labelLength > Self.maxLabelOctets, domain.first != UInt8(ascii: "[") {
                throw InboxNameError(
                    input: raw, reason: "a domain label is longer than the \(Self.maxLabelOctets) octets allowed\(form)")
            }
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
