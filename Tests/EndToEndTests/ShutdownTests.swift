// Orderly shutdown of the built relay on SIGTERM. Waiting long-polls get 204
// with their cursor, so clients can move on at once. Idle connections do not
// keep the process running, the socket file is removed and the exit status is 0.

import Foundation
import XCTest

final class ShutdownTests: RelayTestCase {
    /// Generous bound on the time from SIGTERM to exit.
    let exitWithin: TimeInterval = 5

    func testSigtermAnswersWaitersAndExits() throws {
        let relay = try startRelay()
        let start = try currentCursor(inbox: "test", relay: relay)
        let waiter = try HTTPTestClient(port: relay.httpPort)
        try waiter.sendGet("/test?since=\(start)&format=json&timeout=60")
        try waitForEarlierRequests(relay: relay)

        relay.sendTerminate()
        let response = try waiter.readResponse(within: 10)
        XCTAssertEqual(response.status, 204, response.bodyText)
        XCTAssertEqual(response.header("Notify-Cursor"), start)

        let status = relay.waitForExit(within: exitWithin)
        XCTAssertEqual(status, 0, "relay log:\n\(relay.log)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: relay.socketPath), "socket file left after SIGTERM")
    }

    func testSigtermWithIdleConnectionsExits() throws {
        let relay = try startRelay(extraArguments: ["--idle-timeout", "60", "--header-timeout", "60"])

        // A keep-alive connection between requests, a half-sent request head
        // and an ingest client that sent nothing: none of them may delay exit.
        let keepAlive = try HTTPTestClient(port: relay.httpPort)
        let first = try keepAlive.get("/test?timeout=0")
        XCTAssertEqual(first.status, 204)
        let partial = try HTTPTestClient(port: relay.httpPort)
        try partial.sendRaw("GET /test HTTP/1.1\r\n")
        let ingest = try TestSocket.connectUnix(path: relay.socketPath)
        try waitForEarlierRequests(relay: relay)

        relay.sendTerminate()
        let status = relay.waitForExit(within: exitWithin)
        XCTAssertEqual(status, 0, "relay log:\n\(relay.log)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: relay.socketPath), "socket file left after SIGTERM")
        withExtendedLifetime((keepAlive, partial, ingest)) {}
    }

    func testSigtermAnswersEveryWaiter() throws {
        let relay = try startRelay()
        let start = try currentCursor(inbox: "test", relay: relay)
        var waiters: [HTTPTestClient] = []
        for index in 0..<10 {
            let waiter = try HTTPTestClient(port: relay.httpPort)
            try waiter.sendGet("/inbox\(index % 3)?since=\(start)&timeout=60")
            waiters.append(waiter)
        }
        try waitForEarlierRequests(relay: relay)

        relay.sendTerminate()
        for (index, waiter) in waiters.enumerated() {
            let response = try waiter.readResponse(within: 10)
            XCTAssertEqual(response.status, 204, "waiter \(index): \(response.bodyText)")
            XCTAssertNotNil(response.header("Notify-Cursor"), "waiter \(index)")
        }
        XCTAssertEqual(relay.waitForExit(within: exitWithin), 0, "relay log:\n\(relay.log)")
    }
}
