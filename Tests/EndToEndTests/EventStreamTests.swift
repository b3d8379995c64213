// Event streams (Server-Sent Events) of the built relay, end to end: the
// response head and framing, heartbeats, the maximum stream age, resumption
// by Last-Event-ID or ?lastEventId=, gap events, back-pressure on a client
// that stops reading, and the end of streams at shutdown.
//
// Every read has a deadline. Time bounds are generous upper limits, never
// exact durations, so a slow machine does not fail these tests.

import Foundation
import XCTest

final class EventStreamTests: RelayTestCase {
    /// The two ways a request selects an event stream.
    let streamRequests: [(name: String, query: String, fields: [String])] = [
        ("format=sse", "?format=sse", []),
        ("Accept header", "", ["Accept: text/event-stream"]),
    ]

    // MARK: Framing

    func testStreamHeadAndMailEvent() throws {
        let relay = try startRelay()
        for request in streamRequests {
            let before = try currentCursor(inbox: "test", relay: relay)
            let stream = try EventStreamClient(port: relay.httpPort, target: "/test" + request.query, extraFields: request.fields)
            let (head, hint, start) = try stream.readOpening()

            XCTAssertEqual(head.header("Content-Type"), "text/event-stream; charset=utf-8", request.name)
            XCTAssertEqual(head.header("Cache-Control"), "no-cache", request.name)
            XCTAssertEqual(head.header("X-Accel-Buffering"), "no", request.name)
            XCTAssertEqual(head.header("Notify-Cursor"), before, request.name)

            // The body opens with the retry hint and a comment, then a block with the cursor alone.
            XCTAssertTrue(hint.text.hasPrefix("retry: "), "\(request.name): first block \(hint.text)")
            XCTAssertNotNil(hint.retry.flatMap { Int($0) }, "\(request.name): retry is not a number in \(hint.text)")
            XCTAssertFalse(hint.comments.isEmpty, "\(request.name): no comment in the first block \(hint.text)")
            XCTAssertEqual(start.text, "id: \(before)", request.name)

            let subject = "framing via \(request.name)"
            let cursor = try publish(inbox: "test", subject: subject, to: relay)
            let block = try XCTUnwrap(stream.nextEvent(deadline: Deadline(seconds: 10)), "\(request.name): stream closed")
            XCTAssertEqual(block.fields.map(\.name), ["id", "event", "data"], "\(request.name): \(block.text)")
            XCTAssertEqual(block.id, cursor, request.name)
            XCTAssertEqual(block.event, "mail", request.name)
            let mail = try block.decodeData(StreamMailData.self)
            XCTAssertEqual(mail.id, cursor, request.name)
            XCTAssertEqual(mail.inbox, "test", request.name)
            XCTAssertEqual(mail.subject, subject, request.name)
            XCTAssertEqual(mail.from, "sender@example.org", request.name)
        }
    }

    func testPingCommentArrives() throws {
        let relay = try startRelay(extraArguments: ["--sse-ping", "1"])
        let stream = try EventStreamClient(port: relay.httpPort, target: "/test?format=sse")
        _ = try stream.readOpening()

        // The ping interval is 1 s, so 5 s leaves room for a slow machine.
        let deadline = Deadline(seconds: 5)
        var sawPing = false
        while !sawPing, let block = try stream.nextBlock(deadline: deadline) {
            sawPing = block.comments.contains("ping")
        }
        XCTAssertTrue(sawPing, "no `: ping` comment within 5 s with --sse-ping 1")
    }

    func testStreamEndsAtMaxAge() throws {
        let relay = try startRelay(extraArguments: ["--sse-max-age", "1"])
        let stream = try EventStreamClient(port: relay.httpPort, target: "/test?format=sse")
        _ = try stream.readOpening()

        XCTAssertTrue(stream.connection.isClosedByServer(within: 5), "stream still open 5 s after a 1 s --sse-max-age")
        XCTAssertTrue(relay.isRunning)
    }

