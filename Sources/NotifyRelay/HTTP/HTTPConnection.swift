// One HTTP client connection: reads request heads, waits on inboxes for a
// long-poll or streams their events, writes responses, and keeps the
// connection alive between requests.
//
// States: reading a head (idle or partial), waiting on inboxes, streaming
// events, writing a response. Between requests the connection keeps no
// buffer: bytes are read into the loop's shared buffer and copied out only
// while a head is incomplete or a client pipelines a request behind one that
// is still being answered. While waiting or streaming, the socket stays
// registered for reading, so a client that disconnects is noticed at once and
// its subscriptions freed.
//
// Back-pressure: an event stream whose client stops reading accumulates
// output; past `--sse-max-buffer` bytes the client is disconnected, so it
// never delays other clients or grows the relay's memory without bound.
// NOTE: the cap counts bytes the kernel did not take. The socket send buffer
// comes first and Linux autotunes it (up to net.ipv4.tcp_wmem's maximum,
// megabytes on loopback), so a stalled client is cut off only after that.

import CNotifyShim
import Glibc
import NotifyCore

final class HTTPConnection: EventHandler, TimerTarget, Subscriber {
    private enum State {
        case readingHead
        case waiting(SubscriptionTarget, ResponseFormat)
        case streaming(StreamState)
        case writing
        case closed
    }

    private enum TimerPurpose {
        case headRead, keepAliveIdle, longPoll, writeStall, streamPing
    }

    let fd: Int32
    let subscriberID: Int
    private unowned let relay: Relay
    private var state = State.readingHead
    private var input: [UInt8]? = nil
    private var output: [UInt8]? = nil
    private var outputOffset = 0
    private var keepAlive = true
    /// The request's Origin header while CORS is on; nil otherwise.
    private var origin: String? = nil
    private var timerPurpose = TimerPurpose.headRead
    /// Readiness currently registered with epoll, to skip redundant epoll_ctl calls.
    private var interest = Interest.readable
    var timerIndex = -1
    var timerDeadline: Int64 = 0

    /// True on the admin listener, which serves /metrics, /healthz and /publish.
    let isAdmin: Bool

    init(fd: Int32, id: Int, relay: Relay, isAdmin: Bool = false) {
        self.fd = fd
        self.subscriberID = id
        self.relay = relay
        self.isAdmin = isAdmin
    }

    /// Starts serving: the client must send its first head within the head timeout.
    func start() {
        setTimer(.headRead, after: relay.settings.headerTimeoutMilliseconds)
    }

