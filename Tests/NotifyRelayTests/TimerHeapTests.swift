// Tests for the timer heap: scheduling, cancelling and rescheduling keep the
// earliest deadline first, checked by hand and against a sorted reference
// under a seeded random workload.

import XCTest

@testable import NotifyRelay

private final class TestTimer: TimerTarget {
    let name: Int
    var timerIndex = -1
    var timerDeadline: Int64 = 0

    init(_ name: Int) { self.name = name }

    func timerFired() {}
}

/// SplitMix64, so the random workload is the same on every run.
private struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

final class TimerHeapTests: XCTestCase {
    private func names(_ targets: [TimerTarget]) -> [Int] {
        targets.map { ($0 as! TestTimer).name }
    }

    private func deadlines(_ targets: [TimerTarget]) -> [Int64] {
        targets.map(\.timerDeadline)
    }

    func testEmptyHeap() {
        var heap = TimerHeap()
        XCTAssertEqual(heap.count, 0)
        XCTAssertNil(heap.nextDeadline)
        XCTAssertEqual(heap.popExpired(now: .max).count, 0)
    }

    func testScheduleOrder() {
        var heap = TimerHeap()
        let timers = (0..<5).map { TestTimer($0) }
        for (timer, deadline) in zip(timers, [30, 10, 50, 20, 40] as [Int64]) {
            heap.schedule(timer, at: deadline)
        }
        XCTAssertEqual(heap.count, 5)
        XCTAssertEqual(heap.nextDeadline, 10)
        XCTAssertEqual(names(heap.popExpired(now: 100)), [1, 3, 0, 4, 2])
        XCTAssertEqual(heap.count, 0)
        XCTAssertTrue(timers.allSatisfy { $0.timerIndex == -1 })
    }

    func testPopExpiredOnlyDue() {
        var heap = TimerHeap()
        let timers = (0..<3).map { TestTimer($0) }
        heap.schedule(timers[0], at: 10)
        heap.schedule(timers[1], at: 20)
        heap.schedule(timers[2], at: 30)
        XCTAssertEqual(names(heap.popExpired(now: 9)), [])
        XCTAssertEqual(names(heap.popExpired(now: 20)), [0, 1], "a deadline equal to now is due")
        XCTAssertEqual(heap.count, 1)
        XCTAssertEqual(heap.nextDeadline, 30)
        XCTAssertEqual(timers[0].timerIndex, -1)
        XCTAssertEqual(timers[2].timerIndex, 0)
    }

    func testEqualDeadlines() {
        var heap = TimerHeap()
        let timers = (0..<4).map { TestTimer($0) }
        for timer in timers { heap.schedule(timer, at: 7) }
        XCTAssertEqual(Set(names(heap.popExpired(now: 7))), [0, 1, 2, 3])
        XCTAssertEqual(heap.count, 0)
    }

    func testCancel() {
        var heap = TimerHeap()
        let first = TestTimer(0)
        let second = TestTimer(1)
        heap.schedule(first, at: 10)
        heap.schedule(second, at: 20)
        heap.cancel(first)
        XCTAssertEqual(heap.count, 1)
        XCTAssertEqual(first.timerIndex, -1)
        XCTAssertEqual(heap.nextDeadline, 20)
        heap.cancel(first)
        XCTAssertEqual(heap.count, 1, "cancelling twice changes nothing")
        heap.cancel(TestTimer(2))
        XCTAssertEqual(heap.count, 1, "cancelling an unscheduled timer changes nothing")
        XCTAssertEqual(names(heap.popExpired(now: 100)), [1])
    }

    func testCancelLast() {
        var heap = TimerHeap()
        let timers = (0..<3).map { TestTimer($0) }
        for (timer, deadline) in zip(timers, [10, 20, 30] as [Int64]) { heap.schedule(timer, at: deadline) }
        heap.cancel(timers[2])
        XCTAssertEqual(names(heap.popExpired(now: 100)), [0, 1])
    }

