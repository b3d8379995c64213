// The hub: inboxes, their recent history and their waiting subscribers.
//
// Every published event gets the next sequence number and is kept in two
// places: its inbox's history (the last `historyPerInbox` events) and one
// global queue in arrival order, which enforces the age limit and a global cap
// on held events, so spam to random addresses cannot grow memory without
// bound. An inbox with no history and no subscribers is forgotten.
//
// Gap detection: each inbox records the highest sequence it dropped from its
// history (`droppedThrough`). A client whose cursor is below it has missed
// events that are no longer held, and gets `gap: true`. For forgotten inboxes
// the hub keeps one watermark over all of them (`forgottenThrough`), and an
// inbox created again starts from that watermark.
// NOTE: that watermark is shared, so a client of a forgotten inbox can see a
// spurious gap caused by another inbox's expiry; a missed event is never hidden.

import Glibc
import NotifyCore

/// The inboxes one subscriber waits on. The first key is stored apart, so
/// the common single-inbox subscriber allocates no array.
struct SubscriptionTarget {
    var primary: String
    var others: [String] = []
    /// True for `/?inbox=...`, whose JSON lists `inboxes` instead of one `inbox`.
    var isMulti = false

    /// Every key, primary first. Allocates; use `forEachKey` on hot paths.
    var keys: [String] { [primary] + others }

    func forEachKey(_ body: (String) -> Void) {
        body(primary)
        for key in others { body(key) }
    }
}

/// A waiting client: a long-poll or an event stream, on one or more inboxes.
protocol Subscriber: AnyObject {
    /// Unique for the life of the relay.
    var subscriberID: Int { get }
    /// The inboxes it waits on, or nil once it waits on none.
    var subscription: SubscriptionTarget? { get }
    /// Receives the new events of its inboxes, in sequence order, once per
    /// publish. A long-poll unsubscribes itself here; a stream stays.
    func deliver(_ events: [MailEvent], cursor: String)
}

/// State kept for one inbox.
final class InboxState {
    let key: String
    var history: [MailEvent] = []
    var droppedThrough: UInt64 = 0
    var subscribers: [Int: Subscriber] = [:]

    init(key: String) { self.key = key }
}

/// Limits on held history.
struct HistoryLimits {
    /// Events kept per inbox.
    var perInbox: Int
    /// Age after which an event is dropped, in milliseconds.
    var maxAgeMilliseconds: Int64
    /// Events held over all inboxes.
    /// NOTE: an event dropped by the per-inbox limit stays in the global queue,
    /// and counts toward this cap, until it reaches the queue's head. One busy
    /// inbox can therefore push other inboxes' events out early. Their clients
    /// then get `gap: true`, so no event is lost without notice.
    var maxTotal: Int
}

/// The events a subscriber should receive now for its cursor.
struct HistoryLookup {
    var events: [MailEvent]
    /// True when events after the cursor may have been dropped or the cursor is unknown.
    var gap: Bool
    /// True when the client gets a response now instead of waiting.
    var answerNow: Bool { gap || !events.isEmpty }
}

/// The relay's inboxes, history and subscribers. Owned by the event loop thread.
final class Hub {
    let epoch: String
    let limits: HistoryLimits
    private(set) var lastSequence: UInt64 = 0
    private(set) var inboxes: [String: InboxState] = [:]
    private var queue: [MailEvent] = []
    private var queueHead = 0
    private var forgottenThrough: UInt64 = 0
    private(set) var subscriberCount = 0

    init(limits: HistoryLimits, epoch: String = Hub.randomEpoch()) {
        self.limits = limits
        self.epoch = epoch
    }

    /// The cursor of the latest event, or `EPOCH-0` before the first one.
    var currentCursor: String { Cursor(epoch: epoch, sequence: lastSequence).text }

    /// Number of events in the global queue: the inbox histories plus events
    /// already dropped by the per-inbox limit that have not reached its head.
    var heldEventCount: Int { queue.count - queueHead }

