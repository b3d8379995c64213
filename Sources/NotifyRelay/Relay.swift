// The relay: owns the event loop, the hub and every connection, and wires
// listeners, ingest and HTTP together.
//
// Shutdown (SIGTERM, SIGINT or SIGHUP): listeners close and the ingest socket
// file is removed, waiting long-polls are answered 204 with their cursor so
// clients reconnect elsewhere at once, idle connections close, responses and
// ingest replies in flight are finished, and the loop ends when nothing is
// left or after `shutdownGraceMilliseconds`, whichever comes first.

import Glibc
import NotifyCore

/// Millisecond values derived from the configuration.
struct RelaySettings {
    var headerTimeoutMilliseconds: Int64
    var idleTimeoutMilliseconds: Int64
    var writeTimeoutMilliseconds: Int64
    var maxConnections: Int
    var streamPingMilliseconds: Int64
    var streamMaxAgeMilliseconds: Int64
    var streamMaxBufferBytes: Int
}

public final class Relay {
    let loop: EventLoop
    let hub: Hub
    let logger: Logger
    let settings: RelaySettings
    let routerSettings: RouterSettings
    let policy: InboxPolicy
    let cors: CORSPolicy
    private let config: RelayConfig
    private var listeners: [Listener] = []
    private var signals: SignalSource? = nil
    private var socketPath: String? = nil
    private var httpConnections: [Int: HTTPConnection] = [:]
    private var ingestConnections: [Int: IngestConnection] = [:]
    private var nextConnectionID = 1
    private(set) var shuttingDown = false
    private var housekeeping: Housekeeping? = nil
    private var responseCache: ResponseCacheEntry? = nil

    /// Counters reported in the shutdown log line.
    private(set) var eventsPublished = 0
    private(set) var ingestErrors = 0
    private(set) var badRequests = 0
    private(set) var responsesSent = 0

    /// Time allowed for in-flight responses after a shutdown signal.
    static let shutdownGraceMilliseconds: Int64 = 3000
    /// How often expired history is dropped.
    static let housekeepingIntervalMilliseconds: Int64 = 5000

    init(config: RelayConfig, logger: Logger) throws(SystemError) {
        self.config = config
        self.logger = logger
        loop = try EventLoop()
        hub = Hub(
            limits: HistoryLimits(
                perInbox: config.history, maxAgeMilliseconds: Int64(config.historyAge * 1000),
                maxTotal: config.historyMaxEvents))
        policy = InboxPolicy(domains: config.domains)
        routerSettings = RouterSettings(
            policy: policy, defaultPollTimeout: config.pollTimeout, maxPollTimeout: config.maxPollTimeout,
            maxInboxesPerRequest: config.maxInboxesPerRequest, demoEnabled: config.demoEnabled)
        cors = CORSPolicy(origins: config.corsOrigins)
        settings = RelaySettings(
            headerTimeoutMilliseconds: Int64(config.headerTimeout * 1000),
            idleTimeoutMilliseconds: Int64(config.idleTimeout * 1000),
            writeTimeoutMilliseconds: Int64(config.writeTimeout * 1000),
            maxConnections: config.maxConnections ?? Relay.defaultMaxConnections(),
            streamPingMilliseconds: Int64(config.ssePing * 1000),
            streamMaxAgeMilliseconds: Int64(config.sseMaxAge * 1000),
            streamMaxBufferBytes: config.sseMaxBuffer)
    }

