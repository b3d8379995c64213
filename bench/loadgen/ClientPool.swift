// Many long-poll clients on one epoll instance in one thread: connects them,
// sends `GET /<inbox>?timeout=S` on each, and reads the responses of a
// fan-out round, stamping each with CLOCK_MONOTONIC when its last byte is read.
//
// A stamp therefore includes the time this process takes to reach that
// client's socket after the relay wrote to it, since one thread reads all of
// them. Connections are closed with SO_LINGER 0 (a reset), so repeated runs do
// not leave tens of thousands of TIME_WAIT entries holding loopback ports.

import CNotifyShim
import Glibc

/// Monotonic time in nanoseconds.
func monotonicNanoseconds() -> Int64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec)
}

/// A failure of the load generator itself, reported with the call and errno.
struct LoadError: Error, CustomStringConvertible {
    var description: String

    init(_ message: String) { description = message }
    init(call: String) { description = "\(call) failed: \(String(cString: strerror(errno)))" }
}

/// The outcome of one fan-out round.
struct RoundResult {
    /// Latency of each client that received a valid 200, in nanoseconds from the ingest write.
    var latencies: [Int64] = []
    /// Clients whose response was not a 200 with the expected body, or that were closed.
    var failed = 0
    /// Clients still without a complete response at the round deadline.
    var missing = 0
    /// Time until every `OK` ingest reply was read, in nanoseconds, or nil if some never came.
    var ingestAcknowledged: Int64? = nil
}

final class ClientPool {
    private enum Phase {
        case connecting, waiting, done, failed
    }

