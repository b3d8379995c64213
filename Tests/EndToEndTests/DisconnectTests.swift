// Clients that vanish while they wait: the relay must drop their subscriptions
// and close their sockets, observed from outside through /proc/PID/fd and the
// subscriber count in the relay's "mail notified" log line.

import Foundation
import XCTest

final class DisconnectTests: RelayTestCase {
    /// Number of waiting connections opened and then dropped, far below the
    /// usual default open-file limit of 1024 for the test process.
    let waiterCount = 50

    func testMassDisconnectFreesSubscribers() throws {
        let relay = try startRelay()
        let baseline = try XCTUnwrap(relay.openDescriptorCount(), "cannot read /proc/\(relay.pid)/fd")

        // Open the waiters and check that the relay has a socket open for each.
        var waiters: [HTTPTestClient] = []
        for _ in 0..<waiterCount {
            let waiter = try HTTPTestClient(port: relay.httpPort)
            try waiter.sendGet("/crowd?timeout=60")
            waiters.append(waiter)
        }
        try waitForEarlierRequests(relay: relay)
        let grew = waitUntil(seconds: 10) { (relay.openDescriptorCount() ?? 0) >= baseline + waiterCount }
        XCTAssertTrue(
            grew, "relay has \(relay.openDescriptorCount() ?? -1) descriptors open, expected at least \(baseline + waiterCount)")

        // Half close normally, half with a TCP reset.
        for (index, waiter) in waiters.enumerated() {
            if index % 2 == 0 {
                waiter.socket.close()
            } else {
                waiter.socket.reset()
            }
        }
        waiters = []
        let shrank = waitUntil(seconds: 10) { (relay.openDescriptorCount() ?? Int.max) <= baseline }
        XCTAssertTrue(
            shrank,
            "relay still has \(relay.openDescriptorCount() ?? -1) descriptors open 10 s after the disconnects, baseline \(baseline)")

        // The relay still serves: a new waiter gets the next event.
        XCTAssertTrue(relay.isRunning)
        let start = try currentCursor(inbox: "crowd", relay: relay)
        let survivor = try HTTPTestClient(port: relay.httpPort)
        try survivor.sendGet("/crowd?since=\(start)&format=json&timeout=30")
        try waitForEarlierRequests(relay: relay)
        let cursor = try publish(inbox: "crowd", subject: "after the crowd left", to: relay)
        let response = try survivor.readResponse(within: 10)
        XCTAssertEqual(response.status, 200, response.bodyText)
        XCTAssertEqual(try response.pollBody().messages.map(\.id), [cursor])

        // Only the survivor was a subscriber when the event was published.
        let line = relay.log.split(separator: "\n").first { $0.contains("msg=\"mail notified\"") && $0.contains("cursor=\(cursor)") }
        let notifiedLine = try XCTUnwrap(line, "no \"mail notified\" log line for \(cursor); log:\n\(relay.log)")
        XCTAssertTrue(notifiedLine.contains("subscribers=1"), String(notifiedLine))
    }
}
