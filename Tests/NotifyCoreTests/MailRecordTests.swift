// Tests for `MailRecord`: field cleaning (`cleanField`) and the JSON line it
// sends over the ingest socket.

import NotifyCore
import XCTest

final class MailRecordTests: XCTestCase {
    // MARK: - cleanField

    func testCleanFieldControlsDropped() {
        let cases: [(input: String, want: String)] = [
            ("plain text", "plain text"),
            ("", ""),
            ("a\u{0}b", "ab"),
            ("a\nb", "ab"),
            ("a\r\nb", "ab"),
            ("a\u{1B}[31mb", "a[31mb"),
            ("a\u{7F}b", "ab"),
            ("a\u{85}b\u{9F}c", "abc"),
            ("ü\u{A0}€", "ü\u{A0}€"),
        ]
        for item in cases {
            XCTAssertEqual(cleanField(item.input), item.want, "cleanField(\(item.input.debugDescription))")
        }
    }

    func testCleanFieldTabBecomesSpace() {
        XCTAssertEqual(cleanField("a\tb"), "a b")
        XCTAssertEqual(cleanField("\t\t"), "  ")
    }

    func testCleanFieldShortKept() {
        let text = String(repeating: "x", count: MailRecord.maxFieldBytes)
        XCTAssertEqual(cleanField(text), text)
    }

    func testCleanFieldCutAtLimit() {
        let limit = MailRecord.maxFieldBytes
        let cases: [(name: String, input: String, want: String)] = [
            ("ASCII", String(repeating: "x", count: 1000), String(repeating: "x", count: limit)),
            // 499 two-byte characters are 998 bytes.
            ("two-byte", String(repeating: "ü", count: 500), String(repeating: "ü", count: 499)),
            // 332 three-byte characters are 996 bytes, and one more would be 999.
            ("three-byte", String(repeating: "€", count: 400), String(repeating: "€", count: 332)),
            // 249 four-byte characters are 996 bytes.
            ("four-byte", String(repeating: "😀", count: 300), String(repeating: "😀", count: 249)),
            ("ASCII then two-byte", String(repeating: "x", count: 997) + "ü", String(repeating: "x", count: 997)),
            // "e" plus a combining acute accent is one character of 3 bytes; cutting between them would change the text.
            ("combining", String(repeating: "x", count: 996) + "e\u{301}", String(repeating: "x", count: 996)),
            // A flag is one character of two 4-byte scalars.
            ("flag", String(repeating: "x", count: 994) + "🇩🇪", String(repeating: "x", count: 994)),
        ]
        for item in cases {
            let got = cleanField(item.input)
            XCTAssertEqual(got, item.want, item.name)
            XCTAssertLessThanOrEqual(got.utf8.count, limit, item.name)
            XCTAssertTrue(item.input.hasPrefix(got), "\(item.name): the result must be a prefix of the input")
        }
    }

    func testCleanFieldLimitAfterDropping() {
        // Dropped control characters do not count against the limit.
        let got = cleanField(String(repeating: "\u{1}x", count: 1000))
        XCTAssertEqual(got, String(repeating: "x", count: MailRecord.maxFieldBytes))
    }

    // MARK: - MailRecord

    func testInitCleansFields() {
        let record = MailRecord(
            recipients: ["test"], from: "a\nb", subject: "Hi\r\nBcc: x", messageId: "<m\u{0}>", sender: "s\t",
            queueId: "q\u{7F}")
        XCTAssertEqual(record.from, "ab")
        XCTAssertEqual(record.subject, "HiBcc: x")
        XCTAssertEqual(record.messageId, "<m>")
        XCTAssertEqual(record.sender, "s ")
        XCTAssertEqual(record.queueId, "q")
    }

    func testJSONLineOmitsNil() {
        XCTAssertEqual(MailRecord(recipients: ["test"]).jsonLine(), #"{"recipients":["test"]}"#)
    }

    func testJSONLineFieldOrder() {
        let record = MailRecord(
            recipients: ["a", "b"], from: "f", subject: "s", messageId: "m", size: 1, sender: "e", queueId: "q")
        XCTAssertEqual(
            record.jsonLine(),
            #"{"recipients":["a","b"],"from":"f","subject":"s","messageId":"m","size":1,"sender":"e","queueId":"q"}"#)
    }

    func testJSONLineRoundTrip() throws {
        let records = [
            MailRecord(recipients: ["test"]),
            MailRecord(
                recipients: ["test@example.com", "Other@Example.com"], from: "Alice <alice@example.org>",
                subject: "Hello", messageId: "<abc@example.org>", size: 1234, sender: "bounce@example.org",
                queueId: "4XyZ1"),
            MailRecord(
                recipients: ["jürgen@example.com"], from: "\"Bob \\\" Quote\" <bob@example.org>",
                subject: "</script> & <b>bold</b> \u{2028} ü€😀 e\u{301}", size: 0),
            MailRecord(recipients: ["a"], subject: "tab\there", sender: ""),
            MailRecord(recipients: ["a"], subject: String(repeating: "€", count: 400)),
        ]
        for record in records {
            let line = record.jsonLine()
            XCTAssertFalse(line.contains("\n"), "\(line) must be one line")
            XCTAssertEqual(try IngestProtocol.parseLine(Array(line.utf8)), record, line)
        }
    }
}
