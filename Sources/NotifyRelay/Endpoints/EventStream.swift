// Server-Sent Events framing (the `text/event-stream` format of the HTML
// standard). A stream opens with a `retry:` hint and a comment, so proxies
// that buffer pass the head on at once, then the backlog the client missed,
// or an `id:` line with the current cursor when there is none, so a client
// that reconnects before any mail still resumes from the moment it connected. Each mail is `id: <cursor>`, `event: mail` and one
// `data:` line of JSON; a `gap` event tells the page to reload its list.

import NotifyCore

/// The pieces of an event stream.
enum EventStream {
    /// Reconnection delay suggested to clients, in milliseconds.
    static let retryMilliseconds = 2000

    /// Builds the response head of a stream. It has no Content-Length, because the body ends when the connection closes.
    static func head(cursor: String, extraFields: [(String, String)]) -> [UInt8] {
        var text = "HTTP/1.1 200 OK\r\n"
        text += "Content-Type: text/event-stream; charset=utf-8\r\n"
        text += "Cache-Control: no-cache\r\n"
        text += "X-Accel-Buffering: no\r\n"
        text += "X-Content-Type-Options: nosniff\r\n"
        text += "Notify-Cursor: \(cursor)\r\n"
        for (name, value) in extraFields {
            text += "\(name): \(value)\r\n"
        }
        text += "Connection: close\r\n\r\n"
        return Array(text.utf8)
    }

    /// The first bytes of the body: the retry hint and a comment, then a gap
    /// event when the client's cursor is no longer covered.
    ///
    /// The gap event carries the current cursor only when no backlog follows:
    /// an `id:` ahead of events not yet sent would make a client that drops
    /// here resume past them.
    static func preamble(cursor: String, gap: Bool, keys: [String], backlogIsEmpty: Bool) -> String {
        var text = "retry: \(retryMilliseconds)\n: notify-relay event stream\n\n"
        if gap {
            var writer = JSONObjectWriter()
            writer.add("cursor", cursor)
            writer.add("inboxes", strings: keys)
            text += backlogIsEmpty ? "id: \(cursor)\n" : ""
            text += "event: gap\ndata: \(writer.finished())\n\n"
        }
        return text
    }

    /// An `id:`-only block, which sets the client's last event ID without
    /// dispatching an event. Sent after an empty backlog, so a client that
    /// reconnects before any mail resumes from the moment it connected.
    static func cursorOnly(_ cursor: String) -> String {
        "id: \(cursor)\n\n"
    }

    /// Formats one mail event.
    static func mail(_ event: MailEvent) -> String {
        "id: \(event.cursor)\nevent: mail\ndata: \(event.json)\n\n"
    }

    /// A heartbeat comment that keeps proxies and clients from timing out.
    static let ping = ": ping\n\n"
}

/// Builds the response to `HEAD` on an event stream: the head a GET would get, with no body.
func eventStreamHeadResponse() -> HTTPResponse {
    HTTPResponse(
        status: .ok,
        fields: [
            ("Content-Type", "text/event-stream; charset=utf-8"), ("Cache-Control", "no-cache"),
            ("X-Accel-Buffering", "no"), ("X-Content-Type-Options", "nosniff"),
        ])
}
