// A client of the relay's event streams (Server-Sent Events, the
// `text/event-stream` format of the HTML standard). It sends the request,
// reads the response head, and then returns the body one block at a time,
// where a block is the lines up to a blank line.
//
// Limits: the parser accepts LF line endings only, because the relay never
// sends CR. It keeps every field of a block as sent and does not emulate the
// dispatch rules of EventSource (for example, a block with no `data:` still
// counts as a block here).

import Foundation

/// One block of an event stream: its comment lines and its fields.
struct EventStreamBlock {
    /// Comment lines without the leading colon and the one space after it.
    var comments: [String] = []
    var fields: [(name: String, value: String)] = []
    /// The block as the relay sent it, for failure messages.
    let text: String

    /// Returns the value of the last field named `name`, as EventSource reads `id:` and `event:`.
    func value(_ name: String) -> String? {
        fields.last { $0.name == name }?.value
    }

    var id: String? { value("id") }
    var event: String? { value("event") }
    var retry: String? { value("retry") }

    /// The `data:` lines joined with LF, or nil when there is none.
    var data: String? {
        let lines = fields.filter { $0.name == "data" }.map(\.value)
        return lines.isEmpty ? nil : lines.joined(separator: "\n")
    }

    /// Parses the lines of one block, without its terminating blank line.
    init(text: String) {
        self.text = text
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix(":") {
                var comment = line.dropFirst()
                if comment.first == " " { comment = comment.dropFirst() }
                comments.append(String(comment))
                continue
            }
            guard let colon = line.firstIndex(of: ":") else {
                fields.append((String(line), ""))
                continue
            }
            var value = line[line.index(after: colon)...]
            if value.first == " " { value = value.dropFirst() }
            fields.append((String(line[..<colon]), String(value)))
        }
    }

    /// Decodes the `data:` of this block as JSON of type `T`.
    func decodeData<T: Decodable>(_ type: T.Type) throws -> T {
        guard let data else { throw TestFailure("block has no data line: \(text)") }
        do {
            return try JSONDecoder().decode(T.self, from: Data(data.utf8))
        } catch {
            throw TestFailure("data of block is not the expected JSON (\(error)): \(text)")
        }
    }
}

/// The `data:` of an `event: mail` block: the message JSON of a long-poll response.
struct StreamMailData: Decodable {
    let id: String
    let inbox: String
    let recipient: String
    let from: String?
    let subject: String?
    let receivedAt: String
}

/// The `data:` of an `event: gap` block.
struct StreamGapData: Decodable {
    let cursor: String
    let inboxes: [String]
}

/// One event-stream request on its own connection.
final class EventStreamClient {
    let connection: HTTPTestClient
    var socket: TestSocket { connection.socket }

    /// Connects and sends `GET target` with `extraFields`, but reads nothing yet.
    /// `receiveBufferBytes` is as in `TestSocket.connectTCP`.
    init(port: UInt16, target: String, extraFields: [String] = [], receiveBufferBytes: Int32? = nil) throws {
        connection = try HTTPTestClient(port: port, receiveBufferBytes: receiveBufferBytes)
        try connection.sendGet(target, extraFields: extraFields)
    }

    /// Reads the response head, waiting at most `seconds`.
    func readHead(within seconds: TimeInterval = 10) throws -> HTTPTestResponse {
        try connection.readResponseHead(deadline: Deadline(seconds: seconds))
    }

    /// Reads the next block, or returns nil when the relay has closed the stream.
    func nextBlock(deadline: Deadline) throws -> EventStreamBlock? {
        guard let bytes = try socket.read(until: Array("\n\n".utf8), deadline: deadline) else {
            return nil
        }
        return EventStreamBlock(text: String(decoding: bytes, as: UTF8.self))
    }

    /// Reads the head and the two opening blocks: the `retry:` hint with its
    /// comment, then the block that sets the cursor (`id:` alone, or a gap event).
    /// Throws unless the status is 200.
    func readOpening(within seconds: TimeInterval = 10) throws -> (
        head: HTTPTestResponse, hint: EventStreamBlock, start: EventStreamBlock
    ) {
        let deadline = Deadline(seconds: seconds)
        let head = try connection.readResponseHead(deadline: deadline)
        guard head.status == 200 else {
            throw TestFailure("event stream returned status \(head.status), expected 200")
        }
        guard let hint = try nextBlock(deadline: deadline), let start = try nextBlock(deadline: deadline) else {
            throw TestFailure("event stream closed before its opening blocks")
        }
        return (head, hint, start)
    }

    /// Reads blocks until one carries an `event:` field, skipping comments
    /// such as `: ping`. Returns nil when the relay closes the stream first.
    func nextEvent(deadline: Deadline) throws -> EventStreamBlock? {
        while let block = try nextBlock(deadline: deadline) {
            if block.event != nil { return block }
        }
        return nil
    }

    /// Reads the next `count` events, or throws if the stream ends or the deadline passes first.
    func readEvents(_ count: Int, within seconds: TimeInterval = 10) throws -> [EventStreamBlock] {
        let deadline = Deadline(seconds: seconds)
        var events: [EventStreamBlock] = []
        while events.count < count {
            guard let event = try nextEvent(deadline: deadline) else {
                throw TestFailure("event stream closed after \(events.count) of \(count) events")
            }
            events.append(event)
        }
        return events
    }
}
