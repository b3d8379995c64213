// Per-inbox and per-client limits. Past --max-subscribers-per-inbox the relay
// responds 503 with Retry-After. Past --max-connections-per-client, counted by
// client address, it responds 429 with Retry-After. Both free a slot when a
// client leaves. The admin listener's /metrics counts every rejection
// by reason. The global --max-connections limit has its own tests in
// ConnectionLimitTests and AdminListenerTests.

import Foundation
import Glibc
import XCTest

final class LimitsTests: RelayTestCase {
    /// Starts a relay with an admin listener and `extraArguments`.
    private func startLimitedRelay(_ extraArguments: [String]) throws -> (relay: RelayProcess, adminPort: UInt16) {
        let relay = try startRelay(extraArguments: ["--admin-listen", "127.0.0.1:0"] + extraArguments)
        return (relay, try relay.adminPort())
    }

    /// Opens `count` long-polls on `inbox` (from `sourceAddress` when given)
    /// and waits until the relay counts `expectedWaiting` subscribers in all.
    private func openWaiters(
        _ count: Int, inbox: String, relay: RelayProcess, adminPort: UInt16, expectedWaiting: Int,
        sourceAddress: String? = nil
    ) throws -> [HTTPTestClient] {
        var clients: [HTTPTestClient] = []
        for _ in 0..<count {
            let client = try HTTPTestClient(port: relay.httpPort, sourceAddress: sourceAddress)
            try client.sendGet("/\(inbox)?format=json&timeout=30")
            clients.append(client)
        }
        try waitForMetric("notify_subscribers_waiting", toEqual: expectedWaiting, adminPort: adminPort)
        return clients
    }

    // MARK: Subscribers per inbox

