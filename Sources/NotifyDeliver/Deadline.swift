// A point in time on the monotonic clock that bounds every wait of one run.
//
// notify-deliver must never hold an MTA delivery slot for long, so each poll
// waits at most until the deadline. CLOCK_MONOTONIC is used because a wall
// clock step (NTP, an admin) must not stretch or cut the bound.

import Glibc

/// The instant a run must be finished by, on CLOCK_MONOTONIC.
public struct Deadline: Sendable, Equatable {
    /// Nanoseconds on CLOCK_MONOTONIC.
    public let nanoseconds: UInt64

    public init(nanoseconds: UInt64) {
        self.nanoseconds = nanoseconds
    }

    /// Creates the deadline `seconds` after `start` (nanoseconds on CLOCK_MONOTONIC).
    public init(seconds: Double, after start: UInt64) {
        self.nanoseconds = start + UInt64(max(0, seconds) * 1_000_000_000)
    }

    /// Returns the current time on CLOCK_MONOTONIC, in nanoseconds.
    public static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    /// True once the deadline is reached.
    public var hasPassed: Bool { Deadline.now() >= nanoseconds }

    /// Milliseconds left, rounded up so a poll does not wake just before the
    /// deadline and spin; 0 once it has passed. Fits poll(2)'s timeout argument.
    public var remainingMilliseconds: Int32 {
        let now = Deadline.now()
        guard nanoseconds > now else { return 0 }
        let milliseconds = (nanoseconds - now + 999_999) / 1_000_000
        return Int32(min(milliseconds, UInt64(Int32.max)))
    }

    /// Returns a deadline `seconds` earlier, but not before the current time.
    public func earlier(by seconds: Double) -> Deadline {
        let cut = UInt64(max(0, seconds) * 1_000_000_000)
        let now = Deadline.now()
        return Deadline(nanoseconds: max(now, nanoseconds > cut ? nanoseconds - cut : 0))
    }
}
