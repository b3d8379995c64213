// The admin listener, off unless --admin-listen (or an activated socket named
// `admin`) opens it: GET /metrics in the Prometheus text exposition format,
// GET /healthz, and POST /publish/<inbox> for applications that are not mail
// servers (a web app marking a message read, say).
//
// Trust boundary: whoever reaches this listener can read counters and publish
// notifications to any inbox, so it belongs on loopback or behind a proxy that
// authenticates. Publish bodies are bounded by `maxPublishBodyBytes` and parsed
// with the same JSON reader as ingest lines.

import Glibc
import NotifyCore

/// Counters kept by the relay for /metrics.
struct RelayStatistics {
    /// Events created by ingest and publishing, one per inbox of a record.
    var eventsReceived = 0
    /// Events written to clients, counted once per client.
    var eventsSent = 0
    var ingestErrors = 0
    var badRequests = 0
    /// Responses by HTTP status code.
    var responses: [Int: Int] = [:]
    /// Connections and requests refused at a limit, by reason.
    var rejectedConnections: [String: Int] = [:]
}

/// Reasons a connection or request is refused at a limit, listed in /metrics from 0.
let rejectionReasons = ["max_connections", "max_connections_per_client", "max_subscribers_per_inbox"]

/// Largest POST /publish body accepted, in bytes: one ingest line.
let maxPublishBodyBytes = IngestProtocol.maxLineBytes

/// Routes a request on the admin listener and builds its response.
func routeAdmin(_ head: HTTPRequestHead, body: [UInt8], relay: Relay) -> HTTPResponse {
    let path = String(head.path)
    if path == "/metrics" || path == "/healthz" {
        guard head.method == "GET" || head.method == "HEAD" else {
            return .text(.methodNotAllowed, "use GET on \(path)", fields: [("Allow", "GET, HEAD")])
        }
        if path == "/healthz" {
            return relay.shuttingDown
                ? .text(.serviceUnavailable, "shutting down", fields: [("Retry-After", "1")])
                : .text(.ok, "ok")
        }
        return HTTPResponse(
            status: .ok, fields: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8"), ("Cache-Control", "no-store")],
            body: Array(metricsText(relay).utf8))
    }
    if path.hasPrefix("/publish/") {
        guard head.method == "POST" else {
            return .text(.methodNotAllowed, "use POST on /publish/<inbox>", fields: [("Allow", "POST")])
        }
        return publish(inboxSegment: String(path.dropFirst("/publish/".count)), body: body, relay: relay)
    }
    return .text(.notFound, "unknown admin path: use /metrics, /healthz or POST /publish/<inbox>")
}

/// Publishes one event to the inbox named in the path. The optional body is a
/// JSON object with the fields of an ingest record, and its `recipients` is ignored.
private func publish(inboxSegment: String, body: [UInt8], relay: Relay) -> HTTPResponse {
    guard !inboxSegment.isEmpty, !inboxSegment.contains("/") else {
        return .text(.badRequest, "expected one inbox name after /publish/")
    }
    var record = MailRecord(recipients: [])
    if body.contains(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }) {
        let value: JSONValue
        do {
            value = try parseJSON(body)
        } catch {
            return .text(.badRequest, "invalid body: \(error.description)")
        }
        guard case .object = value else { return .text(.badRequest, "invalid body: expected a JSON object") }
        var size: Int? = nil
        if case let .number(number)? = value["size"], number >= 0, number < 1e15 { size = Int(number) }
        record = MailRecord(
            recipients: [], from: value["from"]?.stringValue, subject: value["subject"]?.stringValue,
            messageId: value["messageId"]?.stringValue, size: size, sender: value["sender"]?.stringValue,
            queueId: value["queueId"]?.stringValue)
    }
    let inbox: Inbox
    do {
        inbox = try relay.policy.normalize(inboxSegment, percentDecoded: true)
    } catch {
        return .text(.badRequest, error.description)
    }
    record.recipients = [inbox.recipient]
    let cursor = relay.publish(record, to: [inbox], source: "admin")
    var writer = JSONObjectWriter()
    writer.add("inbox", inbox.key)
    writer.add("cursor", cursor)
    return HTTPResponse(
        status: .ok, fields: [("Content-Type", "application/json; charset=utf-8"), ("Notify-Cursor", cursor)],
        body: Array((writer.finished() + "\n").utf8))
}

/// Renders the relay's state and counters in the Prometheus text format.
func metricsText(_ relay: Relay) -> String {
    var out = ""
    func metric(_ name: String, _ type: String, _ help: String, _ samples: [(labels: String, value: Int)]) {
        out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        for sample in samples {
            out += sample.labels.isEmpty ? "\(name) \(sample.value)\n" : "\(name){\(sample.labels)} \(sample.value)\n"
        }
    }
    let statistics = relay.statistics
    let open = relay.openConnectionCounts
    metric("notify_connections_open", "gauge", "Open client connections by listener kind.",
           [("kind=\"http\"", open.http), ("kind=\"admin\"", open.admin), ("kind=\"ingest\"", open.ingest)])
    metric("notify_connections_max", "gauge", "HTTP connections allowed (--max-connections).",
           [("", relay.settings.maxConnections)])
    metric("notify_subscribers_waiting", "gauge", "Waiting long-polls and open event streams, counted per inbox.",
           [("", relay.hub.subscriberCount)])
    metric("notify_inboxes", "gauge", "Inboxes with history or subscribers.", [("", relay.hub.inboxes.count)])
    metric("notify_history_events", "gauge", "Events held for clients that reconnect.", [("", relay.hub.heldEventCount)])
    metric("notify_events_received_total", "counter", "Events created from ingest and publish requests.",
           [("", statistics.eventsReceived)])
    metric("notify_events_sent_total", "counter", "Events written to clients, once per client.", [("", statistics.eventsSent)])
    metric("notify_ingest_errors_total", "counter", "Ingest lines answered with ERR.", [("", statistics.ingestErrors)])
    metric("notify_http_bad_requests_total", "counter", "Request heads that could not be parsed.", [("", statistics.badRequests)])
    metric("notify_http_responses_total", "counter", "HTTP responses by status code.",
           statistics.responses.sorted { $0.key < $1.key }.map { ("code=\"\($0.key)\"", $0.value) })
    metric("notify_connections_rejected_total", "counter", "Connections and requests refused at a limit, by reason.",
           rejectionReasons.map { ("reason=\"\($0)\"", statistics.rejectedConnections[$0] ?? 0) })
    metric("process_resident_memory_bytes", "gauge", "Resident memory of the relay process.", [("", residentMemoryBytes())])
    metric("process_open_fds", "gauge", "Open file descriptors of the relay process.", [("", openDescriptorCount())])
    return out
}

/// VmRSS from /proc/self/statm, in bytes; 0 when it cannot be read.
private func residentMemoryBytes() -> Int {
    guard let file = fopen("/proc/self/statm", "r") else { return 0 }
    defer { fclose(file) }
    // The second field is the resident set, in pages.
    var line = [CChar](repeating: 0, count: 128)
    guard fgets(&line, Int32(line.count), file) != nil else { return 0 }
    let fields = nulTerminatedString(line).split(separator: " ")
    guard fields.count >= 2, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// Entries in /proc/self/fd, less the one opendir itself uses.
private func openDescriptorCount() -> Int {
    guard let directory = opendir("/proc/self/fd") else { return 0 }
    defer { closedir(directory) }
    var count = 0
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        if name != "." && name != ".." { count += 1 }
    }
    return max(0, count - 1)
}
