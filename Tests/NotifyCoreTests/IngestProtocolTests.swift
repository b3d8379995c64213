// Table tests for the ingest line protocol: `IngestProtocol.parseLine` and the
// `OK`/`ERR` reply lines.

import NotifyCore
import XCTest

final class IngestProtocolTests: XCTestCase {
    // MARK: - Bare addresses

    func testBareAddress() throws {
        let cases: [(line: String, recipient: String)] = [
            ("test", "test"),
            ("test@example.com", "test@example.com"),
            ("Jürgen@Example.com", "Jürgen@Example.com"),
            ("  test", "test"),
            ("\ttest@example.com", "test@example.com"),
            ("test  ", "test"),
        ]
        for item in cases {
            let record = try IngestProtocol.parseLine(Array(item.line.utf8))
            XCTAssertEqual(record.recipients, [item.recipient], "parseLine(\(item.line.debugDescription))")
            XCTAssertNil(record.from)
            XCTAssertNil(record.subject)
            XCTAssertNil(record.size)
        }
    }

    func testBareLineInvalidUTF8() {
        XCTAssertEqual(rejection(bytes: [0x74, 0x65, 0xFF]), "the line is not valid UTF-8")
        XCTAssertEqual(rejection(bytes: [0x20, 0xC3]), "the line is not valid UTF-8")
    }

    func testEmptyLine() {
        for line in ["", " ", "\t \t"] {
            XCTAssertEqual(
                rejection(line)?.hasPrefix("empty line"), true, "parseLine(\(line.debugDescription))")
        }
    }

    // MARK: - JSON records

    func testJSONRecordAllFields() throws {
        let line = """
            {"recipients":["test@example.com","other@example.com"],"from":"Alice <alice@example.org>",\
            "subject":"Hello","messageId":"<abc@example.org>","size":1234,\
            "sender":"bounce@example.org","queueId":"4XyZ1"}
            """
        let record = try IngestProtocol.parseLine(Array(line.utf8))
        XCTAssertEqual(record.recipients, ["test@example.com", "other@example.com"])
        XCTAssertEqual(record.from, "Alice <alice@example.org>")
        XCTAssertEqual(record.subject, "Hello")
        XCTAssertEqual(record.messageId, "<abc@example.org>")
        XCTAssertEqual(record.size, 1234)
        XCTAssertEqual(record.sender, "bounce@example.org")
        XCTAssertEqual(record.queueId, "4XyZ1")
    }

