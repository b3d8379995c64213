// Character set decoding for header text: the charsets of RFC 2047 encoded
// words, and raw 8-bit bytes that arrive in header fields unencoded.
//
// UTF-8, US-ASCII, ISO-8859-1, ISO-8859-15 and Windows-1252 are decoded with
// the tables in this file. Any other charset name goes to glibc's iconv(3),
// converting to UTF-8 only. A name that neither the tables nor iconv accept
// yields nil, so the caller can keep the encoded word as raw text.
//
// Trust boundary: both the bytes and the charset name come from a stranger's
// message. Decoding never traps: a byte with no mapping and an invalid UTF-8
// sequence each become U+FFFD. A charset name reaches iconv only if it is at
// most 40 bytes of letters, digits and `-_.:`, so it cannot carry iconv's
// `//TRANSLIT` suffixes or a path.
//
// Known limits: Windows-1252 leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined,
// and they decode to U+FFFD. The iconv path costs one iconv_open per encoded
// word, which is fine for the few header fields kept.

import Glibc
import NotifyCore

/// A character set that header text can be decoded from.
public enum Charset: Equatable, Sendable {
    case utf8
    case usASCII
    case iso8859_1
    case iso8859_15
    case windows1252
    /// Any other charset, decoded through iconv(3) under this name.
    case iconv(String)

    /// Finds the charset for a MIME charset name, case-insensitively, or nil
    /// when the name is neither in the tables here nor known to iconv.
    public init?(name: String) {
        let key = String(decoding: asciiLowercased(Array(name.utf8)), as: UTF8.self)
        switch key {
        case "utf-8", "utf8":
            self = .utf8
        case "us-ascii", "ascii", "ansi_x3.4-1968", "iso646-us":
            self = .usASCII
        case "iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "latin-1", "l1", "cp819":
            self = .iso8859_1
        case "iso-8859-15", "iso8859-15", "iso_8859-15", "latin-9", "latin9":
            self = .iso8859_15
        case "windows-1252", "cp1252", "x-cp1252":
            self = .windows1252
        default:
            guard Charset.isSafeIconvName(key), IconvDecoder.isKnown(key) else { return nil }
            self = .iconv(key)
        }
    }

    /// Decodes `bytes` to a string; bytes with no mapping become U+FFFD.
    public func decode(_ bytes: [UInt8]) -> String {
        switch self {
        case .utf8:
            return String(decoding: bytes, as: UTF8.self)
        case .usASCII:
            return decodeSingleByte(bytes) { $0 < 0x80 ? UInt32($0) : 0xFFFD }
        case .iso8859_1:
            return decodeSingleByte(bytes) { UInt32($0) }
        case .iso8859_15:
            return decodeSingleByte(bytes, iso8859_15Scalar)
        case .windows1252:
            return decodeSingleByte(bytes, windows1252Scalar)
        case .iconv(let name):
            return IconvDecoder.decode(bytes, from: name) ?? String(decoding: bytes, as: UTF8.self)
        }
    }

    private static func isSafeIconvName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 40 else { return false }
        return name.utf8.allSatisfy { byte in
            (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: ":")
        }
    }
}

/// Decodes raw header bytes as UTF-8 where they form valid UTF-8 sequences and
/// as Windows-1252 byte by byte where they do not.
///
/// Raw 8-bit header bytes carry no charset label. Valid UTF-8 is the common
/// case today. The rest is mostly legacy Western mail, and Windows-1252 is a
/// superset of ISO-8859-1's printable characters, so it is the best single
/// guess. Every byte yields a character, so nothing is lost.
public func decodeHeaderBytes(_ bytes: [UInt8]) -> String {
    var scalars = String.UnicodeScalarView()
    var index = 0
    while index < bytes.count {
        let byte = bytes[index]
        if byte < 0x80 {
            scalars.append(Unicode.Scalar(byte))
            index += 1
            continue
        }
        if let (scalar, length) = decodeUTF8Sequence(bytes, at: index) {
            scalars.append(scalar)
            index += length
        } else {
            scalars.append(Unicode.Scalar(windows1252Scalar(byte)) ?? "\u{FFFD}")
            index += 1
        }
    }
    return String(scalars)
}

