// One HTTP client connection: reads request heads, waits on an inbox for a
// long-poll, writes responses, and keeps the connection alive between requests.
//
// States: reading a head (idle or partial), waiting on an inbox, writing.
// Between requests the connection holds no buffer: bytes are read into the
// loop's shared buffer and copied out only while a head is incomplete or a
// client pipelines a request behind one that is still being answered.
// While waiting, the socket stays registered for reading, so a client that
// disconnects is noticed at once and its subscription freed.

import CNotifyShim
import Glibc
import NotifyCore

final class HTTPConnection: EventHandler, TimerTarget, Subscriber {
    private enum State {
        case readingHead
        case waiting(inboxKey: String, format: ResponseFormat)
        case writing
        case closed
    }

    private enum TimerPurpose {
        case headRead, keepAliveIdle, longPoll, writeStall
    }

    let fd: Int32
    let subscriberID: Int
    private unowned let relay: Relay
    private var state = State.readingHead
    private var input: [UInt8]? = nil
    private var output: [UInt8]? = nil
    private var outputOffset = 0
    private var keepAlive = true
    private var timerPurpose = TimerPurpose.headRead
    var timerIndex = -1
    var timerDeadline: Int64 = 0

    init(fd: Int32, id: Int, relay: Relay) {
        self.fd = fd
        self.subscriberID = id
        self.relay = relay
    }

    /// Starts serving: the client must send its first head within the head timeout.
    func start() {
        setTimer(.headRead, after: relay.settings.headerTimeoutMilliseconds)
    }

    // MARK: Events

    func handleEvents(_ events: UInt32) {
        if events & Interest.writable.rawValue != 0 {
            flush()
        }
        if case .closed = state { return }
        if events & (Interest.readable.rawValue | notify_EPOLLERR | notify_EPOLLHUP) != 0 {
            readAvailable()
        }
    }

    private func readAvailable() {
        while true {
            let count: Int?
            do {
                count = try relay.loop.readIntoSharedBuffer(fd)
            } catch {
                relay.logger.debug("http read failed", [("conn", String(subscriberID)), ("error", error.description)])
                close()
                return
            }
            guard let count else { break }
            if count == 0 {
                close()
                return
            }
            appendInput(count)
            // A client may queue at most one head's worth of bytes behind a request in progress.
            if let input, input.count > HTTPRequestParser.maxHeadBytes * 2 {
                if case .readingHead = state { break }
                close()
                return
            }
            if count < relay.loop.readBuffer.count { break }
        }
        processInput()
    }

    private func appendInput(_ count: Int) {
        if input == nil {
            input = Array(relay.loop.readBuffer[0..<count])
        } else {
            input!.append(contentsOf: relay.loop.readBuffer[0..<count])
        }
    }

    // MARK: Requests

    private func processInput() {
        guard case .readingHead = state, let buffer = input, !buffer.isEmpty else { return }
        switch HTTPRequestParser.parse(buffer) {
        case .incomplete:
            if timerPurpose == .keepAliveIdle {
                setTimer(.headRead, after: relay.settings.headerTimeoutMilliseconds)
            }
        case .failure(let error):
            input = nil
            relay.countBadRequest()
            send(.text(error.status, error.reason), keepAlive: false, isHead: false)
        case .complete(let head, let consumed):
            input = consumed == buffer.count ? nil : Array(buffer[consumed...])
            handle(head)
        }
    }

    private func handle(_ head: HTTPRequestHead) {
        let isHead = head.method == "HEAD"
        var keepAlive = head.keepAlive && !relay.shuttingDown
        if head.field("transfer-encoding") != nil || (head.field("content-length").map { Int($0) != 0 } ?? false) {
            // Bodies are never read, so the framing of what follows is unknown: answer and close.
            keepAlive = false
            let status: HTTPStatus = ["GET", "HEAD", "OPTIONS"].contains(head.method) ? .payloadTooLarge : .methodNotAllowed
            send(.text(status, "request bodies are not accepted"), keepAlive: false, isHead: isHead)
            return
        }
        if relay.shuttingDown {
            send(.text(.serviceUnavailable, "the relay is shutting down", fields: [("Retry-After", "1")]), keepAlive: false, isHead: isHead)
            return
        }
        switch route(head, hub: relay.hub, settings: relay.routerSettings) {
        case .respond(let response):
            send(response, keepAlive: keepAlive, isHead: isHead)
        case .wait(let inboxKey, let format, let timeout):
            self.keepAlive = keepAlive
            state = .waiting(inboxKey: inboxKey, format: format)
            relay.hub.subscribe(inboxKey, self)
            setTimer(.longPoll, after: timeout)
        }
    }

