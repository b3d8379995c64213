// Requests on several inboxes at once (`/?inbox=a&inbox=b`), end to end. A
// long-poll wakes on an event for any of them, and one cursor resumes all of
// them without loss. An event stream carries the events of each, and requests
// over the inbox limit get 400.

import Foundation
import XCTest

/// The JSON body of a long-poll on several inboxes.
struct MultiPollBody: Decodable {
    let inboxes: [String]
    let cursor: String
    let gap: Bool
    let messages: [Message]

    struct Message: Decodable {
        let id: String
        let inbox: String
        let subject: String?
    }
}

final class MultiInboxTests: RelayTestCase {
    func testLongPollWakesOnSecondInbox() throws {
        let relay = try startRelay()
        let waiter = try HTTPTestClient(port: relay.httpPort)
        try waiter.sendGet("/?inbox=a&inbox=b&format=json&timeout=30")
        try waitForEarlierRequests(relay: relay)

        let cursor = try publish(inbox: "b", subject: "for b", to: relay)
        let response = try waiter.readResponse(within: 10)
        XCTAssertEqual(response.status, 200, response.bodyText)
        XCTAssertEqual(response.header("Notify-Cursor"), cursor)
        let body = try JSONDecoder().decode(MultiPollBody.self, from: Data(response.body))
        XCTAssertEqual(body.inboxes, ["a", "b"])
        XCTAssertEqual(body.cursor, cursor)
        XCTAssertFalse(body.gap)
        XCTAssertEqual(body.messages.map(\.id), [cursor])
        XCTAssertEqual(body.messages.map(\.inbox), ["b"])
        XCTAssertEqual(body.messages.map(\.subject), ["for b"])
    }

    func testOneCursorResumesBothInboxes() throws {
        let relay = try startRelay()
        let client = try HTTPTestClient(port: relay.httpPort)
        let first = try client.get("/?inbox=a&inbox=b&format=json&timeout=0")
        XCTAssertEqual(first.status, 204, first.bodyText)
        let start = try XCTUnwrap(first.header("Notify-Cursor"), "204 without Notify-Cursor")

        // Events for both inboxes, and one for neither, arrive while no request waits.
        let forA = try publish(inbox: "a", subject: "for a", to: relay)
        _ = try publish(inbox: "c", subject: "for c", to: relay)
        let forB = try publish(inbox: "b", subject: "for b", to: relay)

        let response = try client.get("/?inbox=a&inbox=b&since=\(start)&format=json&timeout=30")
        XCTAssertEqual(response.status, 200, response.bodyText)
        let body = try JSONDecoder().decode(MultiPollBody.self, from: Data(response.body))
        XCTAssertFalse(body.gap)
        XCTAssertEqual(body.messages.map(\.id), [forA, forB])
        XCTAssertEqual(body.messages.map(\.inbox), ["a", "b"])
        XCTAssertEqual(body.cursor, forB)

        // The returned cursor has seen both, so the next poll times out.
        let next = try client.get("/?inbox=a&inbox=b&since=\(body.cursor)&format=json&timeout=1")
        XCTAssertEqual(next.status, 204, next.bodyText)
    }

    func testEventStreamCarriesBothInboxes() throws {
        let relay = try startRelay()
        let stream = try EventStreamClient(port: relay.httpPort, target: "/?inbox=a&inbox=b&format=sse")
        _ = try stream.readOpening()

        let forA = try publish(inbox: "a", subject: "for a", to: relay)
        _ = try publish(inbox: "c", subject: "for c", to: relay)
        let forB = try publish(inbox: "b", subject: "for b", to: relay)
        let events = try stream.readEvents(2)
        XCTAssertEqual(events.map(\.id), [forA, forB])
        XCTAssertEqual(try events.map { try $0.decodeData(StreamMailData.self).inbox }, ["a", "b"])
    }

    func testTooManyInboxesRejected() throws {
        let relay = try startRelay()
        let client = try HTTPTestClient(port: relay.httpPort)
        let seventeen = (1...17).map { "inbox=i\($0)" }.joined(separator: "&")
        let response = try client.get("/?\(seventeen)&timeout=0")
        XCTAssertEqual(response.status, 400, response.bodyText)
        XCTAssertTrue(response.bodyText.contains("17"), response.bodyText)

        // Sixteen, the default limit, is accepted.
        let sixteen = (1...16).map { "inbox=i\($0)" }.joined(separator: "&")
        let accepted = try HTTPTestClient(port: relay.httpPort).get("/?\(sixteen)&timeout=0")
        XCTAssertEqual(accepted.status, 204, accepted.bodyText)
    }

    func testMaxInboxesOptionLowersLimit() throws {
        let relay = try startRelay(extraArguments: ["--max-inboxes-per-request", "2"])
        let client = try HTTPTestClient(port: relay.httpPort)
        let three = try client.get("/?inbox=a&inbox=b&inbox=c&timeout=0")
        XCTAssertEqual(three.status, 400, three.bodyText)
        XCTAssertTrue(three.bodyText.contains("--max-inboxes-per-request"), three.bodyText)

        let two = try HTTPTestClient(port: relay.httpPort).get("/?inbox=a&inbox=b&timeout=0")
        XCTAssertEqual(two.status, 204, two.bodyText)
    }
}
