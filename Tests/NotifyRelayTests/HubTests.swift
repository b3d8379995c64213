// Tests for the hub: history lookup by cursor, gap detection, the per-inbox,
// age and global limits, subscriber bookkeeping and wake-up on publish, and
// the cursor format. Every hub uses the fixed epoch "e1".

import NotifyCore
import XCTest

@testable import NotifyRelay

/// A subscriber that records what the hub delivers to it. Like a long-poll,
/// it leaves every inbox when delivered to, unless `persistent` (like a stream).
private final class RecordingSubscriber: Subscriber {
    let subscriberID: Int
    weak var hub: Hub?
    var persistent = false
    var deliveries: [(sequences: [UInt64], cursor: String)] = []
    /// Called inside `deliver`, after recording, to act as a connection would.
    var onDeliver: ((RecordingSubscriber) -> Void)? = nil

    init(_ id: Int, hub: Hub? = nil) {
        subscriberID = id
        self.hub = hub
    }

    var subscribedKeys: [String] {
        guard let hub else { return [] }
        return hub.inboxes.values.filter { $0.subscribers[subscriberID] != nil }.map(\.key).sorted()
    }

    var subscription: SubscriptionTarget? {
        let keys = subscribedKeys
        guard let first = keys.first else { return nil }
        return SubscriptionTarget(primary: first, others: Array(keys.dropFirst()), isMulti: keys.count > 1)
    }

    func deliver(_ events: [MailEvent], cursor: String) {
        deliveries.append((events.map(\.sequence), cursor))
        if !persistent, let hub {
            for key in subscribedKeys { hub.unsubscribe(key, self) }
        }
        onDeliver?(self)
    }
}

final class HubTests: XCTestCase {
    private let epoch = "e1"

    private func makeHub(perInbox: Int = 16, maxAge: Int64 = 60_000, maxTotal: Int = 1000) -> Hub {
        Hub(limits: HistoryLimits(perInbox: perInbox, maxAgeMilliseconds: maxAge, maxTotal: maxTotal), epoch: epoch)
    }

    /// Publishes one record to inboxes whose keys and recipients are `keys`, at monotonic time `now`.
    @discardableResult
    private func publish(_ hub: Hub, _ keys: [String], now: Int64 = 0) -> String {
        hub.publish(
            MailRecord(recipients: keys, subject: "s"), to: keys.map { Inbox(key: $0, recipient: $0) }, now: now,
            wallClock: 0)
    }

    private func sequences(_ lookup: HistoryLookup) -> [UInt64] {
        lookup.events.map(\.sequence)
    }

    // MARK: - Lookup

    func testNoCursorWaits() {
        let hub = makeHub()
        publish(hub, ["a"])
        let lookup = hub.lookup("a", since: nil)
        XCTAssertEqual(sequences(lookup), [])
        XCTAssertFalse(lookup.gap)
        XCTAssertFalse(lookup.answerNow)
    }

    func testStartCursorWaits() {
        let hub = makeHub()
        let lookup = hub.lookup("a", since: "e1-0")
        XCTAssertEqual(sequences(lookup), [])
        XCTAssertFalse(lookup.gap)
        XCTAssertFalse(lookup.answerNow)
    }

    func testCursorBeforeEvent() {
        let hub = makeHub()
        let before = hub.currentCursor
        publish(hub, ["a"])
        let lookup = hub.lookup("a", since: before)
        XCTAssertEqual(sequences(lookup), [1])
        XCTAssertFalse(lookup.gap)
        XCTAssertTrue(lookup.answerNow)
    }

    func testEventsAfterCursorInOrder() {
        let hub = makeHub()
        let first = publish(hub, ["a"])
        publish(hub, ["b"])
        publish(hub, ["a"])
        let last = publish(hub, ["a"])
        XCTAssertEqual(sequences(hub.lookup("a", since: first)), [3, 4])
        XCTAssertEqual(sequences(hub.lookup("b", since: first)), [2])
        XCTAssertEqual(sequences(hub.lookup("a", since: "e1-0")), [1, 3, 4])
        let caughtUp = hub.lookup("a", since: last)
        XCTAssertEqual(sequences(caughtUp), [])
        XCTAssertFalse(caughtUp.gap)
    }

    func testOtherInboxEventsNotReturned() {
        let hub = makeHub()
        publish(hub, ["b"])
        let lookup = hub.lookup("a", since: "e1-0")
        XCTAssertEqual(sequences(lookup), [])
        XCTAssertFalse(lookup.gap)
    }