    // MARK: Resumption

    func testResumeSendsLaterEventsThenLive() throws {
        let relay = try startRelay()
        let ways: [(name: String, query: String, fields: [String])] = [
            ("Last-Event-ID header", "", ["Last-Event-ID: %@"]),
            ("lastEventId parameter", "&lastEventId=%@", []),
        ]
        for (index, way) in ways.enumerated() {
            let inbox = "resume\(index)"
            let first = try publish(inbox: inbox, subject: "one", to: relay)
            let second = try publish(inbox: inbox, subject: "two", to: relay)
            let third = try publish(inbox: inbox, subject: "three", to: relay)

            let target = "/\(inbox)?format=sse" + way.query.replacingOccurrences(of: "%@", with: first)
            let fields = way.fields.map { $0.replacingOccurrences(of: "%@", with: first) }
            let stream = try EventStreamClient(port: relay.httpPort, target: target, extraFields: fields)
            XCTAssertEqual(try stream.readHead().status, 200, way.name)

            // Exactly the two events after the cursor, with no gap event before them.
            let resumed = try stream.readEvents(2)
            XCTAssertEqual(resumed.map(\.event), ["mail", "mail"], way.name)
            XCTAssertEqual(resumed.map(\.id), [second, third], way.name)
            XCTAssertEqual(try resumed.map { try $0.decodeData(StreamMailData.self).subject }, ["two", "three"], way.name)

            // After the held events, the stream carries live ones.
            let fourth = try publish(inbox: inbox, subject: "four", to: relay)
            let live = try stream.readEvents(1)
            XCTAssertEqual(live.map(\.id), [fourth], way.name)
            XCTAssertEqual(live.first?.event, "mail", way.name)
        }
    }

    /// A block with an `id:` line sets EventSource's last event ID even without
    /// data, as the stream's opening block relies on. If the stream names a
    /// cursor past held events it has not sent yet, a client whose connection
    /// breaks in between resumes after them and loses them.
    func testResumeIdsNeverMoveBackwards() throws {
        let relay = try startRelay()
        let first = try publish(inbox: "test", subject: "one", to: relay)
        let second = try publish(inbox: "test", subject: "two", to: relay)
        let third = try publish(inbox: "test", subject: "three", to: relay)

        let stream = try EventStreamClient(
            port: relay.httpPort, target: "/test?format=sse", extraFields: ["Last-Event-ID: \(first)"])
        XCTAssertEqual(try stream.readHead().status, 200)

        // Collect every id: line up to the mail event of the last held event.
        var ids: [String] = []
        let deadline = Deadline(seconds: 10)
        while let block = try stream.nextBlock(deadline: deadline) {
            if let id = block.id { ids.append(id) }
            if block.event == "mail" && block.id == third { break }
        }
        let sequences = ids.map { Int($0.split(separator: "-").last ?? "") ?? -1 }
        XCTAssertEqual(ids.last, third, "stream ended before the last held event; id: lines \(ids)")
        XCTAssertTrue(ids.contains(second), "held event \(second) missing; id: lines \(ids)")
        XCTAssertEqual(sequences, sequences.sorted(), "id: lines of a resumed stream, in the order sent: \(ids)")
    }

    // MARK: Gaps

    func testGapEventWhenHistoryDropped() throws {
        let relay = try startRelay(extraArguments: ["--history", "2"])
        let before = try currentCursor(inbox: "test", relay: relay)
        var cursors: [String] = []
        for index in 1...4 {
            cursors.append(try publish(inbox: "test", subject: "event \(index)", to: relay))
        }

        let stream = try EventStreamClient(
            port: relay.httpPort, target: "/test?format=sse", extraFields: ["Last-Event-ID: \(before)"])
        let (_, _, start) = try stream.readOpening()
        XCTAssertEqual(start.event, "gap", "first block after the hint: \(start.text)")
        let gap = try start.decodeData(StreamGapData.self)
        XCTAssertEqual(gap.cursor, cursors[3])
        XCTAssertEqual(gap.inboxes, ["test"])

        // Only the two events still in the history follow the gap.
        let heldEvents = try stream.readEvents(2)
        XCTAssertEqual(heldEvents.map(\.id), Array(cursors[2...]))
        XCTAssertEqual(heldEvents.map(\.event), ["mail", "mail"])
        XCTAssertEqual(try heldEvents.map { try $0.decodeData(StreamMailData.self).subject }, ["event 3", "event 4"])
    }

