// Long-poll behaviour of the built relay, end to end. notify-deliver wakes a
// waiting client, cursors return missed events exactly once, and a timeout
// gets 204. Keep-alive connections poll again, and a cursor from an earlier
// relay process reports a gap.

import Foundation
import XCTest

final class LongPollTests: RelayTestCase {
    func testWaiterWakesOnDelivery() throws {
        let relay = try startRelay()
        let subject = "Grüße aus Köln ✉"

        // A waiter with no cursor waits for the next event only.
        let waiter = try HTTPTestClient(port: relay.httpPort)
        try waiter.sendGet("/test?format=json&timeout=30")
        try waitForEarlierRequests(relay: relay)
        XCTAssertFalse(try waiter.socket.hasInput(within: 0.2), "the long-poll got a response before any mail arrived")

        let run = try runDeliver(
            ["--socket", relay.socketPath, "--timeout", "5", "test"],
            message: sampleMessage(subject: subject, messageID: "e2e-wake@example.org"))
        XCTAssertEqual(run.status, 0, "notify-deliver stderr: \(run.stderr)")

        let response = try waiter.readResponse(within: 10)
        XCTAssertEqual(response.status, 200, response.bodyText)
        let body = try response.pollBody()
        XCTAssertEqual(body.inbox, "test")
        XCTAssertFalse(body.gap)
        XCTAssertEqual(response.header("Notify-Cursor"), body.cursor)
        XCTAssertEqual(body.messages.count, 1, response.bodyText)
        let message = try XCTUnwrap(body.messages.first)
        XCTAssertEqual(message.subject, subject)
        XCTAssertEqual(message.recipient, "test")
        XCTAssertEqual(message.from, "Alice <alice@example.org>")
        XCTAssertEqual(message.messageId, "<e2e-wake@example.org>")
        XCTAssertEqual(message.id, body.cursor)
        XCTAssertFalse(message.receivedAt.isEmpty)
    }

    func testTextFormatNamesInbox() throws {
        let relay = try startRelay()
        let before = try currentCursor(inbox: "test", relay: relay)
        _ = try publish(inbox: "test", subject: "plain", to: relay)

        let client = try HTTPTestClient(port: relay.httpPort)
        let response = try client.get("/test?since=\(before)&format=text&timeout=10")
        XCTAssertEqual(response.status, 200)
        XCTAssertTrue(response.bodyText.contains("New mail for: test"), response.bodyText)
        XCTAssertNotNil(response.header("Notify-Cursor"))
    }

    func testSinceReturnsMissedEventsOnceInOrder() throws {
        let relay = try startRelay()
        let before = try currentCursor(inbox: "test", relay: relay)

        // Publish while no client waits, with an event for another inbox between them.
        let first = try publish(inbox: "test", subject: "one", to: relay)
        let second = try publish(inbox: "test", subject: "two", to: relay)
        _ = try publish(inbox: "other", subject: "not for test", to: relay)
        let third = try publish(inbox: "test", subject: "three", to: relay)

        let client = try HTTPTestClient(port: relay.httpPort)
        let missed = try client.get("/test?since=\(before)&format=json&timeout=20", within: 10)
        XCTAssertEqual(missed.status, 200, missed.bodyText)
        let body = try missed.pollBody()
        XCTAssertFalse(body.gap, "gap reported although the relay should hold all three events")
        XCTAssertEqual(body.messages.map(\.subject), ["one", "two", "three"])
        XCTAssertEqual(body.messages.map(\.id), [first, second, third])
        XCTAssertEqual(body.cursor, third)
        XCTAssertEqual(missed.header("Notify-Cursor"), third)

        // The returned cursor has seen everything, so the next poll waits.
        let next = try client.get("/test?since=\(body.cursor)&format=json&timeout=1", within: 10)
        XCTAssertEqual(next.status, 204, next.bodyText)
        XCTAssertEqual(next.header("Notify-Cursor"), third)
    }

    func testLastEventIDResumesLikeSince() throws {
        let relay = try startRelay()
        let first = try publish(inbox: "test", subject: "one", to: relay)
        _ = try publish(inbox: "test", subject: "two", to: relay)
        _ = try publish(inbox: "test", subject: "three", to: relay)

        let client = try HTTPTestClient(port: relay.httpPort)
        let response = try client.get(
            "/test?format=json&timeout=20", extraFields: ["Last-Event-ID: \(first)"], within: 10)
        XCTAssertEqual(response.status, 200, response.bodyText)
        let body = try response.pollBody()
        XCTAssertFalse(body.gap)
        XCTAssertEqual(body.messages.map(\.subject), ["two", "three"])
    }

    func testTimeoutAnswers204WithCursor() throws {
        let relay = try startRelay()
        let client = try HTTPTestClient(port: relay.httpPort)

        let empty = try client.get("/test?timeout=1", within: 10)
        XCTAssertEqual(empty.status, 204)
        XCTAssertTrue(empty.body.isEmpty)
        let emptyCursor = try XCTUnwrap(empty.header("Notify-Cursor"), "204 without Notify-Cursor")
        XCTAssertFalse(emptyCursor.isEmpty)

        // After an event, a timed-out poll carries that event's cursor.
        let cursor = try publish(inbox: "test", subject: "one", to: relay)
        let later = try client.get("/test?since=\(cursor)&timeout=1", within: 10)
        XCTAssertEqual(later.status, 204)
        XCTAssertEqual(later.header("Notify-Cursor"), cursor)
    }

