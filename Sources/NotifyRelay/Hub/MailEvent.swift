// An event as subscribers see it, and the cursor that orders events.
//
// Cursors look like `9f3a61c2b07e-42`: the relay's epoch (random hex chosen at
// start-up) and a sequence number shared by every inbox. The epoch makes a
// cursor issued before a restart unknown afterwards, so it can never match a
// different event; the shared sequence lets one cursor cover several inboxes.

import CNotifyShim
import Glibc
import NotifyCore

/// A position in the relay's event sequence.
struct Cursor: Equatable {
    var epoch: String
    var sequence: UInt64

    var text: String { "\(epoch)-\(sequence)" }

    /// Parses `EPOCH-SEQUENCE`; nil for anything else.
    init?(_ text: String) {
        guard let dash = text.lastIndex(of: "-"), let sequence = UInt64(text[text.index(after: dash)...]) else {
            return nil
        }
        self.epoch = String(text[..<dash])
        self.sequence = sequence
    }

    init(epoch: String, sequence: UInt64) {
        self.epoch = epoch
        self.sequence = sequence
    }
}

/// One notification for one inbox, shared by the inbox history and every
/// response that carries it. Nothing changes after creation except the lazily
/// built JSON, and only the loop thread touches it.
final class MailEvent {
    let sequence: UInt64
    /// The cursor text of this event, also its `id`.
    let cursor: String
    let inboxKey: String
    /// Monotonic milliseconds at ingest, for history expiry.
    let receivedMonotonic: Int64
    private let recipient: String
    private let record: MailRecord
    private let wallClock: time_t

    init(sequence: UInt64, cursor: String, inbox: Inbox, record: MailRecord, receivedMonotonic: Int64, wallClock: time_t) {
        self.sequence = sequence
        self.cursor = cursor
        self.inboxKey = inbox.key
        self.receivedMonotonic = receivedMonotonic
        self.recipient = inbox.recipient
        self.record = record
        self.wallClock = wallClock
    }

    /// The event as one JSON object, built on first use (plain-text clients
    /// never need it) and then shared by every response that carries it.
    private(set) lazy var json: String = {
        var writer = JSONObjectWriter()
        writer.add("id", cursor)
        writer.add("inbox", inboxKey)
        writer.add("recipient", recipient)
        writer.add("from", record.from)
        writer.add("subject", record.subject)
        writer.add("messageId", record.messageId)
        writer.add("size", record.size)
        writer.add("receivedAt", iso8601(wallClock))
        return writer.finished()
    }()
}

/// Formats seconds since the epoch as `2026-12-04T19:00:00Z`.
func iso8601(_ seconds: time_t) -> String {
    var value = seconds
    var parts = tm()
    gmtime_r(&value, &parts)
    func pad(_ number: Int32, _ width: Int) -> String {
        let digits = String(number)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
    return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))"
        + "T\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))Z"
}

/// Fills `bytes` from getrandom(2); returns 0 on success.
func notifyRandomBytes(_ bytes: inout [UInt8]) -> Int32 {
    bytes.withUnsafeMutableBytes { notify_random_bytes($0.baseAddress, $0.count) }
}
