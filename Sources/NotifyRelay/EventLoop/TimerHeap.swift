// One min-heap for every deadline in the relay: head-read, keep-alive idle,
// long-poll, write-stall and housekeeping timers. Each target stores its own
// heap index, so scheduling, rescheduling and cancelling are O(log n) with no
// search. A target has at most one pending deadline.

/// An object that can wait for one deadline at a time.
protocol TimerTarget: AnyObject {
    /// Position in the heap, or -1 when no deadline is pending. Owned by TimerHeap.
    var timerIndex: Int { get set }
    /// Monotonic deadline in milliseconds. Owned by TimerHeap.
    var timerDeadline: Int64 { get set }
    /// Called once when the deadline passes; the target is no longer scheduled.
    func timerFired()
}

/// A binary min-heap of timer targets ordered by deadline.
struct TimerHeap {
    private var heap: [TimerTarget] = []

    var count: Int { heap.count }

    /// The earliest deadline, if any.
    var nextDeadline: Int64? { heap.first?.timerDeadline }

    /// Schedules `target` at `deadline`, replacing any deadline it had.
    mutating func schedule(_ target: TimerTarget, at deadline: Int64) {
        if target.timerIndex >= 0 {
            let old = target.timerDeadline
            target.timerDeadline = deadline
            if deadline < old { siftUp(target.timerIndex) } else { siftDown(target.timerIndex) }
            return
        }
        target.timerDeadline = deadline
        target.timerIndex = heap.count
        heap.append(target)
        siftUp(heap.count - 1)
    }

    /// Cancels the pending deadline of `target`, if any.
    mutating func cancel(_ target: TimerTarget) {
        let index = target.timerIndex
        guard index >= 0 else { return }
        let last = heap.count - 1
        if index != last {
            swapAt(index, last)
        }
        heap.removeLast()
        target.timerIndex = -1
        if index < heap.count {
            siftDown(index)
            siftUp(index)
        }
    }

    /// Removes and returns every target whose deadline is at or before `now`, earliest first.
    mutating func popExpired(now: Int64) -> [TimerTarget] {
        var expired: [TimerTarget] = []
        while let first = heap.first, first.timerDeadline <= now {
            cancel(first)
            expired.append(first)
        }
        return expired
    }

    private mutating func swapAt(_ i: Int, _ j: Int) {
        heap.swapAt(i, j)
        heap[i].timerIndex = i
        heap[j].timerIndex = j
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].timerDeadline < heap[parent].timerDeadline else { return }
            swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < heap.count, heap[left].timerDeadline < heap[smallest].timerDeadline { smallest = left }
            if right < heap.count, heap[right].timerDeadline < heap[smallest].timerDeadline { smallest = right }
            if smallest == parent { return }
            swapAt(parent, smallest)
            parent = smallest
        }
    }
}
