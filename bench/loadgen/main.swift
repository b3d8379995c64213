// notify-loadgen: benchmark client for a running notify-relay, for bench/run.sh.
//
// One run measures one scenario on a freshly started relay:
//   1. the relay's resident memory before any client, from /proc/PID/status;
//   2. N clients connect over loopback TCP and each sends a long-poll
//      `GET /<inbox>?timeout=S` (all on one inbox, or one inbox each);
//   3. once the relay has accepted and parsed every request (see RelayProbe),
//      its resident memory again, so (after - before) / N is the cost of one
//      idle waiting client;
//   4. R fan-out rounds, in which one write of ingest lines to the Unix
//      socket wakes every client. Each latency runs from just before that
//      write until the client has read its whole response, measured on this
//      process's CLOCK_MONOTONIC.
// Output is one `result kind=... key=value ...` line per measurement.
// The exit status is 1 when any client did not get its 200, 2 on a usage error.
//
// Traffic stays on 127.0.0.1 and the given Unix socket; every wait is bounded
// by --deadline. Linux only.

import CNotifyShim
import Glibc

/// The relay's limit on recipients in one ingest record.
let recipientsPerRecord = 1000
/// Clients of the warm-up round that runs before the first memory reading.
let warmupClients = 32

struct Options {
    var port: UInt16 = 0
    var socketPath = ""
    var relayPID: Int32 = 0
    var clients = 1000
    var oneInbox = true
    var rounds = 5
    var pollTimeoutSeconds = 600
    var deadlineSeconds = 240
    var nameSuffix = ""
    var maxPendingConnects = 512
}

let usage = """
    Usage: notify-loadgen --port PORT --socket PATH --relay-pid PID [options]

      --port PORT           HTTP port of the relay on 127.0.0.1
      --socket PATH         ingest Unix socket of the relay
      --relay-pid PID       process id of the relay, for /proc readings
      --clients N           long-poll clients to connect (default 1000)
      --inboxes one|distinct  all clients on one inbox, or one inbox each (default one)
      --rounds R            fan-out rounds (default 5)
      --poll-timeout S      ?timeout= sent with each request, in seconds (default 600)
      --deadline S          bound on the whole run, in seconds (default 240)
      --name-suffix TEXT    appended to every inbox name, such as @example.com (default none)

    """

func parseOptions(_ arguments: [String]) -> Options? {
    var options = Options()
    var index = 0
    while index < arguments.count {
        let name = arguments[index]
        guard index + 1 < arguments.count else { return nil }
        let value = arguments[index + 1]
        switch name {
        case "--port": guard let port = UInt16(value) else { return nil }; options.port = port
        case "--socket": options.socketPath = value
        case "--relay-pid": guard let pid = Int32(value) else { return nil }; options.relayPID = pid
        case "--clients": guard let count = Int(value), count > 0 else { return nil }; options.clients = count
        case "--inboxes":
            guard value == "one" || value == "distinct" else { return nil }
            options.oneInbox = value == "one"
        case "--rounds": guard let count = Int(value), count > 0 else { return nil }; options.rounds = count
        case "--poll-timeout": guard let seconds = Int(value), seconds > 0 else { return nil }; options.pollTimeoutSeconds = seconds
        case "--deadline": guard let seconds = Int(value), seconds > 0 else { return nil }; options.deadlineSeconds = seconds
        case "--name-suffix": options.nameSuffix = value
        default: return nil
        }
        index += 2
    }
    guard options.port != 0, !options.socketPath.isEmpty, options.relayPID > 0 else { return nil }
    return options
}

/// Raises the soft open-file limit to the hard one; returns the new soft limit.
func raiseDescriptorLimit() -> Int {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
    limit.rlim_cur = limit.rlim_max
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    return limit.rlim_cur == rlim_t.max ? Int.max : Int(clamping: limit.rlim_cur)
}

/// Opens a blocking connection to the ingest Unix socket.
func connectIngest(_ path: String) throws(LoadError) -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw LoadError(call: "socket (ingest)") }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let pathBytes = Array(path.utf8)
    guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
        throw LoadError("ingest socket path is too long: \(path)")
    }
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: pathBytes) }
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard result == 0 else { throw LoadError(call: "connect \(path)") }
    return fd
}

/// Ingest lines that notify every inbox in `inboxes` once, at most 1000 recipients a line.
func ingestPayload(_ inboxes: [String], round: Int) -> (bytes: [UInt8], lines: Int) {
    let distinct = Array(Set(inboxes)).sorted()
    var text = ""
    var lines = 0
    for start in stride(from: 0, to: distinct.count, by: recipientsPerRecord) {
        let chunk = distinct[start..<min(start + recipientsPerRecord, distinct.count)]
        let list = chunk.map { "\"\($0)\"" }.joined(separator: ",")
        text += "{\"recipients\":[\(list)],\"subject\":\"bench round \(round)\"}\n"
        lines += 1
    }
    return (Array(text.utf8), lines)
}