    func testPollTimeoutOptionIsDefault() throws {
        let relay = try startRelay(extraArguments: ["--poll-timeout", "1"])
        let client = try HTTPTestClient(port: relay.httpPort)
        let response = try client.get("/test", within: 10)
        XCTAssertEqual(response.status, 204)
        XCTAssertNotNil(response.header("Notify-Cursor"))
    }

    func testKeepAliveRepollOnOneConnection() throws {
        let relay = try startRelay()
        let start = try currentCursor(inbox: "test", relay: relay)
        let client = try HTTPTestClient(port: relay.httpPort)

        // First request: an event is already there.
        let first = try publish(inbox: "test", subject: "one", to: relay)
        let answer1 = try client.get("/test?since=\(start)&format=json&timeout=20", within: 10)
        XCTAssertEqual(answer1.status, 200, answer1.bodyText)
        XCTAssertEqual(try answer1.pollBody().messages.map(\.id), [first])
        XCTAssertNotEqual(answer1.header("Connection")?.lowercased(), "close")

        // Second request on the same connection times out.
        let answer2 = try client.get("/test?since=\(first)&format=json&timeout=1", within: 10)
        XCTAssertEqual(answer2.status, 204)
        XCTAssertEqual(answer2.header("Notify-Cursor"), first)

        // Third request on the same connection waits and is woken.
        try client.sendGet("/test?since=\(first)&format=json&timeout=30")
        let second = try publish(inbox: "test", subject: "two", to: relay)
        let answer3 = try client.readResponse(within: 10)
        XCTAssertEqual(answer3.status, 200, answer3.bodyText)
        XCTAssertEqual(try answer3.pollBody().messages.map(\.id), [second])
    }

    func testPipelinedRequestsAnsweredInOrder() throws {
        let relay = try startRelay()
        let start = try currentCursor(inbox: "test", relay: relay)
        let cursor = try publish(inbox: "test", subject: "one", to: relay)

        // Two requests in one write: the first gets its response at once, and the second times out.
        let client = try HTTPTestClient(port: relay.httpPort)
        try client.sendRaw(
            "GET /test?since=\(start)&format=json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                + "GET /test?since=\(cursor)&format=json&timeout=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        let first = try client.readResponse(within: 10)
        XCTAssertEqual(first.status, 200, first.bodyText)
        XCTAssertEqual(try first.pollBody().messages.map(\.id), [cursor])
        let second = try client.readResponse(within: 10)
        XCTAssertEqual(second.status, 204, second.bodyText)
    }

    func testHTTP10ConnectionClosesAfterAnswer() throws {
        let relay = try startRelay()
        let client = try HTTPTestClient(port: relay.httpPort)
        try client.sendRaw("GET /test?timeout=0 HTTP/1.0\r\n\r\n")
        let response = try client.readResponse(within: 10)
        XCTAssertEqual(response.status, 204)
        XCTAssertTrue(client.isClosedByServer(within: 10), "HTTP/1.0 connection without keep-alive left open")
    }

    func testIdleKeepAliveConnectionClosed() throws {
        let relay = try startRelay(extraArguments: ["--idle-timeout", "1"])
        let client = try HTTPTestClient(port: relay.httpPort)
        let response = try client.get("/test?timeout=0")
        XCTAssertEqual(response.status, 204)
        XCTAssertTrue(client.isClosedByServer(within: 10), "idle keep-alive connection still open 10 s after a 1 s idle timeout")
    }

    func testGarbageCursorReportsGapAtOnce() throws {
        let relay = try startRelay()
        _ = try publish(inbox: "test", subject: "held", to: relay)

        let client = try HTTPTestClient(port: relay.httpPort)
        let response = try client.get("/test?since=not-a-cursor&format=json&timeout=30", within: 10)
        XCTAssertEqual(response.status, 200, response.bodyText)
        let body = try response.pollBody()
        XCTAssertTrue(body.gap)
        XCTAssertEqual(body.messages.map(\.subject), ["held"])
    }

    func testCursorFromEarlierRelayReportsGap() throws {
        let first = try startRelay()
        let oldCursor = try publish(inbox: "test", subject: "before restart", to: first)
        first.sendTerminate()
        XCTAssertEqual(first.waitForExit(within: 10), 0, "first relay log:\n\(first.log)")

        let second = try startRelay()
        let client = try HTTPTestClient(port: second.httpPort)
        // A relay that waited here would respond only after 30 s, past the 10 s read bound.
        let response = try client.get("/test?since=\(oldCursor)&format=json&timeout=30", within: 10)
        XCTAssertEqual(response.status, 200, response.bodyText)
        let body = try response.pollBody()
        XCTAssertTrue(body.gap, response.bodyText)
        XCTAssertTrue(body.messages.isEmpty, response.bodyText)
        XCTAssertNotEqual(body.cursor, oldCursor)
    }
}