    /// Twelve random hex digits, chosen once per relay start.
    static func randomEpoch() -> String {
        var bytes = [UInt8](repeating: 0, count: 6)
        if notifyRandomBytes(&bytes) != 0 {
            // getrandom cannot fail on Linux 3.17+ with a small buffer; the clock is a fallback.
            var spec = timespec()
            clock_gettime(CLOCK_REALTIME, &spec)
            withUnsafeBytes(of: spec.tv_nsec ^ spec.tv_sec << 20) { bytes = Array($0.prefix(6)) }
        }
        return bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    // MARK: Publishing

    /// Publishes one event per distinct inbox of `inboxes` and wakes their
    /// subscribers. Returns the cursor of the last event.
    func publish(_ record: MailRecord, to inboxes: [Inbox], now: Int64, wallClock: time_t) -> String {
        var touched: [InboxState] = []
        var seen = Set<String>()
        let firstNewSequence = lastSequence + 1
        for inbox in inboxes where seen.insert(inbox.key).inserted {
            lastSequence += 1
            let cursor = Cursor(epoch: epoch, sequence: lastSequence).text
            let event = MailEvent(
                sequence: lastSequence, cursor: cursor, inbox: inbox, record: record, receivedMonotonic: now,
                wallClock: wallClock)
            let state = self.inboxes[inbox.key] ?? makeInbox(inbox.key)
            state.history.append(event)
            if state.history.count > limits.perInbox {
                state.droppedThrough = state.history.removeFirst().sequence
            }
            queue.append(event)
            touched.append(state)
        }

        // Every waiter had seen all older events, or it would have been
        // answered at once, so the new events of its inboxes are all it needs.
        let cursor = currentCursor
        var newEvents: [String: [MailEvent]] = [:]
        for state in touched {
            newEvents[state.key] = state.history.filter { $0.sequence >= firstNewSequence }
        }
        // Snapshot first: subscribers leave their inboxes while being delivered to.
        // A subscriber of several touched inboxes is woken once, with all their events.
        var woken: [Subscriber] = []
        var wokenIDs = Set<Int>()
        for state in touched {
            for subscriber in state.subscribers.values where touched.count == 1 || wokenIDs.insert(subscriber.subscriberID).inserted {
                woken.append(subscriber)
            }
        }
        for subscriber in woken {
            guard let target = subscriber.subscription else { continue }
            if target.others.isEmpty {
                subscriber.deliver(newEvents[target.primary] ?? [], cursor: cursor)
                continue
            }
            let events = target.keys.flatMap { newEvents[$0] ?? [] }.sorted { $0.sequence < $1.sequence }
            subscriber.deliver(events, cursor: cursor)
        }
        expire(now: now)
        return cursor
    }

    // MARK: Subscribing

    /// Looks up the events of inbox `key` after `since`, and whether some may be
    /// missing. With no cursor the client waits for the next event.
    func lookup(_ key: String, since: String?) -> HistoryLookup {
        lookup([key], since: since)
    }

    /// Looks up the events of all `keys` after `since` in sequence order, and
    /// whether some may be missing for any of them.
    func lookup(_ keys: [String], since: String?) -> HistoryLookup {
        guard let since else { return HistoryLookup(events: [], gap: false) }
        var result = HistoryLookup(events: [], gap: false)
        let cursor = Cursor(since)
        let known = cursor.map { $0.epoch == epoch && $0.sequence <= lastSequence } ?? false
        for key in keys {
            let state = inboxes[key]
            guard known, let cursor else {
                // Unknown cursor, for example from before a restart: send what is held and flag the gap.
                result.events += state?.history ?? []
                result.gap = true
                continue
            }
            guard let state else {
                result.gap = result.gap || cursor.sequence < forgottenThrough
                continue
            }
            result.events += state.history.filter { $0.sequence > cursor.sequence }
            result.gap = result.gap || cursor.sequence < state.droppedThrough
        }
        if keys.count > 1 { result.events.sort { $0.sequence < $1.sequence } }
        return result
    }

    /// Adds `subscriber` to the waiters of inbox `key`.
    func subscribe(_ key: String, _ subscriber: Subscriber) {
        let state = inboxes[key] ?? makeInbox(key)
        if state.subscribers.updateValue(subscriber, forKey: subscriber.subscriberID) == nil {
            subscriberCount += 1
        }
    }

    /// Removes `subscriber` from inbox `key` in O(1); forgets the inbox when nothing is left.
    func unsubscribe(_ key: String, _ subscriber: Subscriber) {
        guard let state = inboxes[key], state.subscribers.removeValue(forKey: subscriber.subscriberID) != nil else {
            return
        }
        subscriberCount -= 1
        forgetIfUnused(state)
    }

    // MARK: Expiry

    /// Drops events older than the age limit and beyond the global cap.
    func expire(now: Int64) {
        while queueHead < queue.count {
            let oldest = queue[queueHead]
            let tooOld = now - oldest.receivedMonotonic > limits.maxAgeMilliseconds
            let tooMany = queue.count - queueHead > limits.maxTotal
            guard tooOld || tooMany else { break }
            queueHead += 1
            guard let state = inboxes[oldest.inboxKey] else { continue }
            if state.history.first === oldest {
                state.history.removeFirst()
                state.droppedThrough = oldest.sequence
            }
            forgetIfUnused(state)
        }
        // Compact the queue once its consumed prefix dominates, keeping removal amortized O(1).
        if queueHead > 1024, queueHead * 2 > queue.count {
            queue.removeFirst(queueHead)
            queueHead = 0
        }
    }

    private func makeInbox(_ key: String) -> InboxState {
        let state = InboxState(key: key)
        // A forgotten inbox may have held events for this key, so a new one inherits the watermark.
        state.droppedThrough = forgottenThrough
        inboxes[key] = state
        return state
    }

    private func forgetIfUnused(_ state: InboxState) {
        guard state.history.isEmpty, state.subscribers.isEmpty else { return }
        forgottenThrough = max(forgottenThrough, state.droppedThrough)
        inboxes[state.key] = nil
    }
}
