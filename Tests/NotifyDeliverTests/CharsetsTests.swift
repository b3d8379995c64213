// Table tests for charset decoding and the raw 8-bit header byte fallback.

import XCTest

@testable import NotifyDeliver

final class CharsetsTests: XCTestCase {
    func testCharsetNamesResolve() {
        let cases: [(String, Charset?)] = [
            ("UTF-8", .utf8), ("utf8", .utf8), ("US-ASCII", .usASCII), ("iso-8859-1", .iso8859_1),
            ("Latin1", .iso8859_1), ("ISO-8859-15", .iso8859_15), ("windows-1252", .windows1252),
            ("CP1252", .windows1252), ("x-no-such-charset", nil), ("utf-8//TRANSLIT", nil), ("", nil),
        ]
        for (name, expected) in cases {
            XCTAssertEqual(Charset(name: name), expected, "charset name \(name)")
        }
    }

    func testSingleByteTables() {
        let cases: [(Charset, [UInt8], String)] = [
            (.iso8859_1, [0x63, 0x61, 0x66, 0xE9], "café"),
            (.iso8859_1, [0xA4], "\u{A4}"),
            (.iso8859_15, [0xA4], "€"),
            (.iso8859_15, [0xBD, 0xBE], "œŸ"),
            (.windows1252, [0x93, 0x68, 0x69, 0x94], "“hi”"),
            (.windows1252, [0x80, 0x85, 0x99], "€…™"),
            (.windows1252, [0x81], "\u{FFFD}"),
            (.usASCII, [0x61, 0xE9], "a\u{FFFD}"),
            (.utf8, [0x61, 0xFF, 0x62], "a\u{FFFD}b"),
        ]
        for (charset, bytes, expected) in cases {
            XCTAssertEqual(charset.decode(bytes), expected, "\(charset) \(bytes)")
        }
    }

    func testIconvFallbackDecodesKOI8R() throws {
        guard let charset = Charset(name: "KOI8-R") else {
            throw XCTSkip("iconv on this system has no KOI8-R converter")
        }
        XCTAssertEqual(charset, .iconv("koi8-r"))
        XCTAssertEqual(charset.decode([0xF0, 0xD2, 0xC9, 0xD7, 0xC5, 0xD4]), "Привет")
    }

    func testRawHeaderBytesFallBackToWindows1252() {
        let cases: [([UInt8], String)] = [
            (Array("plain".utf8), "plain"),
            (Array("café".utf8), "café"),
            ([0x63, 0x61, 0x66, 0xE9], "café"),
            ([0x93, 0x71, 0x94], "“q”"),
            (Array("é".utf8) + [0xE9], "éé"),
            ([0xC0, 0xAF], "À¯"),  // overlong '/' is not accepted as UTF-8
            ([0xED, 0xA0, 0x80], "í\u{A0}€"),  // a UTF-16 surrogate is not valid UTF-8
            ([0xE2, 0x82], "â‚"),  // truncated sequence
        ]
        for (bytes, expected) in cases {
            XCTAssertEqual(decodeHeaderBytes(bytes), expected, "bytes \(bytes)")
        }
    }
}