    func testSameKeyOneEvent() throws {
        let hub = makeHub()
        let policy = InboxPolicy()
        let inboxes = [try policy.normalize("test@example.com"), try policy.normalize("TEST@Example.COM")]
        let cursor = hub.publish(MailRecord(recipients: ["x"]), to: inboxes, now: 0, wallClock: 0)
        XCTAssertEqual(cursor, "e1-1")
        XCTAssertEqual(sequences(hub.lookup("test", since: "e1-0")), [1])
        XCTAssertEqual(hub.heldEventCount, 1)
    }

    func testPublishToSeveralInboxes() {
        let hub = makeHub()
        let cursor = publish(hub, ["a", "b"])
        XCTAssertEqual(cursor, "e1-2")
        XCTAssertEqual(hub.currentCursor, "e1-2")
        XCTAssertEqual(sequences(hub.lookup("a", since: "e1-0")), [1])
        XCTAssertEqual(sequences(hub.lookup("b", since: "e1-0")), [2])
    }

    func testPublishToNoInbox() {
        let hub = makeHub()
        publish(hub, ["a"])
        XCTAssertEqual(publish(hub, []), "e1-1")
        XCTAssertEqual(hub.lastSequence, 1)
    }

    func testUnknownCursorsReportGap() {
        let hub = makeHub()
        publish(hub, ["a"])
        publish(hub, ["b"])
        publish(hub, ["a"])
        let cursors = [
            "garbage", "", "e1", "e1-", "e1-x", "-1", "e1--1",
            // Another epoch: a cursor from before a restart.
            "e2-1", "e2-0",
            // A sequence this relay has not reached.
            "e1-4", "e1-18446744073709551615",
        ]
        for cursor in cursors {
            let lookup = hub.lookup("a", since: cursor)
            XCTAssertTrue(lookup.gap, "gap for \(cursor.debugDescription)")
            XCTAssertEqual(sequences(lookup), [1, 3], "events for \(cursor.debugDescription)")
        }
    }

    func testUnknownCursorOnEmptyInbox() {
        let hub = makeHub()
        let lookup = hub.lookup("a", since: "e2-5")
        XCTAssertTrue(lookup.gap)
        XCTAssertEqual(sequences(lookup), [])
        XCTAssertTrue(lookup.answerNow)
    }

    // MARK: - Limits

    func testPerInboxLimitGap() {
        let hub = makeHub(perInbox: 2)
        publish(hub, ["a"])
        publish(hub, ["a"])
        publish(hub, ["a"])
        let missed = hub.lookup("a", since: "e1-0")
        XCTAssertTrue(missed.gap)
        XCTAssertEqual(sequences(missed), [2, 3])
    }

    func testPerInboxLimitNoGap() {
        let hub = makeHub(perInbox: 2)
        publish(hub, ["a"])
        publish(hub, ["a"])
        publish(hub, ["a"])
        let seenDropped = hub.lookup("a", since: "e1-1")
        XCTAssertFalse(seenDropped.gap)
        XCTAssertEqual(sequences(seenDropped), [2, 3])
        let seenMore = hub.lookup("a", since: "e1-2")
        XCTAssertFalse(seenMore.gap)
        XCTAssertEqual(sequences(seenMore), [3])
    }

    func testPerInboxLimitIgnoresOtherInboxes() {
        let hub = makeHub(perInbox: 2)
        publish(hub, ["a"])
        publish(hub, ["a"])
        publish(hub, ["b"])
        publish(hub, ["b"])
        publish(hub, ["b"])
        let lookup = hub.lookup("a", since: "e1-0")
        XCTAssertFalse(lookup.gap)
        XCTAssertEqual(sequences(lookup), [1, 2])
    }

    func testAgeExpiry() {
        let hub = makeHub(maxAge: 1000)
        publish(hub, ["a"], now: 0)
        publish(hub, ["b"], now: 500)
        hub.expire(now: 1000)
        XCTAssertEqual(hub.heldEventCount, 2, "an event exactly at the age limit is kept")
        hub.expire(now: 1001)
        XCTAssertEqual(hub.heldEventCount, 1)
        XCTAssertNil(hub.inboxes["a"])
        XCTAssertNotNil(hub.inboxes["b"])
        XCTAssertEqual(sequences(hub.lookup("b", since: "e1-0")), [2])
    }