    func testGapEventForCursorOfEarlierRelay() throws {
        let first = try startRelay()
        let oldCursor = try publish(inbox: "test", subject: "before restart", to: first)
        first.sendTerminate()
        XCTAssertEqual(first.waitForExit(within: 10), 0, "first relay log:\n\(first.log)")

        let second = try startRelay()
        let heldCursor = try publish(inbox: "test", subject: "after restart", to: second)
        let stream = try EventStreamClient(port: second.httpPort, target: "/test?format=sse&lastEventId=\(oldCursor)")
        let (_, _, start) = try stream.readOpening()
        XCTAssertEqual(start.event, "gap", "first block after the hint: \(start.text)")
        let gap = try start.decodeData(StreamGapData.self)
        XCTAssertNotEqual(gap.cursor, oldCursor)
        XCTAssertEqual(gap.inboxes, ["test"])

        let events = try stream.readEvents(1)
        XCTAssertEqual(events.map(\.id), [heldCursor])
        XCTAssertEqual(try events.first?.decodeData(StreamMailData.self).subject, "after restart")
    }

    // MARK: Back-pressure

    func testClientThatStopsReadingIsDisconnected() throws {
        let relay = try startRelay(extraArguments: ["--sse-max-buffer", "4096"])
        let baseline = try XCTUnwrap(relay.openDescriptorCount())
        let disconnectMessage = "event stream client disconnected: it stopped reading"

        // A stream client with the smallest receive window that reads its opening
        // and then nothing, a stream client that keeps reading, and a long-poll,
        // all on one inbox.
        let stalled = try EventStreamClient(port: relay.httpPort, target: "/busy?format=sse", receiveBufferBytes: 1024)
        _ = try stalled.readOpening()
        let reader = try EventStreamClient(port: relay.httpPort, target: "/busy?format=sse")
        _ = try reader.readOpening()
        let poller = try HTTPTestClient(port: relay.httpPort)
        try poller.sendGet("/busy?format=json&timeout=30")
        try waitForEarlierRequests(relay: relay)

        // Events of about 3 KB go over one ingest connection in batches until
        // the relay disconnects the stalled client. Linux grows the relay's
        // socket send buffer to megabytes on loopback, so that took 1 to 3 MB
        // with Linux 6.18 and the default tcp_wmem. The cap of 3000 events
        // (about 9 MB) bounds the load. The reading clients drain their
        // events between batches.
        let ingest = try TestSocket.connectUnix(path: relay.socketPath)
        let padding = String(repeating: "x", count: 900)
        let batchSize = 20
        let maxBatches = 150
        var cursors: [String] = []
        var batch = 0
        while batch < maxBatches && !relay.log.contains(disconnectMessage) {
            var lines = ""
            for index in 0..<batchSize {
                let subject = "event \(batch * batchSize + index) \(padding)"
                lines += #"{"recipients":["busy"],"subject":"\#(subject)","from":"\#(padding)","messageId":"\#(padding)"}"#
                lines += "\n"
            }
            try ingest.send(lines)
            for _ in 0..<batchSize {
                let reply = try XCTUnwrap(ingest.readLine(deadline: Deadline(seconds: 10)), "ingest connection closed")
                XCTAssertTrue(reply.hasPrefix("OK "), reply)
                cursors.append(String(reply.dropFirst(3)))
            }

            let received = try reader.readEvents(batchSize, within: 5)
            XCTAssertEqual(received.map(\.id), Array(cursors.suffix(batchSize)), "reading stream client, batch \(batch)")
            if batch == 0 {
                let response = try poller.readResponse(within: 5)
                XCTAssertEqual(response.status, 200, response.bodyText)
                XCTAssertEqual(try response.pollBody().messages.first?.id, cursors.first)
            }
            batch += 1
        }

        // The relay disconnected the stalled client and logged the reason. Its socket still
        // delivers what the kernel had queued, then reaches the end.
        XCTAssertTrue(
            waitUntil(seconds: 5) { relay.log.contains(disconnectMessage) },
            "no disconnect logged after \(cursors.count) events to a client that stopped reading")
        let drained = String(decoding: try stalled.socket.readToEnd(deadline: Deadline(seconds: 10)), as: UTF8.self)
        let drainedEvents = drained.components(separatedBy: "\nevent: mail\n").count - 1
        XCTAssertLessThan(drainedEvents, cursors.count, "the stalled client received every event")
        XCTAssertTrue(
            waitUntil(seconds: 5) { (relay.openDescriptorCount() ?? Int.max) <= baseline + 3 },
            "relay descriptors: \(relay.openDescriptorCount() ?? -1), expected at most \(baseline + 3) "
                + "(baseline \(baseline) plus the reading stream, the long-poll and the ingest connection)")

        // The reading clients still work after the disconnect.
        let after = try publish(inbox: "busy", subject: "after the disconnect", to: relay)
        XCTAssertEqual(try reader.readEvents(1, within: 5).map(\.id), [after])
        let next = try poller.get("/busy?since=\(cursors.last ?? "")&format=json&timeout=10", within: 5)
        XCTAssertEqual(next.status, 200, next.bodyText)
        XCTAssertEqual(try next.pollBody().messages.map(\.id), [after])

        for client in [reader.socket, poller.socket, ingest] { client.close() }
        XCTAssertTrue(
            waitUntil(seconds: 5) { (relay.openDescriptorCount() ?? Int.max) <= baseline },
            "relay descriptors: \(relay.openDescriptorCount() ?? -1) after every client left, baseline \(baseline)")
        XCTAssertTrue(relay.isRunning)
    }