    let port: UInt16
    let inboxes: [String]
    let pollTimeoutSeconds: Int
    private let epoll: Int32
    private var fds: [Int32]
    private var phases: [Phase]
    private var received: [[UInt8]]
    private var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)
    private var events = [notify_epoll_event](repeating: notify_epoll_event(), count: 256)
    /// epoll data word of the ingest socket; client events carry their index.
    private static let ingestTag = UInt64.max

    /// Responses that arrived outside a fan-out round (503, 400, early close).
    private(set) var unexpectedResponses = 0

    init(port: UInt16, inboxes: [String], pollTimeoutSeconds: Int) throws(LoadError) {
        self.port = port
        self.inboxes = inboxes
        self.pollTimeoutSeconds = pollTimeoutSeconds
        epoll = notify_epoll_create()
        guard epoll >= 0 else { throw LoadError(call: "epoll_create1") }
        fds = Array(repeating: -1, count: inboxes.count)
        phases = Array(repeating: .connecting, count: inboxes.count)
        received = Array(repeating: [], count: inboxes.count)
    }

    var clientCount: Int { inboxes.count }

    // MARK: Connecting

    /// Connects every client with at most `maxPending` connects in flight and
    /// sends each its first request. Throws when the deadline passes first.
    func connectAll(maxPending: Int, deadline: Int64) throws(LoadError) {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")

        var next = 0
        var pending = 0
        var connected = 0
        while connected < clientCount {
            guard monotonicNanoseconds() < deadline else {
                throw LoadError("connect phase timed out with \(connected) of \(clientCount) clients connected")
            }
            while pending < maxPending && next < clientCount {
                let fd = notify_socket_nonblocking(AF_INET, Int32(SOCK_STREAM.rawValue))
                guard fd >= 0 else { throw LoadError(call: "socket (client \(next))") }
                fds[next] = fd
                let result = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
                guard result == 0 || errno == EINPROGRESS else { throw LoadError(call: "connect (client \(next))") }
                guard notify_epoll_ctl(epoll, 0, fd, notify_EPOLLOUT, UInt64(next)) == 0 else {
                    throw LoadError(call: "epoll_ctl")
                }
                next += 1
                pending += 1
            }
            for (tag, mask) in wait(milliseconds: 100) {
                let index = Int(tag)
                guard index < clientCount, phases[index] == .connecting else {
                    if index < clientCount { drainEarly(index) }
                    continue
                }
                guard mask & notify_EPOLLOUT != 0 else { continue }
                pending -= 1
                var error: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fds[index], SOL_SOCKET, SO_ERROR, &error, &length)
                guard error == 0 else {
                    throw LoadError("connect (client \(index)) failed: \(String(cString: strerror(error)))")
                }
                connected += 1
                _ = notify_epoll_ctl(epoll, 1, fds[index], notify_EPOLLIN, UInt64(index))
                try sendRequest(index)
            }
        }
    }

    /// Sends the long-poll request of client `index`, first or again on its
    /// keep-alive connection, and marks the client as waiting for a response.
    func sendRequest(_ index: Int) throws(LoadError) {
        let request = Array(
            "GET /\(inboxes[index])?timeout=\(pollTimeoutSeconds) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        // A request of a few dozen bytes fits an empty socket send buffer, so a short write is an error.
        let written = request.withUnsafeBytes { send(fds[index], $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard written == request.count else { throw LoadError(call: "send (client \(index))") }
        phases[index] = .waiting
        received[index] = []
    }

    /// Sends the next request on every client that completed the last round.
    func rearm() throws(LoadError) {
        for index in 0..<clientCount where phases[index] == .done {
            try sendRequest(index)
        }
    }

    /// Reads without blocking whatever already arrived; call while waiting for
    /// the relay, so a 503 or a closed connection is counted instead of missed.
    func pollForUnexpected() {
        for (tag, _) in wait(milliseconds: 0) where tag != Self.ingestTag {
            drainEarly(Int(tag))
        }
    }

    private func drainEarly(_ index: Int) {
        guard phases[index] == .waiting else { return }
        let count = readBuffer.withUnsafeMutableBytes { read(fds[index], $0.baseAddress, $0.count) }
        if count < 0 && (errno == EAGAIN || errno == EINTR) { return }
        unexpectedResponses += 1
        phases[index] = .failed
        _ = notify_epoll_ctl(epoll, 2, fds[index], 0, 0)
    }

    // MARK: Fan-out round

    /// Writes `payload` to the ingest socket `ingestFD` and reads every waiting
    /// client's response. `expectedAcks` is the number of ingest lines.
    func runRound(ingestFD: Int32, payload: [UInt8], expectedAcks: Int, deadline: Int64) throws(LoadError) -> RoundResult {
        var result = RoundResult()
        var outstanding = phases.filter { $0 == .waiting }.count
        guard notify_epoll_ctl(epoll, 0, ingestFD, notify_EPOLLIN, Self.ingestTag) == 0 else {
            throw LoadError(call: "epoll_ctl (ingest)")
        }
        defer { _ = notify_epoll_ctl(epoll, 2, ingestFD, 0, 0) }
        var acknowledgements: [UInt8] = []

        // The clock starts just before the ingest write, as notify-deliver would start it.
        let start = monotonicNanoseconds()
        try writeAll(ingestFD, payload)

        while outstanding > 0 || result.ingestAcknowledged == nil {
            guard monotonicNanoseconds() < deadline else { break }
            for (tag, _) in wait(milliseconds: 50) {
                if tag == Self.ingestTag {
                    let count = readBuffer.withUnsafeMutableBytes { read(ingestFD, $0.baseAddress, $0.count) }
                    guard count > 0 else { continue }
                    acknowledgements.append(contentsOf: readBuffer[0..<count])
                    if acknowledgements.filter({ $0 == 0x0A }).count >= expectedAcks {
                        result.ingestAcknowledged = monotonicNanoseconds() - start
                        guard acknowledgements.starts(with: Array("OK ".utf8)) else {
                            throw LoadError("ingest replied \(String(decoding: acknowledgements.prefix(200), as: UTF8.self))")
                        }
                    }
                    continue
                }
                let index = Int(tag)
                guard phases[index] == .waiting else { continue }
                switch readResponse(index) {
                case .incomplete:
                    continue
                case .valid:
                    result.latencies.append(monotonicNanoseconds() - start)
                    phases[index] = .done
                case .invalid:
                    result.failed += 1
                    phases[index] = .failed
                    _ = notify_epoll_ctl(epoll, 2, fds[index], 0, 0)
                }
                outstanding -= 1
            }
        }
        result.missing = outstanding
        return result
    }

    private enum ReadOutcome {
        case incomplete, valid, invalid
    }

    /// Reads what is available for client `index` and checks a complete
    /// response: status 200, Content-Length framing, body `New mail for: <inbox>`.
    private func readResponse(_ index: Int) -> ReadOutcome {
        let count = readBuffer.withUnsafeMutableBytes { read(fds[index], $0.baseAddress, $0.count) }
        if count < 0 { return errno == EAGAIN || errno == EINTR ? .incomplete : .invalid }
        if count == 0 { return .invalid }
        received[index].append(contentsOf: readBuffer[0..<count])

        let bytes = received[index]
        guard let headEnd = findHeadEnd(bytes) else { return .incomplete }
        let head = String(decoding: bytes[0..<headEnd], as: UTF8.self)
        guard head.hasPrefix("HTTP/1.1 200 ") else { return .invalid }
        var contentLength: Int? = nil
        for line in head.split(separator: "\r\n") where line.lowercased().hasPrefix("content-length:") {
            contentLength = Int(line.dropFirst("content-length:".count).trimmingSpaces())
        }
        guard let contentLength else { return .invalid }
        let bodyStart = headEnd + 4
        if bytes.count < bodyStart + contentLength { return .incomplete }
        guard bytes.count == bodyStart + contentLength else { return .invalid }
        let body = String(decoding: bytes[bodyStart...], as: UTF8.self)
        received[index] = []
        return body == "New mail for: \(inboxes[index])\n" ? .valid : .invalid
    }

    private func findHeadEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4)
        where bytes[i] == 0x0D && bytes[i + 1] == 0x0A && bytes[i + 2] == 0x0D && bytes[i + 3] == 0x0A {
            return i
        }
        return nil
    }

    // MARK: Helpers

    private func wait(milliseconds: Int32) -> [(UInt64, UInt32)] {
        let count = events.withUnsafeMutableBufferPointer {
            notify_epoll_wait(epoll, $0.baseAddress, Int32($0.count), milliseconds)
        }
        guard count > 0 else { return [] }
        return (0..<Int(count)).map { (events[$0].data, events[$0].events) }
    }

    /// Resets and closes every client connection.
    func closeAll() {
        var reset = linger(l_onoff: 1, l_linger: 0)
        for fd in fds where fd >= 0 {
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, socklen_t(MemoryLayout<linger>.size))
            close(fd)
        }
        fds = fds.map { _ in -1 }
        close(epoll)
    }
}

/// Writes all of `bytes` to a blocking descriptor.
func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(LoadError) {
    var offset = 0
    while offset < bytes.count {
        let count = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
        if count < 0 {
            if errno == EINTR { continue }
            throw LoadError(call: "send (ingest)")
        }
        offset += count
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var text = self
        while text.first == " " { text = text.dropFirst() }
        while text.last == " " { text = text.dropLast() }
        return text
    }
}
