// A level-triggered epoll(7) instance and the table of registered descriptors.
//
// Each registration gets a generation number that travels in the event's data
// word next to the descriptor. When a descriptor is closed and the kernel hands
// the same number to a new socket within one batch of events, the stale event
// still carries the old generation and is dropped instead of reaching the new
// owner.

import CNotifyShim
import Glibc

/// An object that owns a registered descriptor and reacts to its readiness.
protocol EventHandler: AnyObject {
    /// Called with the epoll event mask (EPOLLIN, EPOLLOUT, EPOLLERR, ...).
    func handleEvents(_ events: UInt32)
}

/// Readiness a handler asks to be told about.
struct Interest: OptionSet {
    let rawValue: UInt32
    static let readable = Interest(rawValue: notify_EPOLLIN | notify_EPOLLRDHUP)
    static let writable = Interest(rawValue: notify_EPOLLOUT)
}

/// The epoll descriptor plus the handler table indexed by file descriptor.
final class Epoll {
    private let fd: Int32
    private var handlers: [Registration?] = []
    private var nextGeneration: UInt32 = 1
    private var events = [notify_epoll_event](repeating: notify_epoll_event(), count: 256)

    private struct Registration {
        var generation: UInt32
        var handler: EventHandler
    }

    init() throws(SystemError) {
        fd = notify_epoll_create()
        guard fd >= 0 else { throw SystemError(call: "epoll_create1") }
    }

    deinit { close(fd) }

    /// Registers `descriptor` for `interest` on behalf of `handler`.
    func add(_ descriptor: Int32, interest: Interest, handler: EventHandler) throws(SystemError) {
        let index = Int(descriptor)
        if index >= handlers.count {
            handlers.append(contentsOf: repeatElement(nil, count: max(index + 1 - handlers.count, handlers.count)))
        }
        let generation = nextGeneration
        nextGeneration = nextGeneration == UInt32.max ? 1 : nextGeneration + 1
        guard notify_epoll_ctl(fd, 0, descriptor, interest.rawValue, Self.tag(descriptor, generation)) == 0 else {
            throw SystemError(call: "epoll_ctl(ADD)")
        }
        handlers[index] = Registration(generation: generation, handler: handler)
    }

    /// Changes the readiness `descriptor` is watched for.
    func modify(_ descriptor: Int32, interest: Interest) {
        guard let registration = handlers[Int(descriptor)] else { return }
        let tag = Self.tag(descriptor, registration.generation)
        // A failure here means the descriptor is not registered: a bug, not a client's doing.
        precondition(notify_epoll_ctl(fd, 1, descriptor, interest.rawValue, tag) == 0, "epoll_ctl(MOD) failed: \(errno)")
    }

    /// Unregisters `descriptor`; call before closing it.
    func remove(_ descriptor: Int32) {
        guard Int(descriptor) < handlers.count, handlers[Int(descriptor)] != nil else { return }
        handlers[Int(descriptor)] = nil
        _ = notify_epoll_ctl(fd, 2, descriptor, 0, 0)
    }

    /// Waits up to `timeoutMilliseconds` (-1 for ever) and dispatches each ready event.
    /// Returns the number of events received.
    @discardableResult
    func poll(timeoutMilliseconds: Int32) throws(SystemError) -> Int {
        let count = events.withUnsafeMutableBufferPointer {
            notify_epoll_wait(fd, $0.baseAddress, Int32($0.count), timeoutMilliseconds)
        }
        if count < 0 {
            if errno == EINTR { return 0 }
            throw SystemError(call: "epoll_wait")
        }
        for i in 0..<Int(count) {
            let event = events[i]
            let descriptor = Int(event.data & 0xFFFF_FFFF)
            let generation = UInt32(event.data >> 32)
            guard descriptor < handlers.count, let registration = handlers[descriptor],
                registration.generation == generation
            else { continue }
            registration.handler.handleEvents(event.events)
        }
        return Int(count)
    }

    private static func tag(_ descriptor: Int32, _ generation: UInt32) -> UInt64 {
        UInt64(UInt32(bitPattern: descriptor)) | UInt64(generation) << 32
    }
}

/// A failed system call with its errno.
struct SystemError: Error, CustomStringConvertible {
    var call: String
    var code: Int32

    init(call: String, code: Int32 = errno) {
        self.call = call
        self.code = code
    }

    var description: String { "\(call) failed: \(String(cString: strerror(code)))" }
}
