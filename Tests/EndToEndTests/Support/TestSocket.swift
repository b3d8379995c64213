// A blocking client socket for end-to-end tests: TCP to 127.0.0.1 or a Unix
// stream socket, with every read bounded by a deadline.
//
// Trust boundary: the peer is the relay under test, so nothing it sends is
// trusted. Reads stop at the deadline and report a timeout instead of hanging
// the test run. Writes use MSG_NOSIGNAL, so a peer that closes early gives an
// error (EPIPE) instead of killing the test process with SIGPIPE.

import Foundation
import Glibc

/// An error thrown by the end-to-end test helpers, with a message that states what failed.
struct TestFailure: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}

/// A point in time after which a wait gives up.
struct Deadline {
    let end: Date

    init(seconds: TimeInterval) {
        end = Date().addingTimeInterval(seconds)
    }

    var hasPassed: Bool { Date() >= end }

    /// Time left, in whole milliseconds for poll(2), never negative.
    var remainingMilliseconds: Int32 {
        let left = end.timeIntervalSinceNow
        return left <= 0 ? 0 : Int32(min(left * 1000, Double(Int32.max)).rounded(.up))
    }
}

/// Polls `condition` every 20 ms until it is true or `seconds` pass, and returns whether it became true.
func waitUntil(seconds: TimeInterval, _ condition: () -> Bool) -> Bool {
    let deadline = Deadline(seconds: seconds)
    while true {
        if condition() { return true }
        if deadline.hasPassed { return false }
        usleep(20_000)
    }
}

/// One connected stream socket with a read buffer, so that a test can read
/// a line or an HTTP response and keep the bytes that follow it.
final class TestSocket {
    private(set) var fd: Int32
    private var buffered: [UInt8] = []
    /// Set once the peer has closed its side (read returned 0).
    private(set) var reachedEndOfStream = false

    private init(fd: Int32) {
        self.fd = fd
        // Bound blocking writes too, so a peer that stops reading cannot hang a test.
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit {
        close()
    }

    /// Connects to `127.0.0.1:port` over TCP. With `receiveBufferBytes`,
    /// SO_RCVBUF is set before connecting, so the TCP window stays that small
    /// (Linux doubles the value and enforces a minimum). With `sourceAddress`
    /// (an IPv4 address such as 127.0.0.2), the socket is bound to it first,
    /// so the connection comes from that client address.
    static func connectTCP(port: UInt16, receiveBufferBytes: Int32? = nil, sourceAddress: String? = nil) throws -> TestSocket {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket() failed: \(errnoText())") }
        if let sourceAddress {
            var source = sockaddr_in()
            source.sin_family = sa_family_t(AF_INET)
            guard inet_pton(AF_INET, sourceAddress, &source.sin_addr) == 1 else {
                Glibc.close(fd)
                throw TestFailure("invalid IPv4 source address \(sourceAddress)")
            }
            let bound = withUnsafePointer(to: &source) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard bound == 0 else {
                let text = errnoText()
                Glibc.close(fd)
                throw TestFailure("binding the client socket to \(sourceAddress) failed: \(text)")
            }
        }
        if var size = receiveBufferBytes {
            guard setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
                let text = errnoText()
                Glibc.close(fd)
                throw TestFailure("setting SO_RCVBUF to \(size) failed: \(text)")
            }
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let result = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            let text = errnoText()
            Glibc.close(fd)
            throw TestFailure("connect to 127.0.0.1:\(port) failed: \(text)")
        }
        return TestSocket(fd: fd)
    }