    func testAgeExpiryGap() {
        let hub = makeHub(maxAge: 1000)
        publish(hub, ["a"], now: 0)
        hub.expire(now: 2000)
        let missed = hub.lookup("a", since: "e1-0")
        XCTAssertTrue(missed.gap)
        XCTAssertEqual(sequences(missed), [])
        let seen = hub.lookup("a", since: "e1-1")
        XCTAssertFalse(seen.gap)
        XCTAssertFalse(seen.answerNow)
    }

    func testPublishExpiresOldEvents() {
        let hub = makeHub(maxAge: 1000)
        publish(hub, ["a"], now: 0)
        publish(hub, ["b"], now: 5000)
        XCTAssertNil(hub.inboxes["a"])
        XCTAssertEqual(hub.heldEventCount, 1)
    }

    func testInboxCreatedAgainKeepsGap() {
        // The first event of "a" expires and "a" is forgotten. A new event then creates it again.
        let hub = makeHub(maxAge: 1000)
        publish(hub, ["a"], now: 0)
        hub.expire(now: 2000)
        XCTAssertNil(hub.inboxes["a"])
        publish(hub, ["a"], now: 2000)
        let missed = hub.lookup("a", since: "e1-0")
        XCTAssertTrue(missed.gap)
        XCTAssertEqual(sequences(missed), [2])
        let seen = hub.lookup("a", since: "e1-1")
        XCTAssertFalse(seen.gap)
        XCTAssertEqual(sequences(seen), [2])
    }

    func testSubscribedInboxCreatedAgainKeepsGap() {
        let hub = makeHub(maxAge: 1000)
        publish(hub, ["a"], now: 0)
        hub.expire(now: 2000)
        hub.subscribe("a", RecordingSubscriber(1, hub: hub))
        XCTAssertTrue(hub.lookup("a", since: "e1-0").gap)
        XCTAssertFalse(hub.lookup("a", since: "e1-1").gap)
    }

    func testGlobalCap() {
        let hub = makeHub(maxTotal: 2)
        publish(hub, ["a"])
        publish(hub, ["b"])
        publish(hub, ["c"])
        XCTAssertEqual(hub.heldEventCount, 2)
        XCTAssertNil(hub.inboxes["a"])
        XCTAssertEqual(sequences(hub.lookup("b", since: "e1-0")), [2])
        XCTAssertEqual(sequences(hub.lookup("c", since: "e1-0")), [3])
        XCTAssertTrue(hub.lookup("a", since: "e1-0").gap)
    }

    func testGlobalCapKeepsNewest() {
        // Enough events to pass the queue compaction threshold several times.
        let hub = makeHub(maxTotal: 10)
        for index in 1...3000 {
            publish(hub, ["i\(index)"])
        }
        XCTAssertEqual(hub.heldEventCount, 10)
        XCTAssertEqual(hub.inboxes.count, 10)
        XCTAssertEqual(sequences(hub.lookup("i3000", since: "e1-2999")), [3000])
        XCTAssertEqual(sequences(hub.lookup("i2991", since: "e1-0")), [2991])
        XCTAssertNil(hub.inboxes["i2990"])
    }

    func testExpiryKeepsSubscribedInbox() {
        let hub = makeHub(maxAge: 1000)
        let subscriber = RecordingSubscriber(1, hub: hub)
        publish(hub, ["a"], now: 0)
        hub.subscribe("a", subscriber)
        hub.expire(now: 2000)
        XCTAssertNotNil(hub.inboxes["a"])
        XCTAssertEqual(hub.inboxes["a"]?.history.count, 0)
        hub.unsubscribe("a", subscriber)
        XCTAssertNil(hub.inboxes["a"])
    }

    // MARK: - Subscribers

    func testForgottenAfterUnsubscribe() {
        let hub = makeHub()
        let subscriber = RecordingSubscriber(1, hub: hub)
        hub.subscribe("a", subscriber)
        XCTAssertNotNil(hub.inboxes["a"])
        hub.unsubscribe("a", subscriber)
        XCTAssertNil(hub.inboxes["a"])
        XCTAssertEqual(hub.subscriberCount, 0)
    }

