// Maps a parsed request to what the connection must do: answer now, or wait
// on an inbox. Only the long-poll inbox endpoint exists here; a path of one
// segment is an inbox name, and `/` or paths of two or more segments are
// never inbox names, so later endpoints cannot shadow an inbox.

import NotifyCore

/// How a long-poll answer is encoded.
enum ResponseFormat {
    case json
    case text
}

/// What a connection does with a request.
enum RouteAction {
    case respond(HTTPResponse)
    /// Wait on `inboxKey` up to `timeoutMilliseconds`; answer with `format`.
    case wait(inboxKey: String, format: ResponseFormat, timeoutMilliseconds: Int64)
}

/// Settings the router needs from the relay configuration.
struct RouterSettings {
    var policy: InboxPolicy
    var defaultPollTimeout: Double
    var maxPollTimeout: Double
}

/// Fields common to every relay response.
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

    let segments = head.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
    guard segments.count == 1, let segment = segments.first, !segment.isEmpty else {
        if head.path == "/" {
            return .respond(.text(.notFound, "no inbox in the path: request /<inbox>, for example /test"))
        }
        return .respond(.text(.notFound, "unknown path: inbox names are one path segment, such as /test"))
    }

    let inbox: Inbox
    do {
        inbox = try settings.policy.normalize(String(segment), percentDecoded: true)
    } catch {
        return .respond(.text(.badRequest, error.description))
    }
    guard let query = parseQuery(head.query) else {
        return .respond(.text(.badRequest, "invalid query string: malformed percent-encoding"))
    }
    return routeInbox(inbox, head: head, query: query, hub: hub, settings: settings)
}

private func routeInbox(
    _ inbox: Inbox, head: HTTPRequestHead, query: [(name: String, value: String)], hub: Hub, settings: RouterSettings
) -> RouteAction {
    func parameter(_ name: String) -> String? { query.last(where: { $0.name == name })?.value }

    var format = ResponseFormat.text
    if let requested = parameter("format") {
        switch requested {
        case "json": format = .json
        case "text": format = .text
        default:
            return .respond(.text(.badRequest, "invalid format \(quotedForMessage(requested)): expected json or text"))
        }
    } else if let accept = head.field("accept"), accept.contains("application/json") {
        format = .json
    }

    var timeout = settings.defaultPollTimeout
    if let text = parameter("timeout") {
        guard let value = Double(text), value >= 0, value.isFinite else {
            return .respond(
                .text(.badRequest, "invalid timeout \(quotedForMessage(text)): expected seconds from 0 to \(Int(settings.maxPollTimeout))"))
        }
        timeout = min(value, settings.maxPollTimeout)
    }

    let sinceValue = parameter("since") ?? head.field("last-event-id")
    // An empty cursor is what a page sends before its first answer: treat it as none.
    let since = sinceValue?.isEmpty == true ? nil : sinceValue
    let lookup = hub.lookup(inbox.key, since: since)
    if lookup.answerNow {
        return .respond(eventsResponse(inbox.key, lookup.events, gap: lookup.gap, cursor: hub.currentCursor, format: format))
    }
    if head.method == "HEAD" || timeout == 0 {
        return .respond(timeoutResponse(cursor: hub.currentCursor))
    }
    return .wait(inboxKey: inbox.key, format: format, timeoutMilliseconds: Int64(timeout * 1000))
}

/// The 204 sent when a long-poll times out.
func timeoutResponse(cursor: String) -> HTTPResponse {
    HTTPResponse(status: .noContent, fields: [("Notify-Cursor", cursor)] + commonResponseFields)
}

/// The 200 carrying `events` for `inboxKey`.
func eventsResponse(_ inboxKey: String, _ events: [MailEvent], gap: Bool, cursor: String, format: ResponseFormat) -> HTTPResponse {
    var body: String
    var contentType: String
    switch format {
    case .json:
        contentType = "application/json; charset=utf-8"
        var writer = JSONObjectWriter()
        writer.add("inbox", inboxKey)
        writer.add("cursor", cursor)
        writer.add("gap", gap)
        writer.add("messages", rawJSON: "[" + events.map(\.json).joined(separator: ",") + "]")
        body = writer.finished() + "\n"
    case .text:
        contentType = "text/plain; charset=utf-8"
        body = ""
        if gap {
            body += "Some notifications for \(inboxKey) are no longer held: reload the inbox.\n"
        }
        for _ in events {
            body += "New mail for: \(inboxKey)\n"
        }
    }
    return HTTPResponse(
        status: .ok, fields: [("Content-Type", contentType), ("Notify-Cursor", cursor)] + commonResponseFields,
        body: Array(body.utf8))
}
