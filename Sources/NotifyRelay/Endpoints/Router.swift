// Maps a parsed request to what the connection must do: answer now, wait on
// inboxes (long-poll), or open an event stream.
//
// Paths: `/<inbox>` (one segment) is always an inbox; `/?inbox=a&inbox=b`
// waits on several; `/` with no query string is the demo page; paths of two
// or more segments are static assets (`/static/notify.js`). So no endpoint
// can shadow an inbox name.

import NotifyCore

/// The encoding of a response that carries inbox events.
enum ResponseFormat {
    case json
    case text
    case eventStream
}

/// The action a connection takes for a request.
enum RouteAction {
    case respond(HTTPResponse)
    /// Wait on the inboxes up to `timeoutMilliseconds`, then respond in `format`.
    case wait(SubscriptionTarget, format: ResponseFormat, timeoutMilliseconds: Int64)
    /// Open an event stream on the inboxes, starting with `backlog`.
    case stream(SubscriptionTarget, backlog: HistoryLookup)
}

/// Settings the router needs from the relay configuration.
struct RouterSettings {
    var policy: InboxPolicy
    var defaultPollTimeout: Double
    var maxPollTimeout: Double
    var maxInboxesPerRequest = 16
    var demoEnabled = true
}

/// Fields common to every relay response about inbox events.
let commonResponseFields: [(String, String)] = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
]

/// Decides the action for `head` against the hub's current history.
func route(_ head: HTTPRequestHead, hub: Hub, settings: RouterSettings) -> RouteAction {
    switch head.method {
    case "GET", "HEAD":
        break
    case "OPTIONS":
        return .respond(HTTPResponse(status: .noContent, fields: [("Allow", "GET, HEAD, OPTIONS")] + commonResponseFields))
    default:
        return .respond(
            .text(
                .methodNotAllowed, "method \(head.method) is not allowed: use GET, HEAD or OPTIONS",
                fields: [("Allow", "GET, HEAD, OPTIONS")]))
    }

    guard let query = parseQuery(head.query) else {
        return .respond(.text(.badRequest, "invalid query string: malformed percent-encoding"))
    }
    let segments = head.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
    if head.path == "/" {
        if head.query == nil || head.query!.isEmpty {
            guard settings.demoEnabled else {
                return .respond(.text(.notFound, "no inbox in the path: request /<inbox>, for example /test"))
            }
            return .respond(StaticAssets.response(for: "/")!)
        }
        return routeMulti(head: head, query: query, hub: hub, settings: settings)
    }
    guard segments.count == 1, let segment = segments.first, !segment.isEmpty else {
        if let asset = StaticAssets.response(for: String(head.path)) {
            return .respond(asset)
        }
        return .respond(.text(.notFound, "unknown path: inbox names are one path segment, such as /test"))
    }

    let inbox: Inbox
    do {
        inbox = try settings.policy.normalize(String(segment), percentDecoded: true)
    } catch {
        return .respond(.text(.badRequest, error.description))
    }
    let target = SubscriptionTarget(primary: inbox.key)
    return routeSubscription(target, head: head, query: query, hub: hub, settings: settings)
}

/// `/?inbox=a&inbox=b`: one request on several inboxes.
private func routeMulti(
    head: HTTPRequestHead, query: [(name: String, value: String)], hub: Hub, settings: RouterSettings
) -> RouteAction {
    let names = query.filter { $0.name == "inbox" }.map(\.value)
    guard !names.isEmpty else {
        return .respond(.text(.badRequest, "no inbox given: use /<inbox> or /?inbox=a&inbox=b"))
    }
    guard names.count <= settings.maxInboxesPerRequest else {
        return .respond(
            .text(
                .badRequest,
                "\(names.count) inboxes in one request, more than the \(settings.maxInboxesPerRequest) allowed "
                    + "(--max-inboxes-per-request)"))
    }
    var keys: [String] = []
    for name in names {
        do {
            let key = try settings.policy.normalize(name).key
            if !keys.contains(key) { keys.append(key) }
        } catch {
            return .respond(.text(.badRequest, error.description))
        }
    }
    let target = SubscriptionTarget(primary: keys[0], others: Array(keys.dropFirst()), isMulti: true)
    return routeSubscription(target, head: head, query: query, hub: hub, settings: settings)
}