    func testSubscribersPastInboxLimitGet503() throws {
        let (relay, adminPort) = try startLimitedRelay(["--max-subscribers-per-inbox", "2"])
        let waiters = try openWaiters(2, inbox: "busy", relay: relay, adminPort: adminPort, expectedWaiting: 2)

        // A third long-poll, an event stream and a request naming the full
        // inbox among others are all rejected at once.
        let third = try HTTPTestClient(port: relay.httpPort)
        let rejectedTargets = ["/busy?timeout=30", "/busy?format=sse", "/?inbox=calm&inbox=busy&timeout=30"]
        for target in rejectedTargets {
            let response = try third.get(target)
            XCTAssertEqual(response.status, 503, "\(target): \(response.bodyText)")
            XCTAssertNotNil(response.header("Retry-After"), "\(target): 503 without Retry-After")
            XCTAssertTrue(response.bodyText.contains("busy"), "\(target): body does not name the inbox: \(response.bodyText)")
        }

        // The 503 keeps the connection, and another inbox is not limited.
        try third.sendGet("/calm?format=json&timeout=30")
        try waitForMetric("notify_subscribers_waiting", toEqual: 3, adminPort: adminPort)
        let cursor = try publish(inbox: "calm", subject: "other inbox", to: relay)
        let calm = try third.readResponse(within: 10)
        XCTAssertEqual(calm.status, 200, calm.bodyText)
        XCTAssertEqual(try calm.pollBody().messages.map(\.id), [cursor])

        let metrics = try fetchMetrics(adminPort: adminPort)
        XCTAssertEqual(metrics[#"notify_connections_rejected_total{reason="max_subscribers_per_inbox"}"#], 3)
        XCTAssertEqual(metrics[#"notify_http_responses_total{code="503"}"#], 3)
        XCTAssertEqual(metrics["notify_subscribers_waiting"], 2, "the two waiters on busy")
        XCTAssertEqual(waiters.count, 2)
    }

    func testInboxSlotFreedWhenSubscriberLeaves() throws {
        let (relay, adminPort) = try startLimitedRelay(["--max-subscribers-per-inbox", "2"])
        var waiters = try openWaiters(2, inbox: "busy", relay: relay, adminPort: adminPort, expectedWaiting: 2)
        XCTAssertEqual(try HTTPTestClient(port: relay.httpPort).get("/busy?timeout=30").status, 503)

        waiters.removeFirst().socket.close()
        try waitForMetric("notify_subscribers_waiting", toEqual: 1, adminPort: adminPort)
        waiters += try openWaiters(1, inbox: "busy", relay: relay, adminPort: adminPort, expectedWaiting: 2)

        let cursor = try publish(inbox: "busy", subject: "after a leave", to: relay)
        for (index, waiter) in waiters.enumerated() {
            let response = try waiter.readResponse(within: 10)
            XCTAssertEqual(response.status, 200, "waiter \(index): \(response.bodyText)")
            XCTAssertEqual(try response.pollBody().messages.map(\.id), [cursor], "waiter \(index)")
        }
    }

    // MARK: Connections per client

    func testConnectionPastClientLimitGets429() throws {
        let (relay, adminPort) = try startLimitedRelay(["--max-connections-per-client", "3"])
        let waiters = try openWaiters(3, inbox: "tabs", relay: relay, adminPort: adminPort, expectedWaiting: 3)

        // The relay responds at accept, before reading a request, and closes.
        let fourth = try TestSocket.connectTCP(port: relay.httpPort)
        let raw = String(decoding: try fourth.readToEnd(deadline: Deadline(seconds: 10)), as: UTF8.self)

        XCTAssertTrue(raw.hasPrefix("HTTP/1.1 429 Too Many Requests\r\n"), "response: \(raw)")
        XCTAssertNotNil(
            raw.range(of: "\r\nRetry-After: ", options: .caseInsensitive), "429 without Retry-After: \(raw)")
        let metrics = try fetchMetrics(adminPort: adminPort)
        XCTAssertEqual(metrics[#"notify_connections_rejected_total{reason="max_connections_per_client"}"#], 1)
        XCTAssertEqual(metrics[#"notify_http_responses_total{code="429"}"#], 1)
        XCTAssertEqual(metrics["notify_subscribers_waiting"], 3, "the rejection disturbed the waiting clients")
        XCTAssertEqual(waiters.count, 3)
    }

    func testClientSlotFreedAfterClose() throws {
        let (relay, adminPort) = try startLimitedRelay(["--max-connections-per-client", "3"])
        var waiters = try openWaiters(3, inbox: "tabs", relay: relay, adminPort: adminPort, expectedWaiting: 3)
        waiters.removeFirst().socket.close()

        // The relay notices the close on its own schedule: retry until a
        // request is served, with a bound.
        var statuses: [Int] = []
        let served = waitUntil(seconds: 5) {
            guard let client = try? HTTPTestClient(port: relay.httpPort),
                let response = try? client.get("/tabs?timeout=0", within: 5)
            else {
                statuses.append(-1)
                return false
            }
            statuses.append(response.status)
            return response.status == 204
        }
        XCTAssertTrue(served, "no request served after a connection closed; statuses seen: \(statuses)")
        XCTAssertTrue(statuses.allSatisfy { $0 == 204 || $0 == 429 || $0 == -1 }, "statuses: \(statuses)")
        XCTAssertEqual(waiters.count, 2)
    }

    func testClientAddressesCountedSeparately() throws {
        let (relay, adminPort) = try startLimitedRelay(["--max-connections-per-client", "3"])
        let first = try openWaiters(3, inbox: "shared", relay: relay, adminPort: adminPort, expectedWaiting: 3)

        // 127.0.0.2 is another client on the loopback network: it gets its own three.
        let second = try openWaiters(
            3, inbox: "shared", relay: relay, adminPort: adminPort, expectedWaiting: 6, sourceAddress: "127.0.0.2")
        let extra = try TestSocket.connectTCP(port: relay.httpPort, sourceAddress: "127.0.0.2")
        let raw = String(decoding: try extra.readToEnd(deadline: Deadline(seconds: 10)), as: UTF8.self)
        XCTAssertTrue(raw.hasPrefix("HTTP/1.1 429 "), "fourth connection from 127.0.0.2: \(raw)")
        XCTAssertTrue(raw.contains("127.0.0.2"), "429 body does not name the client address: \(raw)")

        let cursor = try publish(inbox: "shared", subject: "both clients", to: relay)
        for (index, waiter) in (first + second).enumerated() {
            let response = try waiter.readResponse(within: 10)
            XCTAssertEqual(response.status, 200, "waiter \(index): \(response.bodyText)")
            XCTAssertEqual(try response.pollBody().messages.map(\.id), [cursor], "waiter \(index)")
        }
        let metrics = try fetchMetrics(adminPort: adminPort)
        XCTAssertEqual(metrics[#"notify_connections_rejected_total{reason="max_connections_per_client"}"#], 1)
    }
}
