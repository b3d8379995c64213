// Command-line options of notify-relay. Every invalid value stops start-up
// with a message naming the option, the value and what is allowed.

import Glibc
import NotifyCore

/// The relay's configuration after option parsing.
struct RelayConfig {
    var listen: [ListenAddress] = []
    var socketPath: String? = nil
    var socketMode: mode_t = 0o660
    var socketGroup: gid_t? = nil
    /// User ids allowed to write to the ingest Unix socket; empty allows every user the mode lets in.
    var ingestUsers: [uid_t] = []
    var domains: [String] = []
    var subaddressDelimiters: [UInt8] = []
    var pollTimeout: Double = 30
    var maxPollTimeout: Double = 120
    var history = 16
    var historyAge: Double = 3600
    var historyMaxEvents = 100_000
    var maxConnections: Int? = nil
    var maxConnectionsPerClient = 0
    var maxSubscribersPerInbox = 0
    var headerTimeout: Double = 10
    var idleTimeout: Double = 60
    var writeTimeout: Double = 30
    var ingestTCP: ListenAddress? = nil
    var adminListen: ListenAddress? = nil
    var logLevel: LogLevel = .info
    var corsOrigins: [String] = []
    var ssePing: Double = 15
    var sseMaxAge: Double = 900
    var sseMaxBuffer = 64 * 1024
    var maxInboxesPerRequest = 16
    var demoEnabled = true

    /// Listener used when no --listen option is given.
    static let defaultListen = ListenAddress("127.0.0.1:8000")!
    /// Descriptors kept free for listeners, ingest clients and the process itself.
    static let descriptorReserve = 64
}

/// The action the command line selects.
enum RelayCommand {
    case run(RelayConfig)
    case help
    case version
}

/// A command-line error, worded for the operator.
struct ConfigError: Error, CustomStringConvertible {
    var description: String
}

let relayVersion = "0.1.0"

let relayUsage = """
    Usage: notify-relay [options]

    Waits for "new mail" records from notify-deliver on a Unix socket and
    answers web clients waiting on those inboxes over HTTP long-poll and
    Server-Sent Events.

    Options:
      --listen HOST:PORT        HTTP listener; repeat for several; IPv6 as [::1]:8000
                                (default 127.0.0.1:8000)
      --socket PATH             ingest Unix socket (default: $NOTIFY_RELAY_SOCKET, else
                                /run/notify/relay.sock for root, else
                                $XDG_RUNTIME_DIR/notify/relay.sock or ~/.cache/notify/relay.sock)
      --socket-mode OCTAL       permissions of the ingest socket (default 0660)
      --socket-group GROUP      group of the ingest socket, by name or number
                                (default: the relay's group)
      --ingest-user USER        only this user (name or number) may publish on the ingest
                                Unix socket, checked with SO_PEERCRED; repeat for several
                                (default: anyone the socket's mode and group let in)
      --ingest-tcp HOST:PORT    also accept ingest lines over TCP (default: off);
                                anyone who can connect can publish, so keep it on loopback
      --admin-listen HOST:PORT  admin listener with GET /metrics (Prometheus text), GET /healthz
                                and POST /publish/<inbox> (default: off); keep it on loopback
      --domain DOMAIN           domain served; repeat for several; the first completes
                                bare names (default: none, inboxes are local parts alone)
      --subaddress-delimiter CHARS  cut local parts at the first of these characters,
                                so user+tag and user are one inbox; give notify-deliver
                                the same value (default: none, user+tag is its own inbox)
      --poll-timeout SECONDS    long-poll wait when the client sends no ?timeout= (default 30)
      --max-poll-timeout SECONDS  largest ?timeout= honoured (default 120)
      --history COUNT           events kept per inbox for clients that reconnect (default 16)
      --history-age SECONDS     age after which an event is dropped (default 3600)
      --history-max-events COUNT  events kept over all inboxes (default 100000)
      --max-connections COUNT   open HTTP connections; more get 503 (default: the open-file
                                limit minus 64)
      --max-connections-per-client COUNT  open HTTP connections from one client
                                address; more get 429 (default 0: no limit; behind a
                                proxy every client has the proxy's address)
      --max-subscribers-per-inbox COUNT  waiting long-polls and streams on one inbox;
                                more get 503 (default 0: no limit)
      --header-timeout SECONDS  time to send a request head (default 10)
      --idle-timeout SECONDS    keep-alive time between requests (default 60)
      --write-timeout SECONDS   time a client may stall a response (default 30)
      --sse-ping SECONDS        heartbeat comment interval on event streams (default 15)
      --sse-max-age SECONDS     event streams end after this long so clients reconnect
                                (default 900)
      --sse-max-buffer BYTES    unsent bytes an event stream may queue before its client
                                is disconnected as too slow (default 65536)
      --max-inboxes-per-request COUNT  inboxes in one /?inbox=a&inbox=b request (default 16)
      --cors-origin ORIGIN      let pages on ORIGIN (such as https://mail.example) read
                                responses; repeat for several, or * for any (default: off)
      --no-demo                 do not serve the demo page at /
      --log-level LEVEL         debug, info, warning or error (default info)
      --help, -h                show this help
      --version                 show the version

    Under systemd: listening sockets passed by socket activation (LISTEN_FDS,
    LISTEN_PID, LISTEN_FDNAMES) are used in place of --listen and --socket;
    name them http, ingest or admin with FileDescriptorName=. Unnamed TCP
    sockets serve HTTP and an unnamed Unix socket is the ingest socket. With
    NOTIFY_SOCKET set, the relay reports READY=1 once listening and
    STOPPING=1 when it shuts down (Type=notify).

    """

