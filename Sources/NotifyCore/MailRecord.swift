// The record notify-deliver sends for one delivered message, and the ingest
// line protocol that carries it to notify-relay.
//
// Ingest line protocol (Unix stream socket, or TCP when enabled): each request
// is one line of at most `IngestProtocol.maxLineBytes` bytes ending in LF or
// CRLF. A line is either a bare address (`test` or `test@example.com`, as typed
// into telnet) or a JSON object with a `recipients` array. The relay answers
// each line, in order, with `OK <cursor>` or `ERR <reason>`.
//
// Trust boundary: field values come from mail headers written by strangers.
// The codec caps each text field at `MailRecord.maxFieldBytes` and drops
// control characters, so no field can split a log line or an HTTP header.

/// One delivered message as notify-deliver reports it.
public struct MailRecord: Sendable, Equatable {
    /// Envelope recipients. notify-deliver sends them normalized with its own
    /// policy; the relay normalizes them again with its own.
    public var recipients: [String]
    /// The decoded From header field.
    public var from: String?
    /// The decoded Subject header field.
    public var subject: String?
    /// The Message-ID header field.
    public var messageId: String?
    /// The message size in bytes, headers included.
    public var size: Int?
    /// The envelope sender (Return-Path or the MTA's SENDER).
    public var sender: String?
    /// The MTA's queue id, for matching relay logs with mail logs.
    public var queueId: String?

    /// Longest text field kept, in bytes; longer values are cut at a character boundary.
    public static let maxFieldBytes = 998
    /// Most recipients accepted in one record.
    public static let maxRecipients = 1000

    public init(
        recipients: [String], from: String? = nil, subject: String? = nil, messageId: String? = nil,
        size: Int? = nil, sender: String? = nil, queueId: String? = nil
    ) {
        self.recipients = recipients
        self.from = from.map(cleanField)
        self.subject = subject.map(cleanField)
        self.messageId = messageId.map(cleanField)
        self.size = size
        self.sender = sender.map(cleanField)
        self.queueId = queueId.map(cleanField)
    }

    /// The record as one line of JSON, without the line ending.
    public func jsonLine() -> String {
        var writer = JSONObjectWriter()
        writer.add("recipients", strings: recipients)
        writer.add("from", from)
        writer.add("subject", subject)
        writer.add("messageId", messageId)
        writer.add("size", size)
        writer.add("sender", sender)
        writer.add("queueId", queueId)
        return writer.finished()
    }
}

/// An ingest line that cannot be accepted, with a reason fit for `ERR <reason>`.
public struct IngestError: Error, Equatable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// Constants and parsing of the ingest line protocol.
public enum IngestProtocol {
    /// Longest request line accepted, line ending excluded.
    public static let maxLineBytes = 64 * 1024

    /// Parses one request line (line ending already removed) into a record.
    public static func parseLine(_ line: [UInt8]) throws(IngestError) -> MailRecord {
        var start = 0
        while start < line.count, line[start] == 0x20 || line[start] == 0x09 { start += 1 }
        guard start < line.count else { throw IngestError("empty line: send an address or a JSON object") }
        if line[start] != UInt8(ascii: "{") {
            // A bare address: spaces and tabs around it are not part of the recipient.
            var end = line.count
            while end > start, line[end - 1] == 0x20 || line[end - 1] == 0x09 { end -= 1 }
            guard let text = String(validating: line[start..<end], as: UTF8.self) else {
                throw IngestError("the line is not valid UTF-8")
            }
            return MailRecord(recipients: [text])
        }

        let value: JSONValue
        do {
            value = try parseJSON(line)
        } catch {
            throw IngestError(error.description)
        }
        guard case let .array(list)? = value["recipients"] else {
            throw IngestError("the JSON object has no \"recipients\" array")
        }
        guard list.count <= MailRecord.maxRecipients else {
            throw IngestError("\(list.count) recipients, more than the \(MailRecord.maxRecipients) allowed in one record")
        }
        var recipients: [String] = []
        for item in list {
            guard case let .string(recipient) = item else { throw IngestError("\"recipients\" must contain only strings") }
            recipients.append(recipient)
        }
        guard !recipients.isEmpty else { throw IngestError("\"recipients\" is empty") }

        var size: Int? = nil
        if case let .number(number)? = value["size"], number >= 0, number < 1e15 {
            size = Int(number)
        }
        return MailRecord(
            recipients: recipients, from: value["from"]?.stringValue, subject: value["subject"]?.stringValue,
            messageId: value["messageId"]?.stringValue, size: size, sender: value["sender"]?.stringValue,
            queueId: value["queueId"]?.stringValue)
    }

    /// The reply line for an accepted record, with its line ending.
    public static func okReply(cursor: String) -> String { "OK \(cursor)\n" }

    /// The reply line for a rejected record, with its line ending; the reason is kept to one line.
    public static func errorReply(_ reason: String) -> String {
        "ERR \(String(reason.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }))\n"
    }
}

extension JSONValue {
    /// The string value, or nil for any other type.
    public var stringValue: String? {
        if case let .string(text) = self { return text }
        return nil
    }
}

/// Drops control characters (a tab becomes a space) and cuts the text at
/// `MailRecord.maxFieldBytes` bytes on a character (grapheme cluster) boundary,
/// so a cut never leaves half of an accented letter or of a flag.
public func cleanField(_ text: String) -> String {
    var out = String.UnicodeScalarView()
    var bytes = 0
    for character in text {
        var kept = String.UnicodeScalarView()
        for scalar in character.unicodeScalars {
            if scalar == "\t" {
                kept.append(" ")
            } else if scalar.value < 0x20 || scalar.value == 0x7F || (scalar.value >= 0x80 && scalar.value < 0xA0) {
                continue
            } else {
                kept.append(scalar)
            }
        }
        bytes += kept.reduce(0) { $0 + UTF8.width($1) }
        if bytes > MailRecord.maxFieldBytes { break }
        out.append(contentsOf: kept)
    }
    return String(out)
}
