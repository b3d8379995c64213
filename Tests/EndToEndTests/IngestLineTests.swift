// The ingest line protocol spoken directly to the built relay, as a person
// with a socket client or another program would: bare addresses, JSON
// records, errors, several lines in one write, oversized lines, and the
// optional TCP ingest listener.

import Foundation
import XCTest

final class IngestLineTests: RelayTestCase {
    func testBareAddressLine() throws {
        let relay = try startRelay()
        let start = try currentCursor(inbox: "test", relay: relay)

        let reply = try sendIngestLine("test@example.com", to: relay)
        XCTAssertTrue(reply.hasPrefix("OK "), reply)

        let client = try HTTPTestClient(port: relay.httpPort)
        let response = try client.get("/test?since=\(start)&format=json&timeout=10")
        XCTAssertEqual(response.status, 200, response.bodyText)
        let body = try response.pollBody()
        XCTAssertEqual(body.messages.count, 1, response.bodyText)
        XCTAssertEqual(body.messages.first?.id, String(reply.dropFirst(3)))
    }

    func testCRLFLine() throws {
        let relay = try startRelay()
        let socket = try TestSocket.connectUnix(path: relay.socketPath)
        try socket.send("test\r\n")
        let reply = try socket.readLine(deadline: Deadline(seconds: 10))
        XCTAssertEqual(reply?.hasPrefix("OK "), true, reply ?? "connection closed")
    }

    func testJSONLine() throws {
        let relay = try startRelay()
        let start = try currentCursor(inbox: "test", relay: relay)

        let record = #"{"recipients":["test"],"from":"Bob <bob@example.org>","subject":"JSON line","size":42,"unknownField":true}"#
        let reply = try sendIngestLine(record, to: relay)
        XCTAssertTrue(reply.hasPrefix("OK "), reply)

        let client = try HTTPTestClient(port: relay.httpPort)
        let response = try client.get("/test?since=\(start)&format=json&timeout=10")
        let message = try XCTUnwrap(try response.pollBody().messages.first, response.bodyText)
        XCTAssertEqual(message.subject, "JSON line")
        XCTAssertEqual(message.from, "Bob <bob@example.org>")
        XCTAssertEqual(message.size, 42)
    }

    func testInvalidLinesGetErrAndConnectionStays() throws {
        let relay = try startRelay()
        let socket = try TestSocket.connectUnix(path: relay.socketPath)
        let deadline = Deadline(seconds: 10)

        for line in [#"{"recipients":["test"],"subject":"#, #"{"recipients":[]}"#, #"{"subject":"no recipients"}"#] {
            try socket.send(line + "\n")
            let reply = try socket.readLine(deadline: deadline)
            XCTAssertEqual(reply?.hasPrefix("ERR "), true, "\(line) got: \(reply ?? "connection closed")")
        }

        // The same connection still publishes.
        try socket.send("test\n")
        let reply = try socket.readLine(deadline: deadline)
        XCTAssertEqual(reply?.hasPrefix("OK "), true, reply ?? "connection closed")
    }

    func testSeveralLinesInOneWriteAnsweredInOrder() throws {
        let relay = try startRelay()
        let start = try currentCursor(inbox: "test", relay: relay)
        let lines = [
            #"{"recipients":["test"],"subject":"first"}"#,
            "{not json",
            "test",
            #"{"recipients":["test"],"subject":"last"}"#,
        ]

        let socket = try TestSocket.connectUnix(path: relay.socketPath)
        try socket.send(lines.map { $0 + "\n" }.joined())
        var replies: [String] = []
        let deadline = Deadline(seconds: 10)
        for _ in lines {
            guard let reply = try socket.readLine(deadline: deadline) else { break }
            replies.append(reply)
        }
        XCTAssertEqual(replies.map { $0.split(separator: " ").first.map(String.init) }, ["OK", "ERR", "OK", "OK"], "\(replies)")
        guard replies.count == 4 else { return }

        // The cursors in the replies are those of the events, in the order sent.
        let cursors = [replies[0], replies[2], replies[3]].map { String($0.dropFirst(3)) }
        let client = try HTTPTestClient(port: relay.httpPort)
        let response = try client.get("/test?since=\(start)&format=json&timeout=10")
        let body = try response.pollBody()
        XCTAssertEqual(body.messages.map(\.id), cursors)
        XCTAssertEqual(body.messages.first?.subject, "first")
        XCTAssertEqual(body.messages.last?.subject, "last")
    }

    func testOversizedLineGetsErrAndClose() throws {
        let relay = try startRelay()
        let socket = try TestSocket.connectUnix(path: relay.socketPath)

        // 70 KiB, past the 64 KiB line limit. The relay may close before it has
        // read everything, so a failed send is expected and not an error.
        let line = String(repeating: "a", count: 70 * 1024) + "\n"
        try? socket.send(line)
        let deadline = Deadline(seconds: 10)
        let reply = try socket.readLine(deadline: deadline)
        XCTAssertEqual(reply?.hasPrefix("ERR "), true, reply ?? "connection closed without a reply")
        let rest = try socket.readToEnd(deadline: deadline)
        XCTAssertTrue(socket.reachedEndOfStream, "connection not closed after the oversized line")
        XCTAssertTrue(rest.isEmpty, "unexpected bytes after ERR: \(preview(rest))")

        // Other ingest clients are unaffected.
        let next = try sendIngestLine("test", to: relay)
        XCTAssertTrue(next.hasPrefix("OK "), next)
    }

    func testTCPIngestPublishes() throws {
        let port = try unusedLoopbackPort()
        let relay = try startRelay(extraArguments: ["--ingest-tcp", "127.0.0.1:\(port)"])
        let start = try currentCursor(inbox: "test", relay: relay)

        let socket = try TestSocket.connectTCP(port: port)
        try socket.send(#"{"recipients":["test"],"subject":"over TCP"}"# + "\n")
        let reply = try XCTUnwrap(try socket.readLine(deadline: Deadline(seconds: 10)), "TCP ingest closed without a reply")
        XCTAssertTrue(reply.hasPrefix("OK "), reply)

        let client = try HTTPTestClient(port: relay.httpPort)
        let response = try client.get("/test?since=\(start)&format=json&timeout=10")
        XCTAssertEqual(try response.pollBody().messages.map(\.subject), ["over TCP"])
    }
}
