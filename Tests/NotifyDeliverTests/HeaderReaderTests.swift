// Table tests for the header block parser: folding, line endings, decoding.

import XCTest

@testable import NotifyDeliver

final class HeaderReaderTests: XCTestCase {
    private func headers(_ text: String) -> HeaderBlock {
        parseHeaderBlock(Array(text.utf8))
    }

    func testFieldValues() {
        let cases: [(String, String, String, String?)] = [
            ("LF line ends", "Subject: Hi\nFrom: a@b\n\nbody", "From", "a@b"),
            ("CRLF line ends", "Subject: Hi\r\nFrom: a@b\r\n\r\nbody", "From", "a@b"),
            ("folded with space", "Subject: Hello\n world\n\n", "Subject", "Hello world"),
            ("folded with tab", "Subject: Hello\r\n\tworld\r\n\r\n", "Subject", "Hello\tworld"),
            ("folded several times", "Subject: a\n b\n c\nX: y\n\n", "Subject", "a b c"),
            ("name case-insensitive", "SUBJECT: Hi\n\n", "subject", "Hi"),
            ("space before colon", "Subject : Hi\n\n", "Subject", "Hi"),
            ("empty value", "Subject:\n\n", "Subject", ""),
            ("topmost wins", "Delivered-To: a@x\nDelivered-To: b@x\n\n", "Delivered-To", "a@x"),
            ("encoded words folded", "Subject: =?utf-8?Q?a?=\n =?utf-8?Q?b?=\n\n", "Subject", "ab"),
            ("encoded words CRLF folded", "Subject: =?UTF-8?B?w6k=?=\r\n =?UTF-8?B?w6g=?=\r\n\r\n", "Subject", "éè"),
            ("no body", "Subject: only headers\n", "Subject", "only headers"),
            ("no final newline", "Subject: cut", "Subject", "cut"),
            ("field after body ignored", "Subject: a\n\nFrom: x\n", "From", nil),
            ("stops at non-field line", "Subject: a\nnot a header\nFrom: x\n", "From", nil),
            ("absent field", "Subject: a\n\n", "From", nil),
        ]
        for (name, text, field, expected) in cases {
            XCTAssertEqual(headers(text).value(field), expected, name)
        }
    }

    func testRawEightBitBytes() {
        let latin1: [UInt8] = Array("Subject: caf".utf8) + [0xE9] + Array("\n\n".utf8)
        XCTAssertEqual(parseHeaderBlock(latin1).value("Subject"), "café")

        let utf8 = Array("Subject: café\n\n".utf8)
        XCTAssertEqual(parseHeaderBlock(utf8).value("Subject"), "café")

        let quotes: [UInt8] = Array("From: ".utf8) + [0x93, 0x41, 0x94] + Array(" <a@b>\n".utf8)
        XCTAssertEqual(parseHeaderBlock(quotes).value("From"), "“A” <a@b>")
    }

    func testEmptyInputHasNoFields() {
        XCTAssertEqual(parseHeaderBlock([]).fields.count, 0)
        XCTAssertEqual(parseHeaderBlock(Array("\n".utf8)).fields.count, 0)
        XCTAssertEqual(parseHeaderBlock(Array("\r\nSubject: x\n".utf8)).fields.count, 0)
    }

    func testContinuationWithoutFieldIgnored() {
        let block = headers(" leading continuation\nSubject: a\n\n")
        XCTAssertEqual(block.value("Subject"), "a")
        XCTAssertEqual(block.fields.count, 1)
    }
}
