// One ingest client (notify-deliver, or a person typing into telnet): reads
// request lines, publishes each record to the hub and answers `OK <cursor>` or
// `ERR <reason>` per line, in order.
//
// Trust boundary: anyone allowed to connect to the ingest socket (its mode and
// group decide who) or to the optional TCP ingest listener. Lines are bounded
// by `IngestProtocol.maxLineBytes`; a longer line is answered with ERR and the
// connection closed, because the rest of it cannot be framed.
// While replies are not yet written, no further lines are read, so a client
// that never reads its replies cannot make the relay buffer without bound.

import CNotifyShim
import Glibc
import NotifyCore

final class IngestConnection: EventHandler, TimerTarget {
    let fd: Int32
    let id: Int
    let peer: String
    private unowned let relay: Relay
    private var input: [UInt8]? = nil
    private var output: [UInt8] = []
    private var outputOffset = 0
    private var closeAfterFlush = false
    private var closed = false
    var timerIndex = -1
    var timerDeadline: Int64 = 0

    /// Idle time after which an ingest client is disconnected, in milliseconds.
    static let idleTimeoutMilliseconds: Int64 = 60_000

    init(fd: Int32, id: Int, peer: String, relay: Relay) {
        self.fd = fd
        self.id = id
        self.peer = peer
        self.relay = relay
    }

    func start() {
        relay.loop.timers.schedule(self, at: EventLoop.now() + Self.idleTimeoutMilliseconds)
    }

    func handleEvents(_ events: UInt32) {
        if events & Interest.writable.rawValue != 0 {
            flush()
        }
        if closed { return }
        if !output.isEmpty { return }
        if events & (Interest.readable.rawValue | notify_EPOLLERR | notify_EPOLLHUP) != 0 {
            readAvailable()
        }
    }

    private func readAvailable() {
        let count: Int?
        do {
            count = try relay.loop.readIntoSharedBuffer(fd)
        } catch {
            relay.logger.warning("ingest read failed", [("ingest", String(id)), ("error", error.description)])
            close()
            return
        }
        guard let count else { return }
        if count == 0 {
            // The client finished sending: answer what is buffered, then close.
            closeAfterFlush = true
            if var pending = input, !pending.isEmpty {
                input = nil
                if pending.last == 0x0D { pending.removeLast() }
                answer(pending)
            }
            flush()
            return
        }
        relay.loop.timers.schedule(self, at: EventLoop.now() + Self.idleTimeoutMilliseconds)
        if input == nil {
            input = Array(relay.loop.readBuffer[0..<count])
        } else {
            input!.append(contentsOf: relay.loop.readBuffer[0..<count])
        }
        processLines()
    }

    private func processLines() {
        guard var buffer = input else { return }
        var start = 0
        while let newline = buffer[start...].firstIndex(of: 0x0A) {
            var end = newline
            if end > start, buffer[end - 1] == 0x0D { end -= 1 }
            if end - start > IngestProtocol.maxLineBytes {
                rejectLongLine()
                return
            }
            answer(Array(buffer[start..<end]))
            start = newline + 1
        }
        buffer.removeFirst(start)
        if buffer.count > IngestProtocol.maxLineBytes {
            rejectLongLine()
            return
        }
        input = buffer.isEmpty ? nil : buffer
        flush()
    }

    private func rejectLongLine() {
        input = nil
        relay.countIngestError()
        relay.warnRateLimited("ingest line too long", [("ingest", String(id)), ("peer", peer), ("max_bytes", String(IngestProtocol.maxLineBytes))])
        output.append(contentsOf: Array(IngestProtocol.errorReply("line longer than \(IngestProtocol.maxLineBytes) bytes").utf8))
        closeAfterFlush = true
        flush()
    }

    private func answer(_ line: [UInt8]) {
        let reply: String
        switch relay.ingest(line, peer: peer) {
        case .success(let cursor): reply = IngestProtocol.okReply(cursor: cursor)
        case .failure(let error): reply = IngestProtocol.errorReply(error.reason)
        }
        output.append(contentsOf: Array(reply.utf8))
    }

    private func flush() {
        if !output.isEmpty {
            do {
                outputOffset = try writeNonBlocking(fd, output, from: outputOffset)
            } catch {
                relay.logger.warning("ingest write failed", [("ingest", String(id)), ("error", error.description)])
                close()
                return
            }
            if outputOffset < output.count {
                relay.loop.epoll.modify(fd, interest: .writable)
                return
            }
            output = []
            outputOffset = 0
            relay.loop.epoll.modify(fd, interest: .readable)
        }
        if closeAfterFlush || relay.shuttingDown {
            close()
        }
    }

    /// Closes after pending replies are written; used at shutdown.
    func finish() {
        closeAfterFlush = true
        if output.isEmpty { close() }
    }

    func timerFired() {
        close()
    }

    func close() {
        guard !closed else { return }
        closed = true
        relay.loop.timers.cancel(self)
        relay.loop.epoll.remove(fd)
        Glibc.close(fd)
        input = nil
        output = []
        relay.ingestConnectionClosed(self)
    }
}