    func testInboxWithHistoryKeptAfterUnsubscribe() {
        let hub = makeHub()
        let subscriber = RecordingSubscriber(1, hub: hub)
        publish(hub, ["a"])
        hub.subscribe("a", subscriber)
        hub.unsubscribe("a", subscriber)
        XCTAssertNotNil(hub.inboxes["a"])
    }

    func testSubscriberCount() {
        let hub = makeHub()
        let first = RecordingSubscriber(1, hub: hub)
        let second = RecordingSubscriber(2, hub: hub)
        let third = RecordingSubscriber(3, hub: hub)
        hub.subscribe("a", first)
        hub.subscribe("a", second)
        hub.subscribe("b", third)
        XCTAssertEqual(hub.subscriberCount, 3)
        hub.subscribe("a", first)
        XCTAssertEqual(hub.subscriberCount, 3, "subscribing twice counts once")
        XCTAssertEqual(hub.inboxes["a"]?.subscribers.count, 2)
        hub.unsubscribe("a", second)
        XCTAssertEqual(hub.subscriberCount, 2)
        hub.unsubscribe("a", second)
        XCTAssertEqual(hub.subscriberCount, 2, "a second unsubscribe changes nothing")
        hub.unsubscribe("b", first)
        XCTAssertEqual(hub.subscriberCount, 2, "unsubscribing from another inbox changes nothing")
        hub.unsubscribe("missing", first)
        XCTAssertEqual(hub.subscriberCount, 2)
        XCTAssertEqual(hub.inboxes["a"]?.subscribers.count, 1)
        XCTAssertEqual(hub.inboxes["b"]?.subscribers.count, 1)
    }

    func testUnsubscribeOneOfMany() {
        let hub = makeHub()
        let subscribers = (0..<1000).map { RecordingSubscriber($0, hub: hub) }
        for subscriber in subscribers { hub.subscribe("a", subscriber) }
        hub.unsubscribe("a", subscribers[500])
        XCTAssertEqual(hub.subscriberCount, 999)
        publish(hub, ["a"])
        XCTAssertEqual(subscribers[500].deliveries.count, 0)
        XCTAssertEqual(subscribers.filter { $0.deliveries.count == 1 }.count, 999)
        XCTAssertEqual(hub.subscriberCount, 0)
    }

    func testPublishWakesSubscribers() {
        let hub = makeHub()
        let first = RecordingSubscriber(1, hub: hub)
        let second = RecordingSubscriber(2, hub: hub)
        let other = RecordingSubscriber(3, hub: hub)
        hub.subscribe("a", first)
        hub.subscribe("a", second)
        hub.subscribe("b", other)
        publish(hub, ["a"])
        XCTAssertEqual(first.deliveries.count, 1)
        XCTAssertEqual(first.deliveries.first?.sequences, [1])
        XCTAssertEqual(first.deliveries.first?.cursor, "e1-1")
        XCTAssertEqual(second.deliveries.count, 1)
        XCTAssertEqual(second.deliveries.first?.sequences, [1])
        XCTAssertEqual(other.deliveries.count, 0)
        XCTAssertEqual(hub.subscriberCount, 1)
        XCTAssertEqual(hub.inboxes["a"]?.subscribers.count, 0)
    }

    func testSubscriberRemovedAfterDelivery() {
        let hub = makeHub()
        let subscriber = RecordingSubscriber(1, hub: hub)
        hub.subscribe("a", subscriber)
        publish(hub, ["a"])
        publish(hub, ["a"])
        XCTAssertEqual(subscriber.deliveries.count, 1)
        hub.unsubscribe("a", subscriber)
        XCTAssertEqual(hub.subscriberCount, 0)
    }

    func testDeliveryHasOnlyNewEvents() {
        let hub = makeHub()
        let subscriber = RecordingSubscriber(1, hub: hub)
        publish(hub, ["a"])
        publish(hub, ["a"])
        hub.subscribe("a", subscriber)
        publish(hub, ["b", "a"])
        XCTAssertEqual(subscriber.deliveries.first?.sequences, [4])
        XCTAssertEqual(subscriber.deliveries.first?.cursor, "e1-4")
    }

