// Tests for the event record: the `receivedAt` timestamp format and the JSON
// object built once per event.

import NotifyCore
import XCTest

@testable import NotifyRelay

final class MailEventTests: XCTestCase {
    func testISO8601() {
        let cases: [(seconds: Int, text: String)] = [
            (0, "1970-01-01T00:00:00Z"),
            (59, "1970-01-01T00:00:59Z"),
            (86_399, "1970-01-01T23:59:59Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_733_338_800, "2024-12-04T19:00:00Z"),
            (1_798_403_045, "2026-12-27T20:24:05Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
            (-1, "1969-12-31T23:59:59Z"),
        ]
        for item in cases {
            XCTAssertEqual(iso8601(time_t(item.seconds)), item.text, "iso8601(\(item.seconds))")
        }
    }

    func testEventJSON() throws {
        let record = MailRecord(
            recipients: ["Test@Example.com"], from: "Zoë \"Z\" <z@example.org>", subject: "Line\nbreak </script>",
            messageId: "<id@example.org>", size: 42, sender: "bounce@example.org", queueId: "4XyZ1")
        let event = MailEvent(
            sequence: 7, cursor: "e1-7", inbox: Inbox(key: "test", recipient: "test@example.com"), record: record,
            receivedMonotonic: 1234, wallClock: 0)
        XCTAssertEqual(event.sequence, 7)
        XCTAssertEqual(event.inboxKey, "test")
        XCTAssertEqual(event.receivedMonotonic, 1234)

        let json = try parseJSON(Array(event.json.utf8))
        XCTAssertEqual(json["id"], .string("e1-7"))
        XCTAssertEqual(json["recipient"], .string("test@example.com"))
        XCTAssertEqual(json["from"], .string("Zoë \"Z\" <z@example.org>"))
        XCTAssertEqual(json["subject"], .string("Linebreak </script>"), "control characters are dropped at ingest")
        XCTAssertEqual(json["messageId"], .string("<id@example.org>"))
        XCTAssertEqual(json["size"], .number(42))
        XCTAssertEqual(json["receivedAt"], .string("1970-01-01T00:00:00Z"))
        XCTAssertNil(json["sender"], "the envelope sender is not shown to the browser")
        XCTAssertNil(json["queueId"])
        XCTAssertFalse(event.json.contains("</script>"), "'<' is escaped so the JSON can sit in an HTML page")
    }

    func testEventJSONWithoutOptionalFields() throws {
        let event = MailEvent(
            sequence: 1, cursor: "e1-1", inbox: Inbox(key: "a", recipient: "a"), record: MailRecord(recipients: ["a"]),
            receivedMonotonic: 0, wallClock: 0)
        let json = try parseJSON(Array(event.json.utf8))
        guard case .object(let members) = json else { return XCTFail("not an object") }
        XCTAssertEqual(members.map(\.0), ["id", "inbox", "recipient", "receivedAt"])
    }
}