/// Parses the arguments after the program name.
func parseRelayArguments(_ arguments: [String]) throws(ConfigError) -> RelayCommand {
    var config = RelayConfig()
    var index = 0

    func value(_ option: String, _ inline: String?) throws(ConfigError) -> String {
        if let inline { return inline }
        index += 1
        guard index < arguments.count else { throw ConfigError(description: "missing value for \(option)") }
        return arguments[index]
    }

    while index < arguments.count {
        var option = arguments[index]
        var inline: String? = nil
        if option.hasPrefix("--"), let equals = option.firstIndex(of: "=") {
            inline = String(option[option.index(after: equals)...])
            option = String(option[..<equals])
        }
        switch option {
        case "--help", "-h": return .help
        case "--version": return .version
        case "--listen": config.listen.append(try listenAddress(option, try value(option, inline)))
        case "--ingest-tcp": config.ingestTCP = try listenAddress(option, try value(option, inline))
        case "--admin-listen": config.adminListen = try listenAddress(option, try value(option, inline))
        case "--socket":
            let path = try value(option, inline)
            guard !path.isEmpty, path.utf8.count <= IngestSocketPath.maxPathBytes else {
                throw ConfigError(
                    description: "invalid value \(quotedForMessage(path)) for --socket: expected a path of 1 to "
                        + "\(IngestSocketPath.maxPathBytes) bytes")
            }
            config.socketPath = path
        case "--socket-mode": config.socketMode = try socketMode(try value(option, inline))
        case "--socket-group": config.socketGroup = try groupID(try value(option, inline))
        case "--ingest-user": config.ingestUsers.append(try userID(try value(option, inline)))
        case "--domain":
            let domain = try value(option, inline)
            do {
                // Keep the domain as normalize() writes it (lowercase, no trailing dot), because
                // InboxPolicy compares recipient domains with its list byte for byte.
                let recipient = try InboxPolicy().normalize("x@" + domain).recipient
                config.domains.append(String(recipient.dropFirst(2)))
            } catch {
                throw ConfigError(description: "invalid value \(quotedForMessage(domain)) for --domain: \(error.reason)")
            }
        case "--subaddress-delimiter":
            let text = try value(option, inline)
            guard let delimiters = InboxPolicy.parseSubaddressDelimiters(text) else {
                throw ConfigError(
                    description: "invalid value \(quotedForMessage(text)) for --subaddress-delimiter: expected characters "
                        + "from \(InboxPolicy.allowedSubaddressDelimiters), such as + or +-")
            }
            config.subaddressDelimiters = delimiters
        case "--poll-timeout": config.pollTimeout = try seconds(option, try value(option, inline), max: 86400)
        case "--max-poll-timeout": config.maxPollTimeout = try seconds(option, try value(option, inline), max: 86400)
        case "--history": config.history = try count(option, try value(option, inline), range: 1...10_000)
        case "--history-age": config.historyAge = try seconds(option, try value(option, inline), max: 30 * 86400)
        case "--history-max-events":
            config.historyMaxEvents = try count(option, try value(option, inline), range: 1...100_000_000)
        case "--max-connections":
            config.maxConnections = try count(option, try value(option, inline), range: 1...10_000_000)
        case "--max-connections-per-client":
            config.maxConnectionsPerClient = try count(option, try value(option, inline), range: 0...10_000_000)
        case "--max-subscribers-per-inbox":
            config.maxSubscribersPerInbox = try count(option, try value(option, inline), range: 0...10_000_000)
        case "--header-timeout": config.headerTimeout = try seconds(option, try value(option, inline), max: 3600)
        case "--idle-timeout": config.idleTimeout = try seconds(option, try value(option, inline), max: 86400)
        case "--write-timeout": config.writeTimeout = try seconds(option, try value(option, inline), max: 3600)
        case "--sse-ping": config.ssePing = try seconds(option, try value(option, inline), max: 3600)
        case "--sse-max-age": config.sseMaxAge = try seconds(option, try value(option, inline), max: 7 * 86400)
        case "--sse-max-buffer":
            config.sseMaxBuffer = try count(option, try value(option, inline), range: 1024...64 * 1024 * 1024)
        case "--max-inboxes-per-request":
            config.maxInboxesPerRequest = try count(option, try value(option, inline), range: 1...1000)
        case "--cors-origin": config.corsOrigins.append(try corsOrigin(try value(option, inline)))
        case "--no-demo": config.demoEnabled = false
        case "--log-level":
            let name = try value(option, inline)
            guard let level = LogLevel(name: name) else {
                throw ConfigError(
                    description: "invalid value \(quotedForMessage(name)) for --log-level: expected debug, info, warning or error")
            }
            config.logLevel = level
        default:
            throw ConfigError(description: "unknown option \(quotedForMessage(option)); see notify-relay --help")
        }
        index += 1
    }

    if config.listen.isEmpty { config.listen = [RelayConfig.defaultListen] }
    for (index, address) in config.listen.enumerated() where address.port != 0 {
        if config.listen[..<index].contains(address) {
            throw ConfigError(description: "--listen \(address) is given twice; give each address once")
        }
    }
    if config.pollTimeout > config.maxPollTimeout {
        throw ConfigError(
            description: "--poll-timeout (\(config.pollTimeout) s) is larger than --max-poll-timeout "
                + "(\(config.maxPollTimeout) s); lower the first or raise the second")
    }
    return .run(config)
}