    func testJSONRecordMinimal() throws {
        let record = try IngestProtocol.parseLine(Array(#"{"recipients":["test"]}"#.utf8))
        XCTAssertEqual(record, MailRecord(recipients: ["test"]))
    }

    func testJSONRecordLeadingSpaces() throws {
        let record = try IngestProtocol.parseLine(Array(#"  {"recipients":["test"]}  "#.utf8))
        XCTAssertEqual(record.recipients, ["test"])
    }

    func testUnknownFieldsIgnored() throws {
        let line = #"{"version":2,"recipients":["test"],"extra":{"deep":[1,{"x":null}]},"subject":"Hi","z":true}"#
        let record = try IngestProtocol.parseLine(Array(line.utf8))
        XCTAssertEqual(record, MailRecord(recipients: ["test"], subject: "Hi"))
    }

    func testNonStringFieldsIgnored() throws {
        let line = #"{"recipients":["test"],"from":5,"subject":null,"messageId":["x"],"sender":{},"queueId":true}"#
        let record = try IngestProtocol.parseLine(Array(line.utf8))
        XCTAssertEqual(record, MailRecord(recipients: ["test"]))
    }

    func testFieldsCleaned() throws {
        let line = #"{"recipients":["test"],"subject":"a\nb\tc\u0000d","from":"x\r\ny"}"#
        let record = try IngestProtocol.parseLine(Array(line.utf8))
        XCTAssertEqual(record.subject, "ab cd")
        XCTAssertEqual(record.from, "xy")
    }

    func testMissingRecipients() {
        for line in [#"{}"#, #"{"recipient":"test"}"#, #"{"recipients":"test"}"#, #"{"recipients":null}"#] {
            XCTAssertEqual(rejection(line), #"the JSON object has no "recipients" array"#, line)
        }
    }

    func testEmptyRecipients() {
        XCTAssertEqual(rejection(#"{"recipients":[]}"#), #""recipients" is empty"#)
    }

    func testNonStringRecipients() {
        for line in [#"{"recipients":[1]}"#, #"{"recipients":["a",null]}"#, #"{"recipients":[["a"]]}"#] {
            XCTAssertEqual(rejection(line), #""recipients" must contain only strings"#, line)
        }
    }

    func testTooManyRecipients() throws {
        let allowed = Array(repeating: "\"a\"", count: MailRecord.maxRecipients).joined(separator: ",")
        let record = try IngestProtocol.parseLine(Array("{\"recipients\":[\(allowed)]}".utf8))
        XCTAssertEqual(record.recipients.count, MailRecord.maxRecipients)

        let tooMany = allowed + ",\"a\""
        XCTAssertEqual(
            rejection("{\"recipients\":[\(tooMany)]}"), "1001 recipients, more than the 1000 allowed in one record")
    }

    func testInvalidJSON() {
        XCTAssertEqual(
            rejection(#"{"recipients":["test"]"#), "invalid JSON at byte 22: unexpected end of input in an object")
        XCTAssertEqual(rejection(#"{"recipients":["test"]} x"#)?.hasPrefix("invalid JSON"), true)
        XCTAssertEqual(rejection(#"{"recipients":["\uD800"]}"#)?.contains("surrogate"), true)
    }

    func testSize() throws {
        let cases: [(json: String, want: Int?)] = [
            ("0", 0),
            ("1234", 1234),
            ("1234.9", 1234),
            ("999999999999999", 999_999_999_999_999),
            ("-1", nil),
            ("1e15", nil),
            ("1e300", nil),
            ("\"1234\"", nil),
            ("null", nil),
        ]
        for item in cases {
            let record = try IngestProtocol.parseLine(Array("{\"recipients\":[\"a\"],\"size\":\(item.json)}".utf8))
            XCTAssertEqual(record.size, item.want, "size \(item.json)")
        }
    }

    // MARK: - Replies

    func testOKReply() {
        XCTAssertEqual(IngestProtocol.okReply(cursor: "42"), "OK 42\n")
        XCTAssertEqual(IngestProtocol.okReply(cursor: "1733338800000-0"), "OK 1733338800000-0\n")
    }

    func testErrorReply() {
        let cases: [(reason: String, want: String)] = [
            ("bad line", "ERR bad line\n"),
            ("a\nb", "ERR ab\n"),
            ("a\r\nERR forged", "ERR aERR forged\n"),
            ("tab\there\u{0}\u{7F}", "ERR tabhere\n"),
            ("ü", "ERR ü\n"),
            ("", "ERR \n"),
        ]
        for item in cases {
            XCTAssertEqual(IngestProtocol.errorReply(item.reason), item.want, "errorReply(\(item.reason.debugDescription))")
        }
    }

    func testErrorReplyOneLine() {
        let reply = IngestProtocol.errorReply("one\ntwo\rthree\u{0B}four\u{0C}")
        XCTAssertEqual(reply.filter { $0 == "\n" }.count, 1)
        XCTAssertTrue(reply.hasSuffix("\n"))
        XCTAssertFalse(reply.contains("\r"))
    }

    // MARK: - Helpers

    private func rejection(_ line: String) -> String? {
        rejection(bytes: Array(line.utf8))
    }

    /// Returns the reason `parseLine` gives for rejecting `bytes`, or nil when it accepts them.
    private func rejection(bytes: [UInt8]) -> String? {
        do {
            _ = try IngestProtocol.parseLine(bytes)
            return nil
        } catch {
            return error.reason
        }
    }
}
