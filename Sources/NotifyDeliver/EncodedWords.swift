// RFC 2047 encoded words in header text: `=?charset?B?base64?=` and
// `=?charset?Q?quoted?=`, with an optional RFC 2231 language suffix on the
// charset (`=?utf-8*en?Q?...?=`).
//
// Rules applied (RFC 2047 sections 2, 4 and 6.2): the encoding letter is B or
// Q in either case. In Q, `_` is a space and `=XX` a byte. Whitespace that
// separates two encoded words is dropped, but whitespace next to plain text
// is kept. The payloads of adjacent words in the same charset are joined before
// decoding, so a multi-byte character that a sender split across two words
// still decodes.
//
// Trust boundary: the text comes from a stranger's header field. A word that
// is malformed (bad base64, a broken `=XX`, no closing `?=`) or names a charset
// that `Charset` cannot decode stays in the output as the raw text it was.
//
// Known limits: words are decoded wherever they appear, also inside quoted
// strings and glued to plain text, where RFC 2047 section 5 does not allow
// them. Mail clients decode those too, and a notification is for display only.
// The 75-character length limit of a word is not enforced, for the same reason.

import NotifyCore

/// Decodes every RFC 2047 encoded word in `text`; anything else is kept as it is.
public func decodeEncodedWords(_ text: String) -> String {
    let bytes = Array(text.utf8)
    var output = ""
    var run: (charset: Charset, payload: [UInt8])? = nil
    var literalStart = 0
    var searchFrom = 0

    while let start = findEncodedWordStart(bytes, from: searchFrom) {
        guard let word = parseEncodedWord(bytes, at: start) else {
            searchFrom = start + 2
            continue
        }
        let literal = bytes[literalStart..<start]

        // Whitespace between two encoded words is not part of the text.
        if let current = run, literal.allSatisfy(isFoldingWhitespace) {
            if current.charset == word.charset {
                run!.payload += word.payload
            } else {
                output += current.charset.decode(current.payload)
                run = (word.charset, word.payload)
            }
        } else {
            if let current = run {
                output += current.charset.decode(current.payload)
            }
            output += String(decoding: literal, as: UTF8.self)
            run = (word.charset, word.payload)
        }
        literalStart = word.end
        searchFrom = word.end
    }

    if let current = run {
        output += current.charset.decode(current.payload)
    }
    output += String(decoding: bytes[literalStart...], as: UTF8.self)
    return output
}

/// One well-formed encoded word: its charset, its decoded payload bytes and
/// the index just past its closing `?=`.
struct EncodedWord {
    var charset: Charset
    var payload: [UInt8]
    var end: Int
}

private func findEncodedWordStart(_ bytes: [UInt8], from: Int) -> Int? {
    var index = from
    while index + 1 < bytes.count {
        if bytes[index] == UInt8(ascii: "="), bytes[index + 1] == UInt8(ascii: "?") {
            return index
        }
        index += 1
    }
    return nil
}

/// Parses and decodes the encoded word that starts at `start` (at its `=?`),
/// or returns nil when it is malformed or its charset is unknown.
func parseEncodedWord(_ bytes: [UInt8], at start: Int) -> EncodedWord? {
    // charset: up to the next '?', printable ASCII without spaces.
    var index = start + 2
    let charsetStart = index
    while index < bytes.count, bytes[index] != UInt8(ascii: "?") {
        guard bytes[index] > 0x20, bytes[index] < 0x7F else { return nil }
        index += 1
    }
    guard index < bytes.count, index > charsetStart else { return nil }
    var charsetName = bytes[charsetStart..<index]
    if let star = charsetName.firstIndex(of: UInt8(ascii: "*")) {
        charsetName = charsetName[..<star]  // RFC 2231 language suffix
    }

    // encoding letter, then '?'.
    index += 1
    guard index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "?") else { return nil }
    let encoding = bytes[index] | 0x20  // ASCII lowercase
    index += 2

    // encoded text: up to "?=", with no whitespace and no other '?'.
    let textStart = index
    while index < bytes.count, bytes[index] != UInt8(ascii: "?") {
        guard bytes[index] > 0x20, bytes[index] < 0x7F else { return nil }
        index += 1
    }
    guard index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "=") else { return nil }
    let encodedText = bytes[textStart..<index]
    let end = index + 2

    guard let charset = Charset(name: String(decoding: charsetName, as: UTF8.self)) else { return nil }
    let payload: [UInt8]?
    switch encoding {
    case UInt8(ascii: "b"): payload = decodeBase64(encodedText)
    case UInt8(ascii: "q"): payload = decodeQEncoding(encodedText)
    default: payload = nil
    }
    guard let payload else { return nil }
    return EncodedWord(charset: charset, payload: payload, end: end)
}

/// Decodes the Q encoding of RFC 2047 section 4.2, or returns nil on a broken `=XX`.
func decodeQEncoding(_ text: ArraySlice<UInt8>) -> [UInt8]? {
    var output: [UInt8] = []
    output.reserveCapacity(text.count)
    var index = text.startIndex
    while index < text.endIndex {
        let byte = text[index]
        if byte == UInt8(ascii: "_") {
            output.append(0x20)
            index += 1
        } else if byte == UInt8(ascii: "=") {
            guard index + 2 < text.endIndex, let high = hexValue(text[index + 1]), let low = hexValue(text[index + 2])
            else { return nil }
            output.append(high << 4 | low)
            index += 3
        } else {
            output.append(byte)
            index += 1
        }
    }
    return output
}

/// Decodes standard base64 (RFC 4648 section 4). Padding may be missing, as
/// some senders omit it, but any other character or a stray `=` fails.
func decodeBase64(_ text: ArraySlice<UInt8>) -> [UInt8]? {
    var body = text
    var padding = 0
    while let last = body.last, last == UInt8(ascii: "="), padding < 2 {
        body = body.dropLast()
        padding += 1
    }
    guard body.count % 4 != 1 else { return nil }
    if padding > 0, (body.count + padding) % 4 != 0 { return nil }

    var output: [UInt8] = []
    output.reserveCapacity(body.count * 3 / 4)
    var accumulator: UInt32 = 0
    var bits = 0
    for byte in body {
        guard let value = base64Value(byte) else { return nil }
        accumulator = (accumulator << 6 | UInt32(value)) & 0xFF_FFFF
        bits += 6
        if bits >= 8 {
            bits -= 8
            output.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
        }
    }
    return output
}

private func base64Value(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "A")...UInt8(ascii: "Z"): return byte - UInt8(ascii: "A")
    case UInt8(ascii: "a")...UInt8(ascii: "z"): return byte - UInt8(ascii: "a") + 26
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0") + 52
    case UInt8(ascii: "+"): return 62
    case UInt8(ascii: "/"): return 63
    default: return nil
    }
}

func isFoldingWhitespace(_ byte: UInt8) -> Bool {
    byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A
}
