// The relay at its connection limit. Started with a low open-file limit, it
// serves as many long-polls as its limit allows and rejects the rest with 503
// and Retry-After instead of failing. Ingest keeps working at the limit, and
// the relay serves new clients once the others leave.

import Foundation
import XCTest

final class ConnectionLimitTests: RelayTestCase {
    /// RLIMIT_NOFILE for the relay. With no --max-connections, the relay derives
    /// its HTTP connection limit from it and logs that limit at start.
    let openFileLimit = 128
    /// Clients opened at once, more than the relay's limit under `openFileLimit`.
    let clientCount = 100

    func testConnectionsPastLimitGet503() throws {
        let relay = try startRelay(openFileLimit: openFileLimit)
        let maxConnections = try XCTUnwrap(Self.maxConnections(inLog: relay.log), "no max_connections in:\n\(relay.log)")
        XCTAssertLessThan(maxConnections, clientCount, "the test needs more clients than the relay's limit")
        let baseline = try XCTUnwrap(relay.openDescriptorCount())

        // Take the cursor first and wait until the relay has closed that connection,
        // so it does not count against the limit below.
        let start = try currentCursor(inbox: "crowd", relay: relay)
        XCTAssertTrue(waitUntil(seconds: 10) { (relay.openDescriptorCount() ?? Int.max) <= baseline })

        var clients: [HTTPTestClient] = []
        for _ in 0..<clientCount {
            let client = try HTTPTestClient(port: relay.httpPort)
            try client.sendGet("/crowd?since=\(start)&format=json&timeout=60")
            clients.append(client)
        }

        // The clients past the limit get a response at once, while the others wait.
        let expectedRejected = clientCount - maxConnections
        var answered: Set<Int> = []
        let deadline = Deadline(seconds: 10)
        while answered.count < expectedRejected && !deadline.hasPassed {
            for (index, client) in clients.enumerated() where !answered.contains(index) {
                if try client.socket.hasInput(within: 0) { answered.insert(index) }
            }
            usleep(20_000)
        }
        XCTAssertEqual(answered.count, expectedRejected, "clients with a response before any event")
        for index in answered.sorted() {
            let response = try clients[index].readResponse(within: 10)
            XCTAssertEqual(response.status, 503, "client \(index): \(response.bodyText)")
            XCTAssertNotNil(response.header("Retry-After"), "client \(index): 503 without Retry-After")
        }

        // Ingest still works at the limit, and every waiting client gets the event.
        let cursor = try publish(inbox: "crowd", subject: "at the limit", to: relay)
        for (index, client) in clients.enumerated() where !answered.contains(index) {
            let response = try client.readResponse(within: 10)
            XCTAssertEqual(response.status, 200, "client \(index): \(response.bodyText)")
        }

        // Once the clients leave, the relay serves new ones.
        for client in clients { client.socket.close() }
        clients = []
        XCTAssertTrue(waitUntil(seconds: 10) { (relay.openDescriptorCount() ?? Int.max) <= baseline })
        let next = try HTTPTestClient(port: relay.httpPort)
        let response = try next.get("/crowd?since=\(start)&format=json&timeout=10")
        XCTAssertEqual(response.status, 200, response.bodyText)
        XCTAssertEqual(try response.pollBody().messages.map(\.id), [cursor])
        XCTAssertTrue(relay.isRunning)
    }

    /// Parses `max_connections=N` from the `relay started` log line.
    static func maxConnections(inLog log: String) -> Int? {
        guard let line = log.split(separator: "\n").first(where: { $0.contains("msg=\"relay started\"") }) else {
            return nil
        }
        let field = line.split(separator: " ").first { $0.hasPrefix("max_connections=") }
        return field.flatMap { Int($0.dropFirst("max_connections=".count)) }
    }
}
