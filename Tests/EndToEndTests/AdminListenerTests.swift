// The admin listener (--admin-listen): its address in the start-up log line,
// GET /healthz, GET /metrics in the Prometheus text format with values that
// follow the traffic, POST /publish/<inbox> and its errors, keep-alive, and
// its independence from --max-connections. Without the option, /metrics on
// the public port is an inbox like any other, so counters never leak there.

import Foundation
import Glibc
import XCTest

final class AdminListenerTests: RelayTestCase {
    /// Starts a relay with an admin listener on an ephemeral loopback port
    /// and returns it with the admin port.
    private func startAdminRelay(_ extraArguments: [String] = []) throws -> (relay: RelayProcess, adminPort: UInt16) {
        let relay = try startRelay(extraArguments: ["--admin-listen", "127.0.0.1:0"] + extraArguments)
        return (relay, try relay.adminPort())
    }

    func testAdminAddressInStartLine() throws {
        let (relay, adminPort) = try startAdminRelay()

        XCTAssertNotEqual(adminPort, relay.httpPort, "admin and HTTP listeners share a port")
        let client = try HTTPTestClient(port: adminPort)
        XCTAssertEqual(try client.get("/healthz").status, 200)
    }

    func testHealthzReturnsOk() throws {
        let (_, adminPort) = try startAdminRelay()

        let response = try HTTPTestClient(port: adminPort).get("/healthz")

        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.bodyText.trimmingCharacters(in: .whitespacesAndNewlines), "ok")
    }

    func testMetricsFormat() throws {
        let (relay, adminPort) = try startAdminRelay(["--max-connections", "50"])
        let client = try HTTPTestClient(port: adminPort)
        XCTAssertEqual(try client.get("/healthz").status, 200)

        let response = try client.get("/metrics")
        let descriptorsNow = relay.openDescriptorCount()

        XCTAssertEqual(response.status, 200)
        let contentType = response.header("Content-Type") ?? ""
        XCTAssertTrue(contentType.hasPrefix("text/plain; version=0.0.4"), "Content-Type: \(contentType)")
        let metrics = MetricsSnapshot(text: response.bodyText)
        XCTAssertEqual(metrics.invalidLines, [], "lines that are not HELP, TYPE or `name{labels} integer`")
        XCTAssertEqual(metrics.untypedSamples, [], "samples without a TYPE line before them")

        let expectedSeries = [
            #"notify_connections_open{kind="http"}"#, #"notify_connections_open{kind="ingest"}"#,
            "notify_connections_max", "notify_subscribers_waiting", "notify_inboxes", "notify_history_events",
            "notify_events_received_total", "notify_events_sent_total", "notify_ingest_errors_total",
            "notify_http_bad_requests_total", #"notify_http_responses_total{code="200"}"#,
            "process_resident_memory_bytes", "process_open_fds",
        ]
        for series in expectedSeries {
            XCTAssertNotNil(metrics[series], "missing sample \(series) in:\n\(metrics.text)")
        }
        let families = [
            "notify_connections_open", "notify_connections_max", "notify_subscribers_waiting", "notify_inboxes",
            "notify_history_events", "notify_events_received_total", "notify_events_sent_total",
            "notify_ingest_errors_total", "notify_http_bad_requests_total", "notify_http_responses_total",
            "notify_connections_rejected_total", "process_resident_memory_bytes", "process_open_fds",
        ]
        for family in families {
            XCTAssertTrue(metrics.helpNames.contains(family), "no # HELP line for \(family)")
            XCTAssertNotNil(metrics.types[family], "no # TYPE line for \(family)")
        }
        XCTAssertEqual(metrics.types["notify_events_sent_total"], "counter")
        XCTAssertEqual(metrics.types["notify_subscribers_waiting"], "gauge")

        XCTAssertEqual(metrics["notify_connections_max"], 50)
        XCTAssertEqual(metrics["notify_subscribers_waiting"], 0)
        XCTAssertEqual(metrics[#"notify_http_responses_total{code="200"}"#], 1, "the /healthz response before")
        XCTAssertGreaterThan(metrics["process_resident_memory_bytes"] ?? 0, 0)

        // The admin connection stays open, so the relay's descriptors are the
        // same when it counts them and when this test does.
        let reported = try XCTUnwrap(metrics["process_open_fds"])
        let counted = try XCTUnwrap(descriptorsNow, "cannot read /proc/\(relay.pid)/fd")
        XCTAssertLessThanOrEqual(abs(reported - counted), 2, "process_open_fds \(reported), /proc/\(relay.pid)/fd has \(counted)")
    }

    func testMetricsFollowTraffic() throws {
        let (relay, adminPort) = try startAdminRelay()
        let before = try fetchMetrics(adminPort: adminPort)
        XCTAssertEqual(before["notify_events_received_total"], 0)
        XCTAssertEqual(before["notify_inboxes"], 0)

        // Three long-polls wait on one inbox.
        var waiters: [HTTPTestClient] = []
        for _ in 0..<3 {
            let client = try HTTPTestClient(port: relay.httpPort)
            try client.sendGet("/watched?format=json&timeout=30")
            waiters.append(client)
        }
        let waiting = try waitForMetric("notify_subscribers_waiting", toEqual: 3, adminPort: adminPort)
        XCTAssertEqual(waiting["notify_inboxes"], 1)
        XCTAssertGreaterThanOrEqual(waiting[#"notify_connections_open{kind="http"}"#] ?? 0, 3)

        // One event reaches all three.
        _ = try publish(inbox: "watched", subject: "counted", to: relay)
        for (index, waiter) in waiters.enumerated() {
            XCTAssertEqual(try waiter.readResponse(within: 10).status, 200, "waiter \(index)")
        }
        let published = try waitForMetric("notify_subscribers_waiting", toEqual: 0, adminPort: adminPort)
        XCTAssertEqual(published["notify_events_received_total"], 1)
        XCTAssertEqual(published["notify_events_sent_total"], (before["notify_events_sent_total"] ?? 0) + 3)
        XCTAssertEqual(published["notify_history_events"], 1)
        XCTAssertEqual(published["notify_inboxes"], 1)

        // An ingest line that gets ERR, on a connection that stays open.
        let ingest = try TestSocket.connectUnix(path: relay.socketPath)
        try ingest.send("{\"from\":\"no recipients\"}\n")
        let reply = try ingest.readLine(deadline: Deadline(seconds: 10))
        XCTAssertTrue(reply?.hasPrefix("ERR ") ?? false, "reply: \(reply ?? "none")")
        let afterError = try fetchMetrics(adminPort: adminPort)
        XCTAssertEqual(afterError["notify_ingest_errors_total"], (before["notify_ingest_errors_total"] ?? 0) + 1)
        XCTAssertEqual(afterError[#"notify_connections_open{kind="ingest"}"#], 1)
        ingest.close()
        try waitForMetric(#"notify_connections_open{kind="ingest"}"#, toEqual: 0, adminPort: adminPort)

        // A malformed request on the public port.
        let malformed = try HTTPTestClient(port: relay.httpPort)
        try malformed.sendRaw("NOT A REQUEST\r\n\r\n")
        XCTAssertEqual(try malformed.readResponse(within: 10).status, 400)
        let afterBad = try fetchMetrics(adminPort: adminPort)
        let badRequests = #"notify_http_responses_total{code="400"}"#
        XCTAssertEqual(afterBad["notify_http_bad_requests_total"], (before["notify_http_bad_requests_total"] ?? 0) + 1)
        XCTAssertEqual(afterBad[badRequests], (before[badRequests] ?? 0) + 1)
        XCTAssertEqual(afterBad["notify_events_received_total"], 1, "the ERR line must not count as an event")
    }

    func testPublishWakesLongPoll() throws {
        let (relay, adminPort) = try startAdminRelay()
        let waiter = try HTTPTestClient(port: relay.httpPort)
        try waiter.sendGet("/reader?format=json&timeout=30")
        try waitForMetric("notify_subscribers_waiting", toEqual: 1, adminPort: adminPort)

        let response = try HTTPTestClient(port: adminPort).post(
            "/publish/reader", body: #"{"subject":"Read","from":"app"}"#)

        XCTAssertEqual(response.status, 200, response.bodyText)
        XCTAssertTrue(response.header("Content-Type")?.hasPrefix("application/json") ?? false)
        let published = try JSONDecoder().decode(PublishBody.self, from: Data(response.body))
        XCTAssertEqual(published.inbox, "reader")
        XCTAssertEqual(response.header("Notify-Cursor"), published.cursor)

        let event = try waiter.readResponse(within: 10)
        XCTAssertEqual(event.status, 200, event.bodyText)
        let messages = try event.pollBody().messages
        XCTAssertEqual(messages.map(\.id), [published.cursor])
        XCTAssertEqual(messages.first?.subject, "Read")
        XCTAssertEqual(messages.first?.from, "app")
    }

    func testPublishWithoutBody() throws {
        let (relay, adminPort) = try startAdminRelay()
        let start = try currentCursor(inbox: "plain", relay: relay)
        let admin = try HTTPTestClient(port: adminPort)

        // An empty body, then no Content-Length field at all.
        let empty = try admin.post("/publish/plain", body: "")
        let absent = try admin.post("/publish/plain", body: nil)

        XCTAssertEqual(empty.status, 200, empty.bodyText)
        XCTAssertEqual(absent.status, 200, absent.bodyText)
        let poll = try HTTPTestClient(port: relay.httpPort).get("/plain?since=\(start)&format=json&timeout=0")
        XCTAssertEqual(poll.status, 200, poll.bodyText)
        let messages = try poll.pollBody().messages
        XCTAssertEqual(messages.count, 2)
        XCTAssertEqual(messages.map(\.subject), [nil, nil])
    }

    func testPublishRejectsInvalidBodies() throws {
        let (relay, adminPort) = try startAdminRelay()
        let start = try currentCursor(inbox: "invalid", relay: relay)
        let cases: [(body: String, why: String)] = [
            ("{", "truncated JSON"),
            ("subject=Read", "form encoding"),
            (#"["Read"]"#, "an array, not an object"),
        ]
        let admin = try HTTPTestClient(port: adminPort)
        for (body, why) in cases {
            let response = try admin.post("/publish/invalid", body: body)
            XCTAssertEqual(response.status, 400, "\(why): \(response.bodyText)")
        }
        let poll = try HTTPTestClient(port: relay.httpPort).get("/invalid?since=\(start)&timeout=0")
        XCTAssertEqual(poll.status, 204, "a rejected body published an event: \(poll.bodyText)")
    }

    func testPublishBodySizeLimit() throws {
        let (_, adminPort) = try startAdminRelay()

        // Exactly 65536 bytes: a JSON object padded with spaces.
        let object = #"{"subject":"largest"}"#
        let largest = object + String(repeating: " ", count: 65_536 - object.utf8.count)
        let accepted = try HTTPTestClient(port: adminPort).post("/publish/large", body: largest)
        XCTAssertEqual(accepted.status, 200, accepted.bodyText)

        // One byte more: the relay responds to the head alone, before the body, and closes.
        let client = try HTTPTestClient(port: adminPort)
        try client.sendRaw("POST /publish/large HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 65537\r\n\r\n")
        let rejected = try client.readResponse(within: 10)
        XCTAssertEqual(rejected.status, 413, rejected.bodyText)
        XCTAssertTrue(client.isClosedByServer(within: 5), "connection left open after 413")
    }

    func testPublishRejectsInvalidInbox() throws {
        let (_, adminPort) = try startAdminRelay()
        let admin = try HTTPTestClient(port: adminPort)
        for target in ["/publish/a%2Fb", "/publish/a/b", "/publish/", "/publish/a%00b"] {
            let response = try admin.post(target, body: "")
            XCTAssertEqual(response.status, 400, "\(target): \(response.bodyText)")
        }
    }

    func testUnknownPathsAndMethods() throws {
        let (_, adminPort) = try startAdminRelay()
        let admin = try HTTPTestClient(port: adminPort)

        let getPublish = try admin.get("/publish/x")
        XCTAssertEqual(getPublish.status, 405)
        XCTAssertEqual(getPublish.header("Allow"), "POST")

        let postMetrics = try admin.post("/metrics", body: "")
        XCTAssertEqual(postMetrics.status, 405)
        XCTAssertNotNil(postMetrics.header("Allow"))

        XCTAssertEqual(try admin.get("/nope").status, 404)
        XCTAssertEqual(try admin.get("/").status, 404)
    }

    func testKeepAliveOnAdminConnection() throws {
        let (relay, adminPort) = try startAdminRelay()
        let admin = try HTTPTestClient(port: adminPort)

        XCTAssertEqual(try admin.get("/healthz").status, 200)
        XCTAssertEqual(try admin.get("/metrics").status, 200)

        // A POST with a body, a HEAD and a GET written at once: each body must
        // be framed exactly, or the next request would be read from its bytes.
        let body = #"{"subject":"pipelined"}"#
        try admin.sendRaw(
            "POST /publish/piped HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
                + "HEAD /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                + "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        XCTAssertEqual(try admin.readResponse(within: 10).status, 200)
        let head = try admin.readResponseHead(deadline: Deadline(seconds: 10))
        XCTAssertEqual(head.status, 200)
        let health = try admin.readResponse(within: 10)
        XCTAssertEqual(health.status, 200)
        XCTAssertEqual(health.bodyText.trimmingCharacters(in: .whitespacesAndNewlines), "ok")
        XCTAssertEqual(try fetchMetrics(adminPort: adminPort)["notify_events_received_total"], 1)
        XCTAssertTrue(relay.isRunning)
    }

    func testAdminAnswersAtMaxConnections() throws {
        let (relay, adminPort) = try startAdminRelay(["--max-connections", "1"])
        let holder = try HTTPTestClient(port: relay.httpPort)
        try holder.sendGet("/held?timeout=30")
        try waitForMetric("notify_subscribers_waiting", toEqual: 1, adminPort: adminPort)

        let refused = try HTTPTestClient(port: relay.httpPort).get("/other?timeout=0")
        XCTAssertEqual(refused.status, 503)
        XCTAssertNotNil(refused.header("Retry-After"))

        let metrics = try fetchMetrics(adminPort: adminPort)
        XCTAssertEqual(metrics[#"notify_connections_rejected_total{reason="max_connections"}"#], 1)
        XCTAssertEqual(metrics["notify_subscribers_waiting"], 1)
        XCTAssertEqual(try HTTPTestClient(port: adminPort).get("/healthz").status, 200)
    }

    func testAdminConnectionLeavesPublicSlotFree() throws {
        let (relay, adminPort) = try startAdminRelay(["--max-connections", "1"])

        // A monitoring client keeps its admin connection open between scrapes.
        let scraper = try HTTPTestClient(port: adminPort)
        XCTAssertEqual(try scraper.get("/metrics").status, 200)

        let response = try HTTPTestClient(port: relay.httpPort).get("/visitor?timeout=0")
        XCTAssertEqual(
            response.status, 204,
            "an open admin connection took the only public connection slot: \(response.bodyText)")
    }

    func testNoAdminListenerByDefault() throws {
        let relay = try startRelay()
        let start = try currentCursor(inbox: "x", relay: relay)
        XCTAssertNil(relay.startedLogField("admin"), "admin= logged without --admin-listen")

        // On the public port these one-segment paths are inboxes, so a
        // long-poll that does not wait gets 204 and no counters.
        for target in ["/metrics?timeout=0", "/healthz?timeout=0"] {
            let response = try HTTPTestClient(port: relay.httpPort).get(target)
            XCTAssertEqual(response.status, 204, "\(target): \(response.bodyText)")
            XCTAssertNotNil(response.header("Notify-Cursor"), target)
            XCTAssertFalse(response.bodyText.contains("notify_"), target)
        }
        let publish = try HTTPTestClient(port: relay.httpPort).post("/publish/x", body: #"{"subject":"leak"}"#)
        XCTAssertNotEqual(publish.status, 200, publish.bodyText)
        let poll = try HTTPTestClient(port: relay.httpPort).get("/x?since=\(start)&timeout=0")
        XCTAssertEqual(poll.status, 204, "POST /publish on the public port published: \(poll.bodyText)")
    }
}