    /// The buffer limit is for clients that stop reading. A client that reads
    /// at once must receive a backlog larger than the limit, because the relay
    /// can write most of it straight into the socket.
    func testBacklogLargerThanBufferReachesReader() throws {
        let relay = try startRelay(extraArguments: ["--sse-max-buffer", "4096"])
        let before = try currentCursor(inbox: "test", relay: relay)
        let padding = String(repeating: "x", count: 900)
        var cursors: [String] = []
        for index in 1...6 {
            cursors.append(try publish(inbox: "test", subject: "event \(index) \(padding)", to: relay))
        }

        let stream = try EventStreamClient(
            port: relay.httpPort, target: "/test?format=sse", extraFields: ["Last-Event-ID: \(before)"])
        var ids: [String] = []
        do {
            let head = try stream.readHead()
            XCTAssertEqual(head.status, 200)
            let deadline = Deadline(seconds: 10)
            while ids.count < cursors.count, let block = try stream.nextEvent(deadline: deadline) {
                ids.append(block.id ?? "")
            }
        } catch {
            XCTFail("reading a stream whose backlog exceeds --sse-max-buffer failed: \(error)")
        }
        XCTAssertEqual(ids, cursors, "events received before the stream ended")
    }

    // MARK: Shutdown

    func testSigtermEndsOpenStream() throws {
        let relay = try startRelay()
        let stream = try EventStreamClient(port: relay.httpPort, target: "/test?format=sse")
        _ = try stream.readOpening()

        relay.sendTerminate()
        XCTAssertTrue(stream.connection.isClosedByServer(within: 5), "event stream still open 5 s after SIGTERM")
        XCTAssertEqual(relay.waitForExit(within: 5), 0, "relay log:\n\(relay.log)")
    }
}