/// Nearest-rank percentile of sorted values.
func percentile(_ sorted: [Int64], _ fraction: Double) -> Int64 {
    guard !sorted.isEmpty else { return 0 }
    let rank = Int((fraction * Double(sorted.count)).rounded(.up))
    return sorted[max(0, min(sorted.count - 1, rank - 1))]
}

func milliseconds(_ nanoseconds: Int64) -> String {
    let value = Double(nanoseconds) / 1e6
    let hundredths = Int((value * 100).rounded())
    let fraction = hundredths % 100
    return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
}

func writeStandardError(_ text: String) {
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

/// Writes one result line to standard output at once, unbuffered, so a
/// script can react to it while the run goes on.
func emitLine(_ text: String) {
    let bytes = Array((text + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
}

func sleepMilliseconds(_ milliseconds: Int) {
    usleep(UInt32(milliseconds * 1000))
}

/// Waits until the relay has `expectedDescriptors` open descriptors and has
/// read every request on its port. Returns false at the deadline.
func waitForRelay(_ probe: RelayProbe, pool: ClientPool, expectedDescriptors: Int, deadline: Int64) -> Bool {
    while monotonicNanoseconds() < deadline {
        pool.pollForUnexpected()
        if let count = probe.openDescriptorCount(), count >= expectedDescriptors {
            let queues = probe.acceptedSocketQueues()
            if queues.established >= pool.clientCount && queues.unread == 0 {
                // The request handled at probe time may not be subscribed yet.
                sleepMilliseconds(200)
                return true
            }
        }
        sleepMilliseconds(100)
    }
    return false
}

/// Runs one fan-out round with `warmupClients` clients and waits until the
/// relay has closed their connections again.
func warmUp(_ probe: RelayProbe, options: Options, baseDescriptors: Int, deadline: Int64) throws(LoadError) {
    let inboxes = (0..<warmupClients).map { "warmup-\($0)" + options.nameSuffix }
    let pool = try ClientPool(port: options.port, inboxes: inboxes, pollTimeoutSeconds: options.pollTimeoutSeconds)
    try pool.connectAll(maxPending: warmupClients, deadline: deadline)
    guard waitForRelay(probe, pool: pool, expectedDescriptors: baseDescriptors + warmupClients, deadline: deadline) else {
        pool.closeAll()
        throw LoadError("the relay did not read the warm-up requests before the deadline")
    }
    let (payload, lines) = ingestPayload(inboxes, round: 0)
    let ingestFD = try connectIngest(options.socketPath)
    let result = try pool.runRound(ingestFD: ingestFD, payload: payload, expectedAcks: lines, deadline: deadline)
    close(ingestFD)
    pool.closeAll()
    guard result.latencies.count == warmupClients else {
        throw LoadError("warm-up: \(result.latencies.count) of \(warmupClients) clients got their 200")
    }
    while monotonicNanoseconds() < deadline {
        if let count = probe.openDescriptorCount(), count <= baseDescriptors { return }
        sleepMilliseconds(50)
    }
    throw LoadError("the relay did not close the warm-up connections before the deadline")
}

func run(_ options: Options) throws(LoadError) -> Bool {
    let deadline = monotonicNanoseconds() + Int64(options.deadlineSeconds) * 1_000_000_000
    let descriptorLimit = raiseDescriptorLimit()
    guard descriptorLimit >= options.clients + 16 else {
        throw LoadError(
            "--clients \(options.clients) needs about \(options.clients + 16) descriptors but the open-file "
                + "limit is \(descriptorLimit): raise it (ulimit -n) or split the clients over several runs")
    }
    let probe = RelayProbe(pid: options.relayPID, port: options.port)
    let mode = options.oneInbox ? "one" : "distinct"
    let inboxes = (0..<options.clients).map {
        (options.oneInbox ? "inbox-all" : "inbox-\($0)") + options.nameSuffix
    }

    // A few clients do one full request and fan-out first, so that code pages
    // and allocator arenas touched by any request are already in "before".
    guard let startDescriptors = probe.openDescriptorCount() else {
        throw LoadError("cannot read /proc/\(options.relayPID): is the relay running?")
    }
    try warmUp(probe, options: options, baseDescriptors: startDescriptors, deadline: deadline)

    // Resident memory and descriptors of the relay before the measured clients.
    guard let before = probe.memoryKiB(), let baseDescriptors = probe.openDescriptorCount() else {
        throw LoadError("cannot read /proc/\(options.relayPID): is the relay running?")
    }

    let pool = try ClientPool(port: options.port, inboxes: inboxes, pollTimeoutSeconds: options.pollTimeoutSeconds)
    defer { pool.closeAll() }
    let connectStart = monotonicNanoseconds()
    try pool.connectAll(maxPending: options.maxPendingConnects, deadline: deadline)
    guard waitForRelay(probe, pool: pool, expectedDescriptors: baseDescriptors + options.clients, deadline: deadline)
    else {
        throw LoadError("the relay did not accept and read all \(options.clients) requests before the deadline")
    }
    let connectElapsed = monotonicNanoseconds() - connectStart
    guard let after = probe.memoryKiB() else { throw LoadError("the relay exited") }
    let perClient = Double((after.rss - before.rss) * 1024) / Double(options.clients)
    let perClientAnonymous = Double((after.anonymous - before.anonymous) * 1024) / Double(options.clients)
    emitLine(
        "result kind=idle-memory clients=\(options.clients) inboxes=\(mode) rss_before_kib=\(before.rss) "
            + "rss_after_kib=\(after.rss) bytes_per_client=\(Int(perClient.rounded())) "
            + "anon_bytes_per_client=\(Int(perClientAnonymous.rounded())) "
            + "connect_ms=\(milliseconds(connectElapsed)) unexpected_responses=\(pool.unexpectedResponses)")

    // Fan-out rounds on the same connections, re-armed by keep-alive.
    var all: [Int64] = []
    var roundP99: [Int64] = []
    var failed = pool.unexpectedResponses
    // Relay CPU time (user + system) summed over the rounds, from /proc/PID/stat.
    var relayCPUMilliseconds = 0
    for round in 1...options.rounds {
        let (payload, lines) = ingestPayload(inboxes, round: round)
        let ingestFD = try connectIngest(options.socketPath)
        let cpuBefore = probe.cpuTicks()
        let roundDeadline = min(deadline, monotonicNanoseconds() + 30_000_000_000)
        let result = try pool.runRound(ingestFD: ingestFD, payload: payload, expectedAcks: lines, deadline: roundDeadline)
        close(ingestFD)
        let cpuAfter = probe.cpuTicks()
        let ticksPerSecond = sysconf(Int32(_SC_CLK_TCK))
        var relayCPU = "relay_user_ms=? relay_sys_ms=?"
        if let cpuBefore, let cpuAfter, ticksPerSecond > 0 {
            let user = (cpuAfter.user - cpuBefore.user) * 1000 / ticksPerSecond
            let system = (cpuAfter.system - cpuBefore.system) * 1000 / ticksPerSecond
            relayCPU = "relay_user_ms=\(user) relay_sys_ms=\(system)"
            relayCPUMilliseconds += user + system
        }

        let sorted = result.latencies.sorted()
        all += sorted
        roundP99.append(percentile(sorted, 0.99))
        failed += result.failed + result.missing
        emitLine(
            "result kind=fanout-round clients=\(options.clients) inboxes=\(mode) round=\(round) ingest_lines=\(lines) "
                + "ok=\(sorted.count) failed=\(result.failed) missing=\(result.missing) "
                + "p50_ms=\(milliseconds(percentile(sorted, 0.5))) p99_ms=\(milliseconds(percentile(sorted, 0.99))) "
                + "max_ms=\(milliseconds(sorted.last ?? 0)) "
                + "ingest_ack_ms=\(result.ingestAcknowledged.map(milliseconds) ?? "none") \(relayCPU)")
        guard round < options.rounds else { break }
        try pool.rearm()
        guard waitForRelay(probe, pool: pool, expectedDescriptors: baseDescriptors + options.clients, deadline: deadline)
        else {
            throw LoadError("the relay did not read all re-sent requests before the deadline")
        }
    }

    all.sort()
    let afterRounds = probe.memoryKiB()?.rss ?? 0
    emitLine(
        "result kind=fanout clients=\(options.clients) inboxes=\(mode) rounds=\(options.rounds) "
            + "samples=\(all.count) expected=\(options.clients * options.rounds) failed=\(failed) "
            + "p50_ms=\(milliseconds(percentile(all, 0.5))) p99_ms=\(milliseconds(percentile(all, 0.99))) "
            + "max_ms=\(milliseconds(all.last ?? 0)) worst_round_p99_ms=\(milliseconds(roundP99.max() ?? 0)) "
            + "relay_cpu_ms_per_round=\(relayCPUMilliseconds / options.rounds) rss_after_rounds_kib=\(afterRounds)")
    return failed == 0 && all.count == options.clients * options.rounds
}

guard let options = parseOptions(Array(CommandLine.arguments.dropFirst())) else {
    writeStandardError(usage)
    exit(2)
}
do {
    exit(try run(options) ? 0 : 1)
} catch {
    writeStandardError("notify-loadgen: \(error.description)\n")
    exit(1)
}