    var subscription: SubscriptionTarget? {
        switch state {
        case .waiting(let target, _): return target
        case .streaming(let stream): return stream.target
        default: return nil
        }
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
            if isAdmin {
                handleAdmin(head, buffer: buffer, headBytes: consumed)
                return
            }
            input = consumed == buffer.count ? nil : Array(buffer[consumed...])
            handle(head)
        }
    }

    /// Serves an admin request once its body, if any, is fully buffered. The
    /// head stays in `input` until then, and is parsed again on the next read.
    private func handleAdmin(_ head: HTTPRequestHead, buffer: [UInt8], headBytes: Int) {
        var bodyLength = 0
        if head.field("transfer-encoding") != nil {
            input = nil
            send(.text(.badRequest, "chunked bodies are not accepted: send Content-Length"), keepAlive: false, isHead: false)
            return
        }
        if let text = head.field("content-length") {
            guard let length = Int(text), length >= 0 else {
                input = nil
                send(.text(.badRequest, "invalid Content-Length \(quotedForMessage(text))"), keepAlive: false, isHead: false)
                return
            }
            guard length <= maxPublishBodyBytes else {
                input = nil
                send(.text(.payloadTooLarge, "body larger than \(maxPublishBodyBytes) bytes"), keepAlive: false, isHead: false)
                return
            }
            bodyLength = length
        }
        guard buffer.count >= headBytes + bodyLength else { return }
        let body = Array(buffer[headBytes..<(headBytes + bodyLength)])
        input = buffer.count == headBytes + bodyLength ? nil : Array(buffer[(headBytes + bodyLength)...])
        let response = routeAdmin(head, body: body, relay: relay)
        send(response, keepAlive: head.keepAlive && !relay.shuttingDown, isHead: head.method == "HEAD")
    }

    private func handle(_ head: HTTPRequestHead) {
        let isHead = head.method == "HEAD"
        let keepAlive = head.keepAlive && !relay.shuttingDown
        origin = relay.cors.isEnabled ? head.field("origin") : nil
        if head.field("transfer-encoding") != nil || (head.field("content-length").map { Int($0) != 0 } ?? false) {
            // Bodies are never read, so the framing of what follows is unknown. Respond, then close.
            let status: HTTPStatus = ["GET", "HEAD", "OPTIONS"].contains(head.method) ? .payloadTooLarge : .methodNotAllowed
            send(.text(status, "request bodies are not accepted"), keepAlive: false, isHead: isHead)
            return
        }
        if relay.shuttingDown {
            send(.text(.serviceUnavailable, "the relay is shutting down", fields: [("Retry-After", "1")]), keepAlive: false, isHead: isHead)
            return
        }
        if head.method == "OPTIONS", relay.cors.isEnabled {
            var response = HTTPResponse(status: .noContent, fields: [("Allow", "GET, HEAD, OPTIONS")] + commonResponseFields)
            response.fields += relay.cors.preflightFields(origin: origin)
            send(response, keepAlive: keepAlive, isHead: false)
            return
        }
        let action = route(head, hub: relay.hub, settings: relay.routerSettings)
        if let full = relay.fullInbox(for: action) {
            let message = "too many clients are waiting on \(full): try again later"
            send(.text(.serviceUnavailable, message, fields: [("Retry-After", "5")]), keepAlive: keepAlive, isHead: isHead)
            return
        }
        switch action {
        case .respond(let response):
            send(response, keepAlive: keepAlive, isHead: isHead)
        case .wait(let target, let format, let timeout):
            self.keepAlive = keepAlive
            state = .waiting(target, format)
            target.forEachKey { relay.hub.subscribe($0, self) }
            setTimer(.longPoll, after: timeout)
        case .stream(let target, let backlog):
            openStream(target, backlog: backlog)
        }
    }

    /// Called by the hub with the new events of this connection's inboxes.
    func deliver(_ events: [MailEvent], cursor: String) {
        switch state {
        case .waiting(let target, let format):
            unsubscribeAll(target)
            let corsFields = relay.cors.fields(origin: origin)
            relay.countResponse(.ok)
            relay.countEventsSent(events.count)
            output = relay.cachedEventsBytes(
                target, events, cursor: cursor, format: format, keepAlive: keepAlive, corsFields: corsFields)
            outputOffset = 0
            state = .writing
            flush()
        case .streaming:
            var text = ""
            for event in events { text += EventStream.mail(event) }
            relay.countEventsSent(events.count)
            appendStreamOutput(text)
        default:
            break
        }
    }

    /// Ends a waiting long-poll with 204 now, as on timeout. Shutdown uses it too.
    func endWait() {
        guard case .waiting(let target, _) = state else { return }
        unsubscribeAll(target)
        send(timeoutResponse(cursor: relay.hub.currentCursor), keepAlive: keepAlive && !relay.shuttingDown, isHead: false)
    }

    private func unsubscribeAll(_ target: SubscriptionTarget) {
        target.forEachKey { relay.hub.unsubscribe($0, self) }
    }

    /// Ends the connection for a relay shutdown: a waiting long-poll gets its
    /// 204 with the cursor, a response in flight is finished, streams end, and
    /// anything else closes.
    func shutDown() {
        switch state {
        case .waiting: endWait()
        case .writing: keepAlive = false
        case .streaming(let stream): endStream(stream.target)
        case .readingHead: close()
        case .closed: break
        }
    }

    // MARK: Event streams

    private func openStream(_ target: SubscriptionTarget, backlog: HistoryLookup) {
        relay.countResponse(.ok)
        keepAlive = false
        let stream = StreamState(target: target, endsAt: EventLoop.now() + relay.settings.streamMaxAgeMilliseconds)
        state = .streaming(stream)
        target.forEachKey { relay.hub.subscribe($0, self) }
        let cursor = relay.hub.currentCursor
        output = EventStream.head(cursor: cursor, extraFields: relay.cors.fields(origin: origin))
        outputOffset = 0
        var text = EventStream.preamble(
            cursor: cursor, gap: backlog.gap, keys: target.keys, backlogIsEmpty: backlog.events.isEmpty)
        for event in backlog.events { text += EventStream.mail(event) }
        relay.countEventsSent(backlog.events.count)
        if backlog.events.isEmpty && !backlog.gap { text += EventStream.cursorOnly(cursor) }
        setTimer(.streamPing, after: nextStreamTimer(stream))
        // The backlog a resuming client asked for does not count against the cap.
        appendStreamOutput(text, allowance: text.utf8.count)
    }

    private func appendStreamOutput(_ text: String, allowance: Int = 0) {
        if output == nil {
            output = Array(text.utf8)
            outputOffset = 0
        } else {
            output!.append(contentsOf: text.utf8)
        }
        flush()
        guard case .streaming = state, let pending = output else { return }
        if pending.count - outputOffset > relay.settings.streamMaxBufferBytes + allowance {
            relay.logger.info(
                "event stream client disconnected: it stopped reading",
                [("conn", String(subscriberID)), ("pending_bytes", String(pending.count - outputOffset))])
            close()
        }
    }

    private func nextStreamTimer(_ stream: StreamState) -> Int64 {
        min(relay.settings.streamPingMilliseconds, max(0, stream.endsAt - EventLoop.now()))
    }

    private func streamTimerFired(_ stream: StreamState) {
        let now = EventLoop.now()
        if stream.stalledSince > 0, now - stream.stalledSince > relay.settings.writeTimeoutMilliseconds {
            close()
            return
        }
        if now >= stream.endsAt {
            endStream(stream.target)
            return
        }
        setTimer(.streamPing, after: nextStreamTimer(stream))
        appendStreamOutput(EventStream.ping)
    }

    /// Stops streaming: unsubscribes, then closes once pending output is written.
    private func endStream(_ target: SubscriptionTarget) {
        unsubscribeAll(target)
        state = .writing
        keepAlive = false
        if output == nil {
            close()
        } else {
            setTimer(.writeStall, after: relay.settings.writeTimeoutMilliseconds)
        }
    }

    // MARK: Output

    private func send(_ response: HTTPResponse, keepAlive: Bool, isHead: Bool) {
        relay.countResponse(response.status)
        relay.countEventsSent(response.eventCount)
        var response = response
        response.fields += relay.cors.fields(origin: origin)
        self.keepAlive = keepAlive
        output = response.serialized(keepAlive: keepAlive, includeBody: !isHead)
        outputOffset = 0
        state = .writing
        flush()
    }

    private func flush() {
        guard let bytes = output else { return }
        let startOffset = outputOffset
        do {
            outputOffset = try writeNonBlocking(fd, bytes, from: outputOffset)
        } catch {
            relay.logger.debug("http write failed", [("conn", String(subscriberID)), ("error", error.description)])
            close()
            return
        }
        if outputOffset < bytes.count {
            waitForWritable(progressed: outputOffset > startOffset)
            return
        }
        output = nil
        outputOffset = 0
        if case .streaming(let stream) = state {
            stream.stalledSince = 0
            watch(.readable)
            return
        }
        finishResponse()
    }

    /// Waits for the socket to drain. The write timeout counts from the last
    /// progress, so a slow but moving client is not cut off.
    private func waitForWritable(progressed: Bool) {
        if case .streaming(let stream) = state {
            // The ping timer checks the stall; the stream keeps its own deadline.
            if stream.stalledSince == 0 || progressed {
                if stream.stalledSince == 0 { watch([.writable, .readable]) }
                stream.stalledSince = EventLoop.now()
            }
            return
        }
        if timerPurpose != .writeStall || timerIndex < 0 {
            watch(.writable)
            setTimer(.writeStall, after: relay.settings.writeTimeoutMilliseconds)
        } else if progressed {
            setTimer(.writeStall, after: relay.settings.writeTimeoutMilliseconds)
        }
    }

    private func watch(_ wanted: Interest) {
        guard wanted != interest else { return }
        interest = wanted
        relay.loop.epoll.modify(fd, interest: wanted)
    }

    private func finishResponse() {
        guard keepAlive else {
            close()
            return
        }
        state = .readingHead
        origin = nil
        watch(.readable)
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
        case .streamPing:
            if case .streaming(let stream) = state { streamTimerFired(stream) }
        case .keepAliveIdle, .writeStall:
            close()
        }
    }

    /// Closes the socket and frees everything the connection held.
    func close() {
        switch state {
        case .closed: return
        case .waiting(let target, _): unsubscribeAll(target)
        case .streaming(let stream): unsubscribeAll(stream.target)
        default: break
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

/// State of an open event stream beyond a plain connection. Only streams
/// allocate it, so idle long-poll connections stay small.
private final class StreamState {
    let target: SubscriptionTarget
    /// Monotonic time when the stream ends, so the client reconnects.
    let endsAt: Int64
    /// Monotonic time since pending output has made no progress, or 0.
    var stalledSince: Int64 = 0

    init(target: SubscriptionTarget, endsAt: Int64) {
        self.target = target
        self.endsAt = endsAt
    }
}