private func routeSubscription(
    _ target: SubscriptionTarget, head: HTTPRequestHead, query: [(name: String, value: String)], hub: Hub,
    settings: RouterSettings
) -> RouteAction {
    func parameter(_ name: String) -> String? { query.last(where: { $0.name == name })?.value }

    var format = ResponseFormat.text
    if let requested = parameter("format") {
        switch requested {
        case "json": format = .json
        case "text": format = .text
        case "sse": format = .eventStream
        default:
            return .respond(.text(.badRequest, "invalid format \(quotedForMessage(requested)): expected json, text or sse"))
        }
    } else if let accept = head.field("accept") {
        if accept.contains("text/event-stream") {
            format = .eventStream
        } else if accept.contains("application/json") {
            format = .json
        }
    }

    // EventSource sends Last-Event-ID on reconnects but repeats the original URL,
    // so the header is newer than a lastEventId in the query. Polyfills that
    // cannot set headers use the query form alone.
    let sinceValue = parameter("since") ?? head.field("last-event-id") ?? parameter("lastEventId")
    // An empty cursor is what a page sends before its first answer: treat it as none.
    let since = sinceValue?.isEmpty == true ? nil : sinceValue
    let lookup = hub.lookup(target.keys, since: since)
    if format == .eventStream {
        guard head.method == "GET" else {
            return .respond(eventStreamHeadResponse())
        }
        return .stream(target, backlog: lookup)
    }

    var timeout = settings.defaultPollTimeout
    if let text = parameter("timeout") {
        guard let value = Double(text), value >= 0, value.isFinite else {
            return .respond(
                .text(
                    .badRequest,
                    "invalid timeout \(quotedForMessage(text)): expected seconds, 0 or more, such as 30; "
                        + "values above \(Int(settings.maxPollTimeout)) are lowered to \(Int(settings.maxPollTimeout))"))
        }
        timeout = min(value, settings.maxPollTimeout)
    }
    if lookup.answerNow {
        return .respond(eventsResponse(target, lookup.events, gap: lookup.gap, cursor: hub.currentCursor, format: format))
    }
    if head.method == "HEAD" || timeout == 0 {
        return .respond(timeoutResponse(cursor: hub.currentCursor))
    }
    return .wait(target, format: format, timeoutMilliseconds: Int64(timeout * 1000))
}

/// Builds the 204 sent when a long-poll times out.
func timeoutResponse(cursor: String) -> HTTPResponse {
    HTTPResponse(status: .noContent, fields: [("Notify-Cursor", cursor)] + commonResponseFields)
}

/// Builds the 200 that carries `events` for a long-poll.
func eventsResponse(
    _ target: SubscriptionTarget, _ events: [MailEvent], gap: Bool, cursor: String, format: ResponseFormat
) -> HTTPResponse {
    var body: String
    var contentType: String
    switch format {
    case .json, .eventStream:
        contentType = "application/json; charset=utf-8"
        var writer = JSONObjectWriter()
        if target.isMulti {
            writer.add("inboxes", strings: target.keys)
        } else {
            writer.add("inbox", target.primary)
        }
        writer.add("cursor", cursor)
        writer.add("gap", gap)
        writer.add("messages", rawJSON: "[" + events.map(\.json).joined(separator: ",") + "]")
        body = writer.finished() + "\n"
    case .text:
        contentType = "text/plain; charset=utf-8"
        body = ""
        if gap {
            let names = target.keys.joined(separator: ", ")
            body += "Some notifications for \(names) are no longer held: reload the inbox.\n"
        }
        for event in events {
            body += "New mail for: \(event.inboxKey)\n"
        }
    }
    var response = HTTPResponse(
        status: .ok, fields: [("Content-Type", contentType), ("Notify-Cursor", cursor)] + commonResponseFields,
        body: Array(body.utf8))
    response.eventCount = events.count
    return response
}