/// Decodes one well-formed UTF-8 sequence of 2 to 4 bytes at `start`, or
/// returns nil for an invalid, overlong, surrogate or truncated sequence.
func decodeUTF8Sequence(_ bytes: [UInt8], at start: Int) -> (Unicode.Scalar, Int)? {
    let lead = bytes[start]
    let length: Int
    var value: UInt32
    switch lead {
    case 0xC2...0xDF: length = 2; value = UInt32(lead & 0x1F)
    case 0xE0...0xEF: length = 3; value = UInt32(lead & 0x0F)
    case 0xF0...0xF4: length = 4; value = UInt32(lead & 0x07)
    default: return nil
    }
    guard start + length <= bytes.count else { return nil }
    for offset in 1..<length {
        let next = bytes[start + offset]
        guard next & 0xC0 == 0x80 else { return nil }
        value = value << 6 | UInt32(next & 0x3F)
    }

    // Reject overlong forms: the shortest encoding of a value is the only valid one.
    let minimum: UInt32 = length == 2 ? 0x80 : (length == 3 ? 0x800 : 0x10000)
    guard value >= minimum, let scalar = Unicode.Scalar(value) else { return nil }
    return (scalar, length)
}

private func decodeSingleByte(_ bytes: [UInt8], _ map: (UInt8) -> UInt32) -> String {
    var scalars = String.UnicodeScalarView()
    for byte in bytes {
        scalars.append(Unicode.Scalar(map(byte)) ?? "\u{FFFD}")
    }
    return String(scalars)
}

/// Windows-1252 code points for 0x80 through 0x9F; the rest of the code page
/// equals ISO-8859-1. 0xFFFD marks the five undefined bytes.
private let windows1252High: [UInt32] = [
    0x20AC, 0xFFFD, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
    0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0xFFFD, 0x017D, 0xFFFD,
    0xFFFD, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0xFFFD, 0x017E, 0x0178,
]

func windows1252Scalar(_ byte: UInt8) -> UInt32 {
    if byte >= 0x80 && byte <= 0x9F {
        return windows1252High[Int(byte - 0x80)]
    }
    return UInt32(byte)
}

/// ISO-8859-15 differs from ISO-8859-1 in eight positions, the euro sign at 0xA4 among them.
func iso8859_15Scalar(_ byte: UInt8) -> UInt32 {
    switch byte {
    case 0xA4: return 0x20AC
    case 0xA6: return 0x0160
    case 0xA8: return 0x0161
    case 0xB4: return 0x017D
    case 0xB8: return 0x017E
    case 0xBC: return 0x0152
    case 0xBD: return 0x0153
    case 0xBE: return 0x0178
    default: return UInt32(byte)
    }
}

/// Conversion of other charsets to UTF-8 through glibc's iconv(3).
enum IconvDecoder {
    /// iconv_open's failure value, `(iconv_t)-1`, as a bit pattern.
    private static let failedBitPattern = UInt(bitPattern: -1)

    /// True when iconv can convert from `name` to UTF-8.
    static func isKnown(_ name: String) -> Bool {
        guard let converter = iconv_open("UTF-8", name), UInt(bitPattern: converter) != failedBitPattern else { return false }
        iconv_close(converter)
        return true
    }

    /// Converts `bytes` from `name` to a string, with U+FFFD for each byte
    /// that does not convert; nil when iconv cannot open the charset.
    static func decode(_ bytes: [UInt8], from name: String) -> String? {
        guard let converter = iconv_open("UTF-8", name), UInt(bitPattern: converter) != failedBitPattern else { return nil }
        defer { iconv_close(converter) }

        var output: [UInt8] = []
        var input = bytes.map { CChar(bitPattern: $0) }
        var chunk = [CChar](repeating: 0, count: 1024)
        var offset = 0
        while offset < input.count {
            var inLeft = input.count - offset
            var outLeft = chunk.count
            let result = input.withUnsafeMutableBufferPointer { inBuffer in
                chunk.withUnsafeMutableBufferPointer { outBuffer in
                    var inPointer: UnsafeMutablePointer<CChar>? = inBuffer.baseAddress! + offset
                    var outPointer: UnsafeMutablePointer<CChar>? = outBuffer.baseAddress!
                    return iconv(converter, &inPointer, &inLeft, &outPointer, &outLeft)
                }
            }
            let savedErrno = errno
            output.append(contentsOf: chunk[0..<(chunk.count - outLeft)].map { UInt8(bitPattern: $0) })
            offset = input.count - inLeft
            if result != -1 { break }

            // E2BIG: the chunk is full and the loop goes on. EILSEQ or EINVAL:
            // one byte does not convert, so it becomes U+FFFD and is skipped.
            if savedErrno != E2BIG {
                output.append(contentsOf: [0xEF, 0xBF, 0xBD])
                offset += 1
            }
        }
        input.removeAll()
        return String(decoding: output, as: UTF8.self)
    }
}
