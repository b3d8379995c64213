// Tests for --ingest-user: the relay checks the peer's user id on the ingest
// Unix socket with SO_PEERCRED and answers ERR to every other user.

import Glibc
import XCTest

final class IngestUserTests: RelayTestCase {
    func testListedUserPublishes() throws {
        let relay = try startRelay(extraArguments: ["--ingest-user", String(getuid())])
        let reply = try sendIngestLine("allowed", to: relay)
        XCTAssertTrue(reply.hasPrefix("OK "), reply)
    }

    func testOtherUserRejected() throws {
        // 4242 stands for the MTA's user; the test runs as another user, such as root.
        let relay = try startRelay(extraArguments: ["--ingest-user", "4242"])
        let socket = try TestSocket.connectUnix(path: relay.socketPath)
        let reply = try XCTUnwrap(socket.readLine(deadline: Deadline(seconds: 10)), "closed without a reply")
        XCTAssertEqual(reply, "ERR user id \(getuid()) may not publish here; add it with --ingest-user")
        XCTAssertTrue(
            waitUntil(seconds: 5) { relay.log.contains("msg=\"ingest connection rejected\"") },
            "no log line for the rejected connection:\n\(relay.log)")
        let check = try sendIngestLine("x", to: relay)
        XCTAssertTrue(check.hasPrefix("ERR user id"), "a second connection was accepted: \(check)")
    }

    func testUnknownUserNameStopsStartup() throws {
        let relay = try launchRelay(socketName: "relay.sock", extraArguments: ["--ingest-user", "no-such-user-here"])
        XCTAssertEqual(relay.waitForExit(within: 10), 64)
        XCTAssertTrue(relay.log.contains("no such user"), relay.log)
    }
}
