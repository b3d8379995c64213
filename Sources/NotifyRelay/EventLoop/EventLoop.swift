// The relay's single event loop: one thread owns every connection, the hub
// and the timers, so no state needs a lock. Each turn waits in epoll until
// the earliest timer deadline, dispatches ready descriptors, then fires the
// timers that are due, so a storm of I/O cannot starve timeouts and timers
// cannot starve I/O beyond one batch.

import Glibc

/// Owner of epoll, the timer heap and the shared read buffer.
final class EventLoop {
    let epoll: Epoll
    var timers = TimerHeap()
    /// One read buffer serves every connection: data is copied out only while a
    /// request head or ingest line is incomplete, so idle connections hold none.
    var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)
    private(set) var running = true

    init() throws(SystemError) {
        epoll = try Epoll()
    }

    /// Milliseconds on the monotonic clock.
    static func now() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }

    /// Runs until `stop()` is called.
    func run() throws(SystemError) {
        while running {
            var timeout: Int32 = -1
            if let deadline = timers.nextDeadline {
                timeout = Int32(clamping: max(0, deadline - EventLoop.now()))
            }
            try epoll.poll(timeoutMilliseconds: timeout)
            for target in timers.popExpired(now: EventLoop.now()) {
                target.timerFired()
            }
        }
    }

    /// Ends `run()` after the current turn.
    func stop() { running = false }

    /// Reads from `fd` into the shared buffer. Returns the byte count, 0 on end
    /// of stream, nil when nothing is available, or throws on a socket error.
    func readIntoSharedBuffer(_ fd: Int32) throws(SystemError) -> Int? {
        while true {
            let count = readBuffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count >= 0 { return count }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return nil
            default: throw SystemError(call: "read")
            }
        }
    }
}

/// Writes as much of `bytes[offset...]` as the socket takes without blocking.
/// Returns the new offset, or throws on a socket error (EPIPE, ECONNRESET, ...).
func writeNonBlocking(_ fd: Int32, _ bytes: [UInt8], from offset: Int) throws(SystemError) -> Int {
    var position = offset
    while position < bytes.count {
        let count = bytes.withUnsafeBytes { buffer in
            send(fd, buffer.baseAddress! + position, buffer.count - position, Int32(MSG_NOSIGNAL))
        }
        if count >= 0 {
            position += count
            continue
        }
        switch errno {
        case EINTR: continue
        case EAGAIN, EWOULDBLOCK: return position
        default: throw SystemError(call: "send")
        }
    }
    return position
}
