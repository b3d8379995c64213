// Server-Sent Events framing (the `text/event-stream` format of the HTML
// standard). A stream opens with a `retry:` hint and a comment, so proxies
// that buffer pass the head on at once, then an `id:` line with the current
// cursor so a client that reconnects before any mail still resumes from the
// moment it connected. Each mail is `id: <cursor>`, `event: mail` and one
// `data:` line of JSON; a `gap` event tells the page to reload its list.

import NotifyCore

/// The pieces of an event stream.
enum EventStream {
    /// Reconnection delay suggested to clients, in milliseconds.
    static let retryMilliseconds = 2000

    /// The response head of a stream: no Content-Length, the body ends when the connection closes.
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

    /// The first bytes of the body: retry hint, comment, and either the
    /// current cursor or a gap event carrying it.
    static func preamble(cursor: String, gap: Bool, keys: [String]) -> String {
        var text = "retry: \(retryMilliseconds)\n: notify-relay event stream\n\n"
        if gap {
            var writer = JSONObjectWriter()
            writer.add("cursor", cursor)
            writer.add("inboxes", strings: keys)
            text += "id: \(cursor)\nevent: gap\ndata: \(writer.finished())\n\n"
        } else {
            text += "id: \(cursor)\n\n"
        }
        return text
    }

    /// One mail event.
    static func mail(_ event: MailEvent) -> String {
        "id: \(event.cursor)\nevent: mail\ndata: \(event.json)\n\n"
    }

    /// A heartbeat comment that keeps proxies and clients from timing out.
    static let ping = ": ping\n\n"
}

/// The answer to `HEAD` on an event stream: the head a GET would get, no body.
func eventStreamHeadResponse() -> HTTPResponse {
    HTTPResponse(
        status: .ok,
        fields: [
            ("Content-Type", "text/event-stream; charset=utf-8"), ("Cache-Control", "no-cache"),
            ("X-Accel-Buffering", "no"), ("X-Content-Type-Options", "nosniff"),
        ])
}
