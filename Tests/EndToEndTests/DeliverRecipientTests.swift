// notify-deliver publishing through the built relay the way an MTA runs it.
// Recipients come from arguments, from the environment Postfix sets or from
// the message headers, and several recipients may come at once. A large
// message is drained from a pipe, and many runs in a row leave no descriptors
// open in the relay.

import Foundation
import XCTest

final class DeliverRecipientTests: RelayTestCase {
    /// Polls `inbox` from `cursor` without waiting and returns the messages found.
    private func messages(inbox: String, since cursor: String, relay: RelayProcess) throws -> [PollBody.Message] {
        let client = try HTTPTestClient(port: relay.httpPort)
        let response = try client.get("/\(inbox)?since=\(cursor)&format=json&timeout=0")
        if response.status == 204 { return [] }
        XCTAssertEqual(response.status, 200, response.bodyText)
        return try response.pollBody().messages
    }

    func testSeveralRecipientsAllNotified() throws {
        let relay = try startRelay()
        let start = try currentCursor(inbox: "alice", relay: relay)

        let run = try runDeliver(
            ["--socket", relay.socketPath, "alice@example.com", "bob@example.com"],
            message: sampleMessage(subject: "for two", messageID: "e2e-two@example.org"))
        XCTAssertEqual(run.status, 0, run.stderr)

        XCTAssertEqual(try messages(inbox: "alice", since: start, relay: relay).map(\.subject), ["for two"])
        XCTAssertEqual(try messages(inbox: "bob", since: start, relay: relay).map(\.subject), ["for two"])
    }

    func testRecipientFromPostfixEnvironment() throws {
        let relay = try startRelay()
        let start = try currentCursor(inbox: "test", relay: relay)

        let run = try runDeliver(
            ["--socket", relay.socketPath],
            message: sampleMessage(subject: "from env", messageID: "e2e-env@example.org"),
            environment: ["ORIGINAL_RECIPIENT": "Test@Example.com"])
        XCTAssertEqual(run.status, 0, run.stderr)

        let found = try messages(inbox: "test", since: start, relay: relay)
        XCTAssertEqual(found.map(\.subject), ["from env"])
    }

    func testRecipientFromDeliveredToHeader() throws {
        let relay = try startRelay()
        let start = try currentCursor(inbox: "test", relay: relay)

        let message = "Delivered-To: test@example.com\r\n" + sampleMessage(subject: "from header", messageID: "e2e-hdr@example.org")
        let run = try runDeliver(["--socket", relay.socketPath], message: message)
        XCTAssertEqual(run.status, 0, run.stderr)

        let found = try messages(inbox: "test", since: start, relay: relay)
        XCTAssertEqual(found.map(\.subject), ["from header"])
    }

    func testLargeMessageDrainedAndSized() throws {
        let relay = try startRelay()
        let start = try currentCursor(inbox: "test", relay: relay)

        // 4 MiB of body, far more than a pipe buffer holds.
        let bodyLine = String(repeating: "x", count: 1022) + "\r\n"
        let body = String(repeating: bodyLine, count: 4096)
        let message = sampleMessage(subject: "large", messageID: "e2e-large@example.org") + body
        let run = try runDeliver(["--socket", relay.socketPath, "--timeout", "10", "test"], message: message)
        XCTAssertEqual(run.status, 0, run.stderr)

        let found = try messages(inbox: "test", since: start, relay: relay)
        XCTAssertEqual(found.map(\.subject), ["large"])
        XCTAssertEqual(found.first?.size, message.utf8.count)
    }

    func testRepeatedDeliveriesLeaveNoDescriptors() throws {
        let relay = try startRelay()
        let baseline = try XCTUnwrap(relay.openDescriptorCount(), "cannot read /proc/\(relay.pid)/fd")
        let start = try currentCursor(inbox: "test", relay: relay)

        // Fewer runs than the 16 events an inbox keeps by default (--history).
        let runs = 12
        for index in 0..<runs {
            let run = try runDeliver(
                ["--socket", relay.socketPath, "test"],
                message: sampleMessage(subject: "run \(index)", messageID: "e2e-run\(index)@example.org"))
            XCTAssertEqual(run.status, 0, "run \(index): \(run.stderr)")
        }

        let settled = waitUntil(seconds: 10) { (relay.openDescriptorCount() ?? Int.max) <= baseline }
        XCTAssertTrue(
            settled, "relay has \(relay.openDescriptorCount() ?? -1) descriptors open after \(runs) deliveries, baseline \(baseline)")
        let found = try messages(inbox: "test", since: start, relay: relay)
        XCTAssertEqual(found.map(\.subject), (0..<runs).map { "run \($0)" })
    }
}
