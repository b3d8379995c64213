// The relay: owns the event loop, the hub and every connection, and wires
// listeners, ingest and HTTP together.
//
// Shutdown (SIGTERM, SIGINT or SIGHUP): listeners close and the ingest socket
// file is removed, waiting long-polls are answered 204 with their cursor so
// clients reconnect elsewhere at once, idle connections close, responses and
// ingest replies in flight are finished, and the loop ends when nothing is
// left or after `shutdownGraceMilliseconds`, whichever comes first.

import CNotifyShim
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
    /// 0 means no limit.
    var maxConnectionsPerClient: Int
    /// 0 means no limit.
    var maxSubscribersPerInbox: Int
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
    /// HTTP connections on the admin listener, which --max-connections does not count.
    private var adminConnectionCount = 0
    private var ingestConnections: [Int: IngestConnection] = [:]
    /// Client address of each HTTP connection by descriptor, kept only while
    /// --max-connections-per-client is set, and the open count per address.
    private var clientOfDescriptor: [Int32: String] = [:]
    private var connectionsPerClient: [String: Int] = [:]
    private var nextConnectionID = 1
    private(set) var shuttingDown = false
    private var housekeeping: Housekeeping? = nil
    private var responseCache: ResponseCacheEntry? = nil

    /// Counters for the admin listener's /metrics and the shutdown log line.
    var statistics = RelayStatistics()
    private var notifier: ServiceNotifier? = nil

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
        policy = InboxPolicy(domains: config.domains, subaddressDelimiters: config.subaddressDelimiters)
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
            streamMaxBufferBytes: config.sseMaxBuffer,
            maxConnectionsPerClient: config.maxConnectionsPerClient,
            maxSubscribersPerInbox: config.maxSubscribersPerInbox)
    }

    /// Computes the open-file limit minus a reserve for listeners, ingest clients and the process itself.
    static func defaultMaxConnections() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1000 }
        let soft = limit.rlim_cur == rlim_t.max ? 1_048_576 : Int(clamping: limit.rlim_cur)
        return max(16, soft - RelayConfig.descriptorReserve)
    }

    // MARK: Start-up

    /// Opens every listener, taking those the service manager passed in
    /// (socket activation) before creating the rest; throws a message for
    /// the operator on failure.
    func open(environment: [String: String]) throws(ListenError) {
        do {
            let source = try SignalSource(relay: self)
            try loop.epoll.add(source.fd, interest: .readable, handler: source)
            signals = source
        } catch {
            throw ListenError(description: "cannot set up signal handling: \(error)")
        }
        notifier = ServiceNotifier(environment: environment)

        let activated = try takeActivatedSockets(environment: environment)
        for socket in activated {
            let kind: Listener.Kind
            switch socket.role {
            case .http: kind = .http
            case .ingest: kind = .ingest
            case .admin: kind = .admin
            }
            try addListener(socket.fd, kind: kind, name: socket.name)
        }
        if !activated.contains(where: { $0.role == .http }) {
            for address in config.listen {
                try addListener(try listenTCP(address), kind: .http, name: "http \(address)")
            }
        }
        if !activated.contains(where: { $0.role == .ingest }) {
            // A socket passed in by the service manager belongs to it: only one created here is removed at exit.
            // The default path is resolved only here, so an activated relay needs no HOME or XDG_RUNTIME_DIR.
            let socketPath: String
            if let path = config.socketPath {
                socketPath = path
            } else {
                switch IngestSocketPath.resolve(environment: environment) {
                case .success(let path): socketPath = path
                case .failure(let error): throw ListenError(description: error.description)
                }
            }
            let ingestFD = try listenUnix(path: socketPath, mode: config.socketMode, group: config.socketGroup)
            self.socketPath = socketPath
            try addListener(ingestFD, kind: .ingest, name: "ingest \(socketPath)")
        }
        if let address = config.adminListen, !activated.contains(where: { $0.role == .admin }) {
            try addListener(try listenTCP(address), kind: .admin, name: "admin \(address)")
            if !address.isLoopback {
                logger.warning(
                    "admin listener on a non-loopback address: anyone who can reach it can read metrics and publish",
                    [("address", address.description)])
            }
        }
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

    /// The ingest sockets for the start-up log line: paths, or activated descriptors.
    var ingestDescription: String {
        listeners.filter { $0.kind == .ingest && !$0.name.hasPrefix("ingest tcp") }
            .map { $0.name.hasPrefix("ingest ") ? String($0.name.dropFirst("ingest ".count)) : $0.name }
            .joined(separator: ",")
    }

    /// Addresses actually bound by the HTTP listeners, as `HOST:PORT`, in order.
    var httpAddresses: [String] { listeners.filter { $0.kind == .http }.map { boundAddress($0.fd) } }

    /// Address bound by the admin listener, if one is open.
    var adminAddress: String? { listeners.first { $0.kind == .admin }.map { boundAddress($0.fd) } }

    /// Names of the listeners taken from the service manager.
    var activatedListenerNames: [String] { listeners.filter { $0.name.hasPrefix("activated") }.map(\.name) }

    /// Sends a state line such as `READY=1` to the service manager, if it asked for them.
    func notifyServiceManager(_ state: String) {
        if let error = notifier?.send(state) {
            logger.warning("cannot notify the service manager", [("error", error)])
        }
    }

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
        case .admin:
            // Admin connections skip --max-connections, so metrics stay readable at the limit.
            let connection = HTTPConnection(fd: fd, id: id, relay: self, isAdmin: true)
            guard register(fd, connection) else { return }
            httpConnections[id] = connection
            adminConnectionCount += 1
            connection.start()
        case .http:
            guard httpConnections.count - adminConnectionCount < settings.maxConnections else {
                reject(fd, status: .serviceUnavailable, reason: "max_connections", message: "too many connections: try again later")
                return
            }
            if settings.maxConnectionsPerClient > 0 {
                let client = socketAddress(fd, peer: true)?.host ?? "?"
                guard connectionsPerClient[client, default: 0] < settings.maxConnectionsPerClient else {
                    reject(
                        fd, status: .tooManyRequests, reason: "max_connections_per_client",
                        message: "too many connections from \(client): try again later")
                    return
                }
                connectionsPerClient[client, default: 0] += 1
                clientOfDescriptor[fd] = client
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
            if !config.ingestUsers.isEmpty, !listener.name.hasPrefix("ingest tcp"), let refusal = ingestRefusal(fd) {
                let reply = Array(IngestProtocol.errorReply(refusal).utf8)
                _ = try? writeNonBlocking(fd, reply, from: 0)
                countIngestError()
                warnRateLimited("ingest connection rejected", [("listener", listener.name), ("error", refusal)])
                close(fd)
                return
            }
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

    /// Returns why the peer of a Unix ingest connection may not publish, or nil
    /// when its user id (from SO_PEERCRED) is one of --ingest-user.
    private func ingestRefusal(_ fd: Int32) -> String? {
        let uid = notify_peer_uid(fd)
        guard uid >= 0 else { return "cannot read the peer's credentials: \(SystemError(call: "getsockopt"))" }
        if config.ingestUsers.contains(uid_t(uid)) { return nil }
        return "user id \(uid) may not publish here; add it with --ingest-user"
    }

    /// Sends `status` at once and closes, without keeping any state for the client.
    private func reject(_ fd: Int32, status: HTTPStatus, reason: String, message: String) {
        // No request was read, so the Origin is unknown: only a `*` policy can be applied.
        let corsFields = cors.origins.contains("*") ? cors.fields(origin: nil) : []
        let response = HTTPResponse.text(status, message, fields: [("Retry-After", "5")] + corsFields)
        _ = try? writeNonBlocking(fd, response.serialized(keepAlive: false), from: 0)
        countResponse(status)
        statistics.rejectedConnections[reason, default: 0] += 1
        warnRateLimited("connection rejected at a limit", [("reason", reason), ("status", String(status.rawValue))])
        close(fd)
    }

    func httpConnectionClosed(_ connection: HTTPConnection) {
        httpConnections[connection.subscriberID] = nil
        if connection.isAdmin { adminConnectionCount -= 1 }
        if let client = clientOfDescriptor.removeValue(forKey: connection.fd) {
            let remaining = connectionsPerClient[client, default: 1] - 1
            connectionsPerClient[client] = remaining > 0 ? remaining : nil
        }
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
            warnRateLimited("ingest record rejected", [("peer", peer), ("error", error.reason)])
            return .failure(error)
        }
        var inboxes: [Inbox] = []
        var firstError: InboxNameError? = nil
        for recipient in record.recipients {
            do {
                inboxes.append(try policy.normalize(recipient))
            } catch {
                firstError = firstError ?? error
                warnRateLimited("recipient rejected", [("peer", peer), ("error", error.description)])
            }
        }
        guard !inboxes.isEmpty else {
            countIngestError()
            return .failure(IngestError(firstError?.description ?? "no valid recipient"))
        }
        return .success(publish(record, to: inboxes, source: peer))
    }

    /// Publishes `record` to `inboxes`, wakes their subscribers and logs one line.
    /// Returns the cursor of the last event.
    func publish(_ record: MailRecord, to inboxes: [Inbox], source: String) -> String {
        let waiting = inboxes.reduce(0) { $0 + (hub.inboxes[$1.key]?.subscribers.count ?? 0) }
        let cursor = hub.publish(record, to: inboxes, now: EventLoop.now(), wallClock: time(nil))
        statistics.eventsReceived += Set(inboxes.map(\.key)).count
        logger.info(
            "mail notified",
            [
                ("inboxes", inboxes.map(\.key).joined(separator: ",")), ("cursor", cursor),
                ("queue_id", record.queueId ?? "-"), ("subscribers", String(waiting)), ("source", source),
            ])
        return cursor
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
    /// Repeats not logged since the last line of each warning, with the fields of the latest one.
    private var suppressedWarnings: [String: (count: Int, fields: [(String, String)])] = [:]

    /// Logs `message` at most once per `warningIntervalMilliseconds`. Repeats in
    /// between are counted and reported by `flushSuppressedWarnings`, which
    /// housekeeping and shutdown call, so no repeat goes unreported.
    func warnRateLimited(_ message: String, _ fields: [(String, String)]) {
        let now = EventLoop.now()
        if let last = lastWarningAt[message], now - last < Relay.warningIntervalMilliseconds {
            suppressedWarnings[message] = ((suppressedWarnings[message]?.count ?? 0) + 1, fields)
            return
        }
        lastWarningAt[message] = now
        let suppressed = suppressedWarnings.removeValue(forKey: message)?.count ?? 0
        logger.warning(message, fields + [("suppressed", String(suppressed))])
    }

    /// Logs one `(repeated)` line for each warning whose interval is over (or
    /// every one, with `all`) and that has repeats not yet reported.
    func flushSuppressedWarnings(all: Bool = false) {
        let now = EventLoop.now()
        for (message, entry) in suppressedWarnings {
            guard all || now - (lastWarningAt[message] ?? 0) >= Relay.warningIntervalMilliseconds else { continue }
            suppressedWarnings[message] = nil
            lastWarningAt[message] = now
            logger.warning(message + " (repeated)", entry.fields + [("suppressed", String(entry.count))])
        }
    }

    func countIngestError() { statistics.ingestErrors += 1 }
    func countBadRequest() { statistics.badRequests += 1 }
    func countResponse(_ status: HTTPStatus) { statistics.responses[status.rawValue, default: 0] += 1 }
    func countEventsSent(_ count: Int) { statistics.eventsSent += count }

    /// Returns the first inbox of a waiting action that has reached
    /// --max-subscribers-per-inbox, or nil when the action may go ahead.
    func fullInbox(for action: RouteAction) -> String? {
        let limit = settings.maxSubscribersPerInbox
        guard limit > 0 else { return nil }
        let target: SubscriptionTarget
        switch action {
        case .wait(let waiting, _, _): target = waiting
        case .stream(let streaming, _): target = streaming
        case .respond: return nil
        }
        var full: String? = nil
        target.forEachKey { key in
            if full == nil, (hub.inboxes[key]?.subscribers.count ?? 0) >= limit { full = key }
        }
        if full != nil { statistics.rejectedConnections["max_subscribers_per_inbox", default: 0] += 1 }
        return full
    }

    /// Open connections on the public HTTP listeners, the admin listener and the ingest listeners.
    var openConnectionCounts: (http: Int, admin: Int, ingest: Int) {
        (httpConnections.count - adminConnectionCount, adminConnectionCount, ingestConnections.count)
    }

    // MARK: Shutdown

    func beginShutdown(signal: Int32) {
        guard !shuttingDown else { return }
        shuttingDown = true
        notifyServiceManager("STOPPING=1")
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
        flushSuppressedWarnings(all: true)
        for connection in Array(httpConnections.values) { connection.close() }
        for connection in Array(ingestConnections.values) { connection.close() }
        logger.info(
            "stopped",
            [
                ("events", String(statistics.eventsReceived)), ("ingest_errors", String(statistics.ingestErrors)),
                ("responses", String(statistics.responses.values.reduce(0, +))),
            ])
        loop.stop()
    }

    fileprivate func housekeep() {
        hub.expire(now: EventLoop.now())
        flushSuppressedWarnings()
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

/// The last serialized fan-out response and what it was built for.
private struct ResponseCacheEntry {
    var primary: String
    var others: [String]
    var cursor: String
    var format: ResponseFormat
    var keepAlive: Bool
    var corsKey: String
    var bytes: [UInt8]
}