    func testCancelMiddleKeepsOrder() {
        // Deadlines chosen so the last element, moved into the hole, must sift up.
        var heap = TimerHeap()
        let deadlines: [Int64] = [1, 50, 2, 60, 70, 3, 4]
        let timers = deadlines.indices.map { TestTimer($0) }
        for (timer, deadline) in zip(timers, deadlines) { heap.schedule(timer, at: deadline) }
        heap.cancel(timers[3])
        XCTAssertEqual(heap.count, 6)
        XCTAssertEqual(self.deadlines(heap.popExpired(now: 100)), [1, 2, 3, 4, 50, 70])
    }

    func testRescheduleEarlier() {
        var heap = TimerHeap()
        let timers = (0..<3).map { TestTimer($0) }
        for (timer, deadline) in zip(timers, [10, 20, 30] as [Int64]) { heap.schedule(timer, at: deadline) }
        heap.schedule(timers[2], at: 5)
        XCTAssertEqual(heap.count, 3, "rescheduling does not add a second entry")
        XCTAssertEqual(heap.nextDeadline, 5)
        XCTAssertEqual(names(heap.popExpired(now: 100)), [2, 0, 1])
    }

    func testRescheduleLater() {
        var heap = TimerHeap()
        let timers = (0..<3).map { TestTimer($0) }
        for (timer, deadline) in zip(timers, [10, 20, 30] as [Int64]) { heap.schedule(timer, at: deadline) }
        heap.schedule(timers[0], at: 40)
        XCTAssertEqual(heap.count, 3)
        XCTAssertEqual(heap.nextDeadline, 20)
        XCTAssertEqual(names(heap.popExpired(now: 35)), [1, 2])
        XCTAssertEqual(names(heap.popExpired(now: 40)), [0])
    }

    func testRescheduleAfterPop() {
        var heap = TimerHeap()
        let timer = TestTimer(0)
        heap.schedule(timer, at: 10)
        XCTAssertEqual(names(heap.popExpired(now: 10)), [0])
        heap.schedule(timer, at: 20)
        XCTAssertEqual(heap.count, 1)
        XCTAssertEqual(heap.nextDeadline, 20)
    }

    func testRandomWorkloadMatchesReference() {
        var random = SeededGenerator(state: 20_241_204)
        var heap = TimerHeap()
        var reference: [Int: Int64] = [:]
        let timers = (0..<2000).map { TestTimer($0) }

        for timer in timers {
            let deadline = Int64.random(in: 0..<10_000, using: &random)
            heap.schedule(timer, at: deadline)
            reference[timer.name] = deadline
        }
        for _ in 0..<3000 {
            let timer = timers[Int.random(in: 0..<timers.count, using: &random)]
            switch Int.random(in: 0..<3, using: &random) {
            case 0:
                heap.cancel(timer)
                reference[timer.name] = nil
            default:
                let deadline = Int64.random(in: 0..<10_000, using: &random)
                heap.schedule(timer, at: deadline)
                reference[timer.name] = deadline
            }
        }
        XCTAssertEqual(heap.count, reference.count)
        XCTAssertEqual(heap.nextDeadline, reference.values.min())

        // Pop in slices, so every partial pop is checked against the reference too.
        var now: Int64 = 0
        while heap.count > 0 {
            now += 500
            let popped = heap.popExpired(now: now)
            let expected = reference.filter { $0.value <= now }
            XCTAssertEqual(deadlines(popped), expected.values.sorted(), "deadlines due at \(now)")
            XCTAssertEqual(Set(names(popped)), Set(expected.keys), "timers due at \(now)")
            for name in expected.keys { reference[name] = nil }
            XCTAssertEqual(heap.count, reference.count)
        }
        XCTAssertTrue(timers.allSatisfy { $0.timerIndex == -1 })
    }
}
