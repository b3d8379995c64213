// Accepting sockets: HTTP listeners and ingest listeners (Unix and TCP).
//
// Accepting is bounded per wake-up so one busy listener cannot starve the
// other descriptors. When the process runs out of descriptors (EMFILE,
// ENFILE), the listener stops watching for a short pause instead of spinning
// on a connection it cannot accept; the kernel keeps it in the backlog.

import CNotifyShim
import Glibc

final class Listener: EventHandler, TimerTarget {
    enum Kind {
        case http
        case ingest
        case admin
    }

    let fd: Int32
    let kind: Kind
    let name: String
    private unowned let relay: Relay
    var timerIndex = -1
    var timerDeadline: Int64 = 0

    /// Connections accepted per readiness event before yielding to the loop.
    static let acceptBatch = 64
    /// Pause after running out of descriptors, in milliseconds.
    static let descriptorPauseMilliseconds: Int64 = 100

    init(fd: Int32, kind: Kind, name: String, relay: Relay) {
        self.fd = fd
        self.kind = kind
        self.name = name
        self.relay = relay
    }

    func handleEvents(_ events: UInt32) {
        for _ in 0..<Self.acceptBatch {
            let client = notify_accept_nonblocking(fd)
            if client >= 0 {
                relay.accepted(client, from: self)
                continue
            }
            switch errno {
            case EAGAIN, EWOULDBLOCK:
                return
            case EINTR, ECONNABORTED, EPROTO:
                continue
            case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                let error = SystemError(call: "accept4")
                relay.warnRateLimited(
                    "accept paused: out of file descriptors or memory; raise the open-file limit or lower --max-connections",
                    [("listener", name), ("error", error.description)])
                relay.loop.epoll.modify(fd, interest: [])
                relay.loop.timers.schedule(self, at: EventLoop.now() + Self.descriptorPauseMilliseconds)
                return
            default:
                relay.logger.error("accept failed", [("listener", name), ("error", SystemError(call: "accept4").description)])
                return
            }
        }
    }

    func timerFired() {
        relay.loop.epoll.modify(fd, interest: .readable)
    }

    func close() {
        relay.loop.timers.cancel(self)
        relay.loop.epoll.remove(fd)
        Glibc.close(fd)
    }
}

/// Turns SIGTERM, SIGINT and SIGHUP from the signalfd into a graceful shutdown.
final class SignalSource: EventHandler {
    let fd: Int32
    private unowned let relay: Relay

    init(relay: Relay) throws(SystemError) {
        fd = notify_signalfd_for_shutdown()
        guard fd >= 0 else { throw SystemError(call: "signalfd") }
        self.relay = relay
    }

    func handleEvents(_ events: UInt32) {
        while true {
            let signal = notify_signalfd_read(fd)
            guard signal > 0 else { return }
            relay.beginShutdown(signal: signal)
        }
    }
}