    func testResubscribeDuringDelivery() {
        // A connection that serves a pipelined request may subscribe again from inside `deliver`.
        let hub = makeHub()
        let subscriber = RecordingSubscriber(1, hub: hub)
        subscriber.onDeliver = { hub.subscribe("a", $0) }
        hub.subscribe("a", subscriber)
        publish(hub, ["a"])
        XCTAssertEqual(subscriber.deliveries.count, 1)
        XCTAssertEqual(hub.subscriberCount, 1)
        subscriber.onDeliver = nil
        publish(hub, ["a"])
        XCTAssertEqual(subscriber.deliveries.count, 2)
        XCTAssertEqual(subscriber.deliveries.last?.sequences, [2])
        XCTAssertEqual(hub.subscriberCount, 0)
    }

    func testMultiInboxSubscriberWokenOnce() {
        let hub = makeHub()
        let subscriber = RecordingSubscriber(1, hub: hub)
        hub.subscribe("a", subscriber)
        hub.subscribe("b", subscriber)
        publish(hub, ["b", "c", "a"])
        XCTAssertEqual(subscriber.deliveries.count, 1)
        XCTAssertEqual(subscriber.deliveries.first?.sequences, [1, 3])
        XCTAssertEqual(subscriber.deliveries.first?.cursor, "e1-3")
        XCTAssertEqual(hub.subscriberCount, 0)
    }

    func testPersistentSubscriberStays() {
        let hub = makeHub()
        let subscriber = RecordingSubscriber(1, hub: hub)
        subscriber.persistent = true
        hub.subscribe("a", subscriber)
        publish(hub, ["a"])
        publish(hub, ["b"])
        publish(hub, ["a"])
        XCTAssertEqual(subscriber.deliveries.map(\.sequences), [[1], [3]])
        XCTAssertEqual(hub.subscriberCount, 1)
    }

    func testMultiInboxLookupMergesInOrder() {
        let hub = makeHub()
        publish(hub, ["a"])
        publish(hub, ["b"])
        publish(hub, ["a"])
        let lookup = hub.lookup(["b", "a"], since: "e1-0")
        XCTAssertEqual(sequences(lookup), [1, 2, 3])
        XCTAssertFalse(lookup.gap)
    }

    func testMultiInboxLookupGapFromOneInbox() {
        let hub = makeHub(perInbox: 1)
        publish(hub, ["a"])
        publish(hub, ["a"])
        publish(hub, ["b"])
        let lookup = hub.lookup(["a", "b"], since: "e1-0")
        XCTAssertTrue(lookup.gap)
        XCTAssertEqual(sequences(lookup), [2, 3])
    }

    // MARK: - Cursors

    func testCursorFormat() {
        let hub = makeHub()
        XCTAssertEqual(hub.currentCursor, "e1-0")
        XCTAssertEqual(publish(hub, ["a"]), "e1-1")
        XCTAssertEqual(hub.currentCursor, "e1-1")
        XCTAssertEqual(hub.lookup("a", since: "e1-0").events.first?.sequence, 1)
    }

    func testRandomEpoch() {
        let first = Hub.randomEpoch()
        let second = Hub.randomEpoch()
        XCTAssertEqual(first.count, 12)
        XCTAssertTrue(first.allSatisfy(\.isHexDigit), first)
        XCTAssertFalse(first.contains(where: \.isUppercase), first)
        XCTAssertNotEqual(first, second)
        XCTAssertTrue(Hub(limits: HistoryLimits(perInbox: 1, maxAgeMilliseconds: 1, maxTotal: 1)).currentCursor.hasSuffix("-0"))
    }

    func testCursorRoundTrip() {
        let cases: [(text: String, epoch: String, sequence: UInt64)] = [
            ("e1-0", "e1", 0),
            ("9f3a61c2b07e-42", "9f3a61c2b07e", 42),
            ("a-b-7", "a-b", 7),
            ("e1-18446744073709551615", "e1", UInt64.max),
        ]
        for item in cases {
            let cursor = Cursor(item.text)
            XCTAssertEqual(cursor?.epoch, item.epoch, "epoch of \(item.text)")
            XCTAssertEqual(cursor?.sequence, item.sequence, "sequence of \(item.text)")
            XCTAssertEqual(cursor?.text, item.text, "text of \(item.text)")
        }
        XCTAssertEqual(Cursor(Cursor(epoch: "abc", sequence: 9).text), Cursor(epoch: "abc", sequence: 9))
    }

    func testCursorParseFailures() {
        for text in ["", "e1", "e1-", "e1-x", "e1-1x", "e1- 1", "e1-18446744073709551616", "e1-1.5"] {
            XCTAssertNil(Cursor(text), "Cursor(\(text.debugDescription))")
        }
    }
}