private func listenAddress(_ option: String, _ text: String) throws(ConfigError) -> ListenAddress {
    guard let address = ListenAddress(text) else {
        throw ConfigError(
            description: "invalid value \(quotedForMessage(text)) for \(option): expected HOST:PORT with a numeric "
                + "IPv4 address or localhost, or [IPV6]:PORT, such as 127.0.0.1:8000 or [::1]:8000")
    }
    return address
}

private func seconds(_ option: String, _ text: String, max: Double) throws(ConfigError) -> Double {
    guard let value = Double(text), value > 0, value <= max else {
        throw ConfigError(
            description: "invalid value \(quotedForMessage(text)) for \(option): expected seconds greater than 0 "
                + "and at most \(Int(max)), such as 30 or 0.5")
    }
    return value
}

private func count(_ option: String, _ text: String, range: ClosedRange<Int>) throws(ConfigError) -> Int {
    guard let value = Int(text), range.contains(value) else {
        throw ConfigError(
            description: "invalid value \(quotedForMessage(text)) for \(option): expected a whole number from "
                + "\(range.lowerBound) to \(range.upperBound)")
    }
    return value
}

private func socketMode(_ text: String) throws(ConfigError) -> mode_t {
    guard let value = mode_t(text, radix: 8), value <= 0o777 else {
        throw ConfigError(
            description: "invalid value \(quotedForMessage(text)) for --socket-mode: expected an octal mode such as 0660")
    }
    return value
}

private func userID(_ text: String) throws(ConfigError) -> uid_t {
    if let number = uid_t(text) { return number }
    guard let entry = getpwnam(text) else {
        throw ConfigError(
            description: "invalid value \(quotedForMessage(text)) for --ingest-user: no such user; "
                + "create it or give a numeric user id")
    }
    return entry.pointee.pw_uid
}

private func groupID(_ text: String) throws(ConfigError) -> gid_t {
    if let number = gid_t(text) { return number }
    guard let entry = getgrnam(text) else {
        throw ConfigError(
            description: "invalid value \(quotedForMessage(text)) for --socket-group: no such group; "
                + "create it or give a numeric group id")
    }
    return entry.pointee.gr_gid
}

/// Checks a --cors-origin value: `*` or `scheme://host[:port]` as browsers send it in Origin.
private func corsOrigin(_ text: String) throws(ConfigError) -> String {
    if text == "*" { return text }
    var host: Substring? = nil
    if text.hasPrefix("https://") {
        host = text.dropFirst(8)
    } else if text.hasPrefix("http://") {
        host = text.dropFirst(7)
    }
    let valid = host.map { !$0.isEmpty && !$0.contains("/") && !$0.contains(" ") } ?? false
    guard valid else {
        throw ConfigError(
            description: "invalid value \(quotedForMessage(text)) for --cors-origin: expected * or an origin "
                + "such as https://mail.example or http://localhost:3000, with no path or trailing slash")
    }
    return text
}