    /// Connects to the Unix stream socket at `path`.
    static func connectUnix(path: String) throws -> TestSocket {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket() failed: \(errnoText())") }
        var address = try unixAddress(path)
        let result = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            let text = errnoText()
            Glibc.close(fd)
            throw TestFailure("connect to \(path) failed: \(text)")
        }
        return TestSocket(fd: fd)
    }

    func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }

    /// Closes with a TCP reset instead of a FIN (SO_LINGER with a zero
    /// timeout), as a client whose network vanished would.
    func reset() {
        guard fd >= 0 else { return }
        var option = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        close()
    }

    // MARK: Writing

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL))
            }
            if written < 0 {
                if errno == EINTR { continue }
                throw TestFailure("send of \(bytes.count) bytes failed after \(offset): \(errnoText())")
            }
            offset += written
        }
    }

    func send(_ text: String) throws {
        try send(Array(text.utf8))
    }

    // MARK: Reading

    /// Reads what is available into the buffer, waiting until `deadline`.
    /// Returns false at end of stream, and throws on timeout or a read error.
    private func fill(deadline: Deadline) throws -> Bool {
        if reachedEndOfStream { return false }
        while true {
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, deadline.remainingMilliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                throw TestFailure("poll failed: \(errnoText())")
            }
            if ready == 0 {
                throw TestFailure("timed out waiting for data; \(buffered.count) bytes buffered: \(preview(buffered))")
            }
            var chunk = [UInt8](repeating: 0, count: 65_536)
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                // A reset after the peer closed counts as the end of the stream.
                if errno == ECONNRESET {
                    reachedEndOfStream = true
                    return false
                }
                throw TestFailure("recv failed: \(errnoText())")
            }
            if count == 0 {
                reachedEndOfStream = true
                return false
            }
            buffered.append(contentsOf: chunk[0..<count])
            return true
        }
    }

    /// Reads up to and including `separator` and returns the bytes before it,
    /// or nil if the stream ends first.
    func read(until separator: [UInt8], deadline: Deadline) throws -> [UInt8]? {
        var searchFrom = 0
        while true {
            if let range = firstRange(of: separator, in: buffered, from: searchFrom) {
                let result = Array(buffered[0..<range.lowerBound])
                buffered.removeFirst(range.upperBound)
                return result
            }
            searchFrom = max(0, buffered.count - separator.count + 1)
            guard try fill(deadline: deadline) else { return nil }
        }
    }

    /// Reads one LF-terminated line without its CR LF, or nil at end of stream.
    func readLine(deadline: Deadline) throws -> String? {
        guard var line = try read(until: [0x0A], deadline: deadline) else { return nil }
        if line.last == 0x0D { line.removeLast() }
        return String(decoding: line, as: UTF8.self)
    }

    /// Reads exactly `count` bytes, or throws if the stream ends first.
    func read(count: Int, deadline: Deadline) throws -> [UInt8] {
        while buffered.count < count {
            guard try fill(deadline: deadline) else {
                throw TestFailure("stream ended after \(buffered.count) of \(count) bytes")
            }
        }
        let result = Array(buffered[0..<count])
        buffered.removeFirst(count)
        return result
    }

    /// Reads until the peer closes the connection.
    func readToEnd(deadline: Deadline) throws -> [UInt8] {
        while try fill(deadline: deadline) {}
        let result = buffered
        buffered = []
        return result
    }

    /// Returns whether the peer has sent anything or closed within `seconds`.
    /// Buffered bytes count as something sent.
    func hasInput(within seconds: TimeInterval) throws -> Bool {
        if !buffered.isEmpty || reachedEndOfStream { return true }
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, Deadline(seconds: seconds).remainingMilliseconds)
        if ready < 0 { throw TestFailure("poll failed: \(errnoText())") }
        return ready > 0
    }
}

// MARK: Helpers

/// Builds a `sockaddr_un` for `path`, which must fit in `sun_path` with its NUL.
func unixAddress(_ path: String) throws -> sockaddr_un {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    guard bytes.count < capacity else {
        throw TestFailure("Unix socket path is \(bytes.count) bytes, longer than \(capacity - 1): \(path)")
    }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    return address
}

func errnoText() -> String {
    String(cString: strerror(errno)) + " (errno \(errno))"
}

/// Returns the first bytes of `bytes` as text, for failure messages.
func preview(_ bytes: [UInt8], limit: Int = 300) -> String {
    let text = String(decoding: bytes.prefix(limit), as: UTF8.self)
    return bytes.count > limit ? text + "…" : text
}

private func firstRange(of needle: [UInt8], in haystack: [UInt8], from start: Int) -> Range<Int>? {
    guard !needle.isEmpty, haystack.count >= needle.count else { return nil }
    var i = start
    while i + needle.count <= haystack.count {
        if haystack[i..<(i + needle.count)].elementsEqual(needle) { return i..<(i + needle.count) }
        i += 1
    }
    return nil
}