    /// The open-file limit minus a reserve for listeners, ingest clients and the process itself.
    static func defaultMaxConnections() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1000 }
        let soft = limit.rlim_cur == rlim_t.max ? 1_048_576 : Int(clamping: limit.rlim_cur)
        return max(16, soft - RelayConfig.descriptorReserve)
    }

    // MARK: Start-up

    /// Opens every listener; throws a message for the operator on failure.
    func open(socketPath: String) throws(ListenError) {
        do {
            let source = try SignalSource(relay: self)
            try loop.epoll.add(source.fd, interest: .readable, handler: source)
            signals = source
        } catch {
            throw ListenError(description: "cannot set up signal handling: \(error)")
        }
        for address in config.listen {
            try addListener(try listenTCP(address), kind: .http, name: "http \(address)")
        }
        let ingestFD = try listenUnix(path: socketPath, mode: config.socketMode, group: config.socketGroup)
        self.socketPath = socketPath
        try addListener(ingestFD, kind: .ingest, name: "ingest \(socketPath)")
        if let address = config.ingestTCP {
            try addListener(try listenTCP(address), kind: .ingest, name: "ingest tcp \(address)")
            if !address.isLoopback {
                logger.warning(
                    "TCP ingest listens on a non-loopback address: anyone who can reach it can publish notifications",
                    [("address", address.description)])
            }
        }
        let timer = Housekeeping(relay: self)
        housekeeping = timer
        loop.timers.schedule(timer, at: EventLoop.now() + Relay.housekeepingIntervalMilliseconds)
    }

    private func addListener(_ fd: Int32, kind: Listener.Kind, name: String) throws(ListenError) {
        let listener = Listener(fd: fd, kind: kind, name: name, relay: self)
        do {
            try loop.epoll.add(fd, interest: .readable, handler: listener)
        } catch {
            throw ListenError(description: "cannot watch \(name): \(error)")
        }
        listeners.append(listener)
    }

    /// Ports actually bound by the HTTP listeners, in option order.
    var httpPorts: [UInt16] { listeners.filter { $0.kind == .http }.map { boundPort($0.fd) } }

    /// Port bound by the TCP ingest listener, if one is open.
    var ingestTCPPort: UInt16? {
        listeners.first { $0.kind == .ingest && $0.name.hasPrefix("ingest tcp") }.map { boundPort($0.fd) }
    }

    /// Runs the event loop until shutdown completes.
    func run() throws(SystemError) {
        try loop.run()
    }

    // MARK: Connections

    func accepted(_ fd: Int32, from listener: Listener) {
        let id = nextConnectionID
        nextConnectionID += 1
        switch listener.kind {
        case .http:
            guard httpConnections.count < settings.maxConnections else {
                rejectOverLimit(fd)
                return
            }
            // Responses and stream events are written whole, so Nagle's algorithm
            // would only delay them behind the client's delayed ACK (about 40 ms).
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            let connection = HTTPConnection(fd: fd, id: id, relay: self)
            guard register(fd, connection) else { return }
            httpConnections[id] = connection
            connection.start()
        case .ingest:
            let connection = IngestConnection(fd: fd, id: id, peer: listener.name, relay: self)
            guard register(fd, connection) else { return }
            ingestConnections[id] = connection
            connection.start()
        }
    }

    private func register(_ fd: Int32, _ handler: EventHandler) -> Bool {
        do {
            try loop.epoll.add(fd, interest: .readable, handler: handler)
            return true
        } catch {
            logger.error("cannot watch a new connection", [("error", error.description)])
            close(fd)
            return false
        }
    }

    /// Answers 503 at once and closes, without keeping any state for the client.
    private func rejectOverLimit(_ fd: Int32) {
        // No request was read, so the Origin is unknown: only a `*` policy can be applied.
        let corsFields = cors.origins.contains("*") ? cors.fields(origin: nil) : []
        let response = HTTPResponse.text(
            .serviceUnavailable, "too many connections: try again later", fields: [("Retry-After", "5")] + corsFields)
        _ = try? writeNonBlocking(fd, response.serialized(keepAlive: false), from: 0)
        countResponse(.serviceUnavailable)
        close(fd)
    }

    func httpConnectionClosed(_ connection: HTTPConnection) {
        httpConnections[connection.subscriberID] = nil
        stopIfDrained()
    }

    func ingestConnectionClosed(_ connection: IngestConnection) {
        ingestConnections[connection.id] = nil
        stopIfDrained()
    }

    // MARK: Ingest

    /// Publishes one ingest line; returns the cursor or the reason for ERR.
    func ingest(_ line: [UInt8], peer: String) -> Result<String, IngestError> {
        let record: MailRecord
        do {
            record = try IngestProtocol.parseLine(line)
        } catch {
            countIngestError()
            logger.warning("ingest record rejected", [("peer", peer), ("error", error.reason)])
            return .failure(error)
        }
        var inboxes: [Inbox] = []
        var firstError: InboxNameError? = nil
        for recipient in record.recipients {
            do {
                inboxes.append(try policy.normalize(recipient))
            } catch {
                firstError = firstError ?? error
                logger.warning("recipient rejected", [("peer", peer), ("error", error.description)])
            }
        }
        guard !inboxes.isEmpty else {
            countIngestError()
            return .failure(IngestError(firstError?.description ?? "no valid recipient"))
        }
        let waiting = inboxes.reduce(0) { $0 + (hub.inboxes[$1.key]?.subscribers.count ?? 0) }
        let cursor = hub.publish(record, to: inboxes, now: EventLoop.now(), wallClock: time(nil))
        eventsPublished += inboxes.count
        logger.info(
            "mail notified",
            [
                ("inboxes", inboxes.map(\.key).joined(separator: ",")), ("cursor", cursor),
                ("queue_id", record.queueId ?? "-"), ("subscribers", String(waiting)),
            ])
        return .success(cursor)
    }

    /// The serialized long-poll answer for new events, built once per fan-out
    /// and shared by every waiter on the same inboxes with the same format,
    /// connection handling and CORS fields.
    func cachedEventsBytes(
        _ target: SubscriptionTarget, _ events: [MailEvent], cursor: String, format: ResponseFormat, keepAlive: Bool,
        corsFields: [(String, String)]
    ) -> [UInt8] {
        let corsKey = corsFields.map { "\($0.0):\($0.1)" }.joined(separator: "\n")
        if let cached = responseCache, cached.primary == target.primary, cached.others == target.others, cached.cursor == cursor, cached.format == format,
            cached.keepAlive == keepAlive, cached.corsKey == corsKey
        {
            return cached.bytes
        }
        var response = eventsResponse(target, events, gap: false, cursor: cursor, format: format)
        response.fields += corsFields
        let bytes = response.serialized(keepAlive: keepAlive)
        responseCache = ResponseCacheEntry(
            primary: target.primary, others: target.others, cursor: cursor, format: format, keepAlive: keepAlive,
            corsKey: corsKey, bytes: bytes)
        return bytes
    }

    /// Time between two lines of the same rate-limited warning.
    static let warningIntervalMilliseconds: Int64 = 10_000
    private var lastWarningAt: [String: Int64] = [:]
    private var suppressedWarnings: [String: Int] = [:]

    /// Logs `message` at most once per `warningIntervalMilliseconds`, with the
    /// number of repeats suppressed since the last line.
    func warnRateLimited(_ message: String, _ fields: [(String, String)]) {
        let now = EventLoop.now()
        if let last = lastWarningAt[message], now - last < Relay.warningIntervalMilliseconds {
            suppressedWarnings[message, default: 0] += 1
            return
        }
        lastWarningAt[message] = now
        let suppressed = suppressedWarnings.removeValue(forKey: message) ?? 0
        logger.warning(message, fields + [("suppressed", String(suppressed))])
    }

    func countIngestError() { ingestErrors += 1 }
    func countBadRequest() { badRequests += 1 }
    func countResponse(_ status: HTTPStatus) { responsesSent += 1 }

    // MARK: Shutdown

    func beginShutdown(signal: Int32) {
        guard !shuttingDown else { return }
        shuttingDown = true
        logger.info(
            "shutting down", [("signal", String(signal)), ("connections", String(httpConnections.count)),
                               ("subscribers", String(hub.subscriberCount))])
        for listener in listeners {
            listener.close()
        }
        listeners = []
        if let socketPath { unlink(socketPath) }

        for connection in Array(httpConnections.values) {
            connection.shutDown()
        }
        for connection in Array(ingestConnections.values) {
            connection.finish()
        }
        loop.timers.schedule(ShutdownDeadline(relay: self), at: EventLoop.now() + Relay.shutdownGraceMilliseconds)
        stopIfDrained()
    }

    private func stopIfDrained() {
        guard shuttingDown, httpConnections.isEmpty, ingestConnections.isEmpty else { return }
        finishShutdown()
    }

    fileprivate func finishShutdown() {
        guard loop.running else { return }
        for connection in Array(httpConnections.values) { connection.close() }
        for connection in Array(ingestConnections.values) { connection.close() }
        logger.info(
            "stopped", [("events", String(eventsPublished)), ("ingest_errors", String(ingestErrors)),
                         ("responses", String(responsesSent))])
        loop.stop()
    }

    fileprivate func housekeep() {
        hub.expire(now: EventLoop.now())
    }
}

/// Drops expired history at a fixed interval, even when no event arrives.
private final class Housekeeping: TimerTarget {
    unowned let relay: Relay
    var timerIndex = -1
    var timerDeadline: Int64 = 0

    init(relay: Relay) { self.relay = relay }

    func timerFired() {
        relay.housekeep()
        relay.loop.timers.schedule(self, at: EventLoop.now() + Relay.housekeepingIntervalMilliseconds)
    }
}

/// Ends the loop when the shutdown grace period runs out.
private final class ShutdownDeadline: TimerTarget {
    unowned let relay: Relay
    var timerIndex = -1
    var timerDeadline: Int64 = 0

    init(relay: Relay) { self.relay = relay }

    func timerFired() {
        relay.logger.warning("shutdown grace period ended with connections still open")
        relay.finishShutdown()
    }
}

/// The last serialized fan-out answer and what it was built for.
private struct ResponseCacheEntry {
    var primary: String
    var others: [String]
    var cursor: String
    var format: ResponseFormat
    var keepAlive: Bool
    var corsKey: String
    var bytes: [UInt8]
}
