// Malformed and oversized HTTP requests against the built relay: each gets
// its 4xx or 5xx status with a one-line text body, and a client waiting on a
// long-poll meanwhile is not disturbed.

import Foundation
import XCTest

final class MalformedRequestTests: RelayTestCase {
    /// Request heads the relay must reject, with the status expected for each.
    /// The oversized ones pass the relay's 8 KiB head limit by 1 KiB.
    let badRequests: [(name: String, request: String, status: Int)] = [
        ("invalid request line", "HELLO\r\n\r\n", 400),
        ("POST", "POST /test HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n", 405),
        ("two path segments", "GET /a/b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 404),
        ("control character in inbox", "GET /te%01st HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400),
        ("invalid timeout", "GET /test?timeout=abc HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400),
        (
            "9 KiB header field",
            "GET /test HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: \(String(repeating: "a", count: 9 * 1024))\r\n\r\n",
            431
        ),
        ("9 KiB URL", "GET /\(String(repeating: "a", count: 9 * 1024)) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 414),
        ("HTTP/2.0", "GET /test HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n", 505),
    ]

    func testMalformedRequestsLeaveWaiterServed() throws {
        let relay = try startRelay(extraArguments: ["--header-timeout", "1"])

        // A waiter that must survive everything below.
        let start = try currentCursor(inbox: "test", relay: relay)
        let waiter = try HTTPTestClient(port: relay.httpPort)
        try waiter.sendGet("/test?since=\(start)&format=json&timeout=60")

        // A client that starts a head and never finishes it.
        let slow = try HTTPTestClient(port: relay.httpPort)
        try slow.sendRaw("GET /test HTTP/1.1\r\nHost: 127.0.0.1\r\n")

        for bad in badRequests {
            let client = try HTTPTestClient(port: relay.httpPort)
            try client.sendRaw(bad.request)
            let response = try client.readResponse(within: 10)
            XCTAssertEqual(response.status, bad.status, "\(bad.name): \(response.bodyText)")
            let text = response.bodyText.trimmingCharacters(in: .newlines)
            XCTAssertFalse(text.isEmpty, "\(bad.name): empty body")
            XCTAssertFalse(text.contains("\n"), "\(bad.name): body is not one line: \(text)")
        }

        // The stalled head gets 408 or a plain close, well within 10 s.
        let slowBytes = try slow.socket.readToEnd(deadline: Deadline(seconds: 10))
        if !slowBytes.isEmpty {
            XCTAssertTrue(
                slowBytes.starts(with: Array("HTTP/1.1 408".utf8)), "stalled head got: \(preview(slowBytes))")
        }

        // None of that gave the waiter a response, and it still gets its event.
        XCTAssertFalse(try waiter.socket.hasInput(within: 0.1), "the waiter got a response before any event")
        let cursor = try publish(inbox: "test", subject: "still served", to: relay)
        let response = try waiter.readResponse(within: 10)
        XCTAssertEqual(response.status, 200, response.bodyText)
        XCTAssertEqual(try response.pollBody().messages.map(\.id), [cursor])
        XCTAssertTrue(relay.isRunning)
    }

    func testOversizedURLSentInPiecesGets414() throws {
        let relay = try startRelay()
        let client = try HTTPTestClient(port: relay.httpPort)

        // The request line alone passes the head limit before its end arrives.
        try client.sendRaw("GET /" + String(repeating: "a", count: 9 * 1024))
        usleep(200_000)
        try? client.sendRaw(" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        let response = try client.readResponse(within: 10)
        XCTAssertEqual(response.status, 414, response.bodyText)
    }
}