    /// Called by the hub with the inbox's new events; the hub has already removed this subscriber.
    func deliver(_ events: [MailEvent], cursor: String) {
        guard case .waiting(let inboxKey, let format) = state else { return }
        let response = relay.cachedEventsResponse(inboxKey, events, cursor: cursor, format: format)
        send(response, keepAlive: keepAlive, isHead: false)
    }

    /// Answers a waiting long-poll with 204 now, as on timeout; used at shutdown too.
    func endWait() {
        guard case .waiting(let inboxKey, _) = state else { return }
        relay.hub.unsubscribe(inboxKey, self)
        send(timeoutResponse(cursor: relay.hub.currentCursor), keepAlive: keepAlive && !relay.shuttingDown, isHead: false)
    }

    /// Ends the connection for a relay shutdown: a waiting long-poll gets its
    /// 204 with the cursor, a response in flight is finished, anything else closes.
    func shutDown() {
        switch state {
        case .waiting: endWait()
        case .writing: keepAlive = false
        case .readingHead: close()
        case .closed: break
        }
    }

    // MARK: Output

    private func send(_ response: HTTPResponse, keepAlive: Bool, isHead: Bool) {
        relay.countResponse(response.status)
        self.keepAlive = keepAlive
        output = response.serialized(keepAlive: keepAlive, includeBody: !isHead)
        outputOffset = 0
        state = .writing
        flush()
    }

    private func flush() {
        guard let bytes = output else { return }
        do {
            outputOffset = try writeNonBlocking(fd, bytes, from: outputOffset)
        } catch {
            relay.logger.debug("http write failed", [("conn", String(subscriberID)), ("error", error.description)])
            close()
            return
        }
        if outputOffset < bytes.count {
            if timerPurpose != .writeStall || timerIndex < 0 {
                relay.loop.epoll.modify(fd, interest: .writable)
                setTimer(.writeStall, after: relay.settings.writeTimeoutMilliseconds)
            }
            return
        }
        output = nil
        finishResponse()
    }

    private func finishResponse() {
        guard keepAlive else {
            close()
            return
        }
        state = .readingHead
        relay.loop.epoll.modify(fd, interest: .readable)
        if input != nil {
            setTimer(.headRead, after: relay.settings.headerTimeoutMilliseconds)
            processInput()
        } else {
            setTimer(.keepAliveIdle, after: relay.settings.idleTimeoutMilliseconds)
        }
    }

    // MARK: Timers

    private func setTimer(_ purpose: TimerPurpose, after milliseconds: Int64) {
        timerPurpose = purpose
        relay.loop.timers.schedule(self, at: EventLoop.now() + milliseconds)
    }

    func timerFired() {
        switch timerPurpose {
        case .longPoll:
            endWait()
        case .headRead:
            if input != nil {
                input = nil
                send(.text(.requestTimeout, "the request head was not received in time"), keepAlive: false, isHead: false)
            } else {
                close()
            }
        case .keepAliveIdle, .writeStall:
            close()
        }
    }

    /// Closes the socket and frees everything the connection held.
    func close() {
        if case .closed = state { return }
        if case .waiting(let inboxKey, _) = state {
            relay.hub.unsubscribe(inboxKey, self)
        }
        state = .closed
        relay.loop.timers.cancel(self)
        relay.loop.epoll.remove(fd)
        Glibc.close(fd)
        input = nil
        output = nil
        relay.httpConnectionClosed(self)
    }
}
