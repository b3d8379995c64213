// The relay's ingest socket file across start-ups: a stale file left by a
// killed relay is replaced, while a live relay or a file that is not a socket
// stops the new relay with a message naming the path.

import Foundation
import XCTest

final class SocketFileTests: RelayTestCase {
    func testStaleSocketFileIsReplaced() throws {
        let crashed = try startRelay()
        crashed.killHard()
        XCTAssertTrue(isSocketFile(crashed.socketPath), "SIGKILL should leave the socket file behind")

        let relay = try startRelay()
        XCTAssertEqual(relay.socketPath, crashed.socketPath)
        let reply = try sendIngestLine("test", to: relay)
        XCTAssertTrue(reply.hasPrefix("OK "), reply)
    }

    func testLiveRelayOnPathStopsSecond() throws {
        let live = try startRelay()
        let second = try launchRelay()
        let status = second.waitForExit(within: 10)
        XCTAssertNotNil(status, "second relay still runs on a live relay's socket; log:\n\(second.log)")
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(second.log.contains(live.socketPath), "message does not name the path:\n\(second.log)")

        // The first relay keeps its socket.
        XCTAssertTrue(live.isRunning)
        let reply = try sendIngestLine("test", to: live)
        XCTAssertTrue(reply.hasPrefix("OK "), reply)
    }

    func testRegularFileAtPathStopsRelay() throws {
        let path = scratchPath("relay.sock")
        let contents = Data("not a socket\n".utf8)
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: contents))

        let relay = try launchRelay()
        let status = relay.waitForExit(within: 10)
        XCTAssertNotNil(status, "relay runs with a regular file at its socket path; log:\n\(relay.log)")
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(relay.log.contains(path), "message does not name the path:\n\(relay.log)")

        // The file is left alone.
        XCTAssertEqual(FileManager.default.contents(atPath: path), contents)
    }
}
