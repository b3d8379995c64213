// Sends one record to notify-relay over its ingest Unix socket and reads the
// acknowledgement: one JSON line out, one `OK <cursor>` or `ERR <reason>` back.
//
// Every step is non-blocking and waits in poll(2) at most until the deadline:
// connect, each write, each read. A Unix stream connect does not complete
// asynchronously. When the listen backlog is full it fails with EAGAIN, so the
// client retries every 10 ms until the deadline. Writes use MSG_NOSIGNAL, so a
// relay that closes early yields EPIPE instead of killing the process.
//
// Trust boundary: the socket path comes from the command line or the
// environment; the reply comes from whatever listens there. The reply line is
// capped at `maxReplyBytes` and its text is only logged (the logger escapes it).

import CNotifyShim
import Glibc
import NotifyCore

/// A failure to deliver a record to the relay or to get it accepted.
public enum RelayError: Error, Equatable, Sendable {
    /// socket(2) or connect(2) failed; ENOENT means no socket file, ECONNREFUSED no relay listening.
    case connectFailed(errno: Int32)
    /// The deadline passed during `stage` ("connect", "send" or "reply").
    case timedOut(stage: String)
    /// A send or receive call failed after the connection was made.
    case ioFailed(call: String, errno: Int32)
    /// The relay closed the connection before a complete reply line.
    case closedWithoutReply
    /// The relay replied `ERR <reason>`.
    case rejected(reason: String)
    /// The reply was neither `OK ...` nor `ERR ...`, or longer than `maxReplyBytes`.
    case invalidReply(String)

    /// True when the relay could not be reached in time, the case --tempfail defers.
    /// A connection closed before the reply counts too: the relay may have crashed
    /// mid-request, and a retry can succeed.
    public var isUnreachable: Bool {
        switch self {
        case .connectFailed, .timedOut, .ioFailed, .closedWithoutReply: return true
        case .rejected, .invalidReply: return false
        }
    }

    /// A log message that names the failing step and the errno text.
    public var message: String {
        switch self {
        case .connectFailed(let code):
            return "cannot connect to the relay: \(errnoText(code)); start notify-relay, or pass the socket it listens on with --socket"
        case .timedOut(let stage): return "timed out waiting for the relay (\(stage))"
        case .ioFailed(let call, let code): return "\(call) to the relay failed: \(errnoText(code))"
        case .closedWithoutReply: return "the relay closed the connection without a reply"
        case .rejected(let reason): return "the relay rejected the record: \(reason)"
        case .invalidReply(let text): return "the relay sent an invalid reply: \(text)"
        }
    }
}

/// Formats an errno value as its text and number, e.g. `No such file or directory (errno 2)`.
public func errnoText(_ code: Int32) -> String {
    "\(String(cString: strerror(code))) (errno \(code))"
}

/// Client side of the ingest line protocol for one record.
public struct RelayClient: Sendable {
    /// Longest reply line read, in bytes; a cursor and a short reason fit easily.
    public static let maxReplyBytes = 4096

    public var socketPath: String
    public var deadline: Deadline

    public init(socketPath: String, deadline: Deadline) {
        self.socketPath = socketPath
        self.deadline = deadline
    }

    /// Sends `record` and returns the cursor from the relay's `OK <cursor>` reply.
    public func send(_ record: MailRecord) -> Result<String, RelayError> {
        let fd: Int32
        switch connect() {
        case .success(let connected): fd = connected
        case .failure(let error): return .failure(error)
        }
        defer { close(fd) }

        let line = Array((record.jsonLine() + "\n").utf8)
        if let error = writeAll(fd, line) { return .failure(error) }
        return readReply(fd).flatMap(parseReply)
    }

    private func connect() -> Result<Int32, RelayError> {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(socketPath.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            return .failure(.connectFailed(errno: ENAMETOOLONG))
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }

        let fd = notify_socket_nonblocking(AF_UNIX, Int32(SOCK_STREAM.rawValue))
        guard fd >= 0 else { return .failure(.connectFailed(errno: errno)) }

        while true {
            let result = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            if result == 0 { return .success(fd) }
            let code = errno
            if code == EINTR { continue }
            if code == EINPROGRESS {
                return waitForConnect(fd)
            }
            if code == EAGAIN, !deadline.hasPassed {
                // The relay's listen backlog is full: retry shortly, within the deadline.
                usleep(UInt32(min(10_000, Int(deadline.remainingMilliseconds) * 1000)))
                continue
            }
            close(fd)
            return .failure(code == EAGAIN ? .timedOut(stage: "connect") : .connectFailed(errno: code))
        }
    }

    private func waitForConnect(_ fd: Int32) -> Result<Int32, RelayError> {
        guard waitFor(fd, events: POLLOUT) else {
            close(fd)
            return .failure(.timedOut(stage: "connect"))
        }
        var socketError: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &socketError, &length)
        guard socketError == 0 else {
            close(fd)
            return .failure(.connectFailed(errno: socketError))
        }
        return .success(fd)
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> RelayError? {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if written >= 0 {
                offset += written
                continue
            }
            let code = errno
            if code == EINTR { continue }
            guard code == EAGAIN else { return .ioFailed(call: "send", errno: code) }
            guard waitFor(fd, events: POLLOUT) else { return .timedOut(stage: "send") }
        }
        return nil
    }

    private func readReply(_ fd: Int32) -> Result<[UInt8], RelayError> {
        var reply: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 512)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count == 0 { return .failure(.closedWithoutReply) }
            if count < 0 {
                let code = errno
                if code == EINTR { continue }
                guard code == EAGAIN else { return .failure(.ioFailed(call: "recv", errno: code)) }
                guard waitFor(fd, events: POLLIN) else { return .failure(.timedOut(stage: "reply")) }
                continue
            }
            reply += chunk[0..<count]
            if let newline = reply.firstIndex(of: 0x0A) {
                var line = Array(reply[..<newline])
                if line.last == 0x0D { line.removeLast() }
                return .success(line)
            }
            guard reply.count <= RelayClient.maxReplyBytes else {
                return .failure(.invalidReply("no line end within \(RelayClient.maxReplyBytes) bytes"))
            }
        }
    }

    /// Waits until `fd` is ready for `events` or the deadline passes; false on timeout.
    private func waitFor(_ fd: Int32, events: Int32) -> Bool {
        while true {
            var descriptor = pollfd(fd: fd, events: Int16(events), revents: 0)
            let ready = poll(&descriptor, 1, deadline.remainingMilliseconds)
            if ready > 0 { return true }
            if ready == 0 { return false }
            if errno != EINTR { return true }  // the next call reports the error
        }
    }
}

/// Interprets one reply line: `OK <cursor>` gives the cursor, `ERR <reason>` an error.
public func parseReply(_ line: [UInt8]) -> Result<String, RelayError> {
    let text = String(decoding: line, as: UTF8.self)
    if text == "OK" { return .success("") }
    if text.hasPrefix("OK ") { return .success(String(text.dropFirst(3))) }
    if text == "ERR" { return .failure(.rejected(reason: "")) }
    if text.hasPrefix("ERR ") { return .failure(.rejected(reason: String(text.dropFirst(4)))) }
    return .failure(.invalidReply(quotedForMessage(text)))
}
