// One notify-deliver run: options in, a record to the relay, an exit status out.
//
// Steps: parse the options and arm the backstop timer. Read stdin, unless it is
// a terminal, for the header block and the size. Choose and check the
// recipients and build the record. Print it (--dry-run) or send it. Map the
// outcome to an exit status with `exitStatus(for:interactive:tempfail:)`.
// With --exec, `runWrapped` (WrapperMode.swift) runs the delivery program
// first and sends the same record only when that program succeeded.
//
// Time: the whole run is bounded by --timeout, counted from the start of
// `run`. Reading stdin may use all but a reserve of min(1 s, timeout / 2),
// which is left for the relay round trip. As a backstop against a bug or a
// stuck system call, SIGALRM fires at timeout + 1 s and `_exit`s with the
// status a timeout would get, without logging (syslog is not async-signal-safe).
//
// Output: log lines go to syslog (facility mail) and, only when stdin is a
// terminal or with --verbose, to stderr. stdout carries nothing but the
// --dry-run record, --help and --version, because Exim may turn any output
// into a bounce. A mail body is never logged.

import Glibc
import NotifyCore

/// Runs notify-deliver and returns the process exit status.
///
/// - Parameters:
///   - arguments: the arguments after the program name.
///   - environment: the process environment (the MTA sets recipient variables there).
///   - stdinFD: where the message is read from.
///   - stdoutFD: where --dry-run, --help and --version write.
///   - useSyslog: false sends log lines to stderr only, for tests run in-process.
public func run(
    arguments: [String], environment: [String: String], stdinFD: Int32 = 0, stdoutFD: Int32 = 1,
    useSyslog: Bool = true
) -> Int32 {
    let start = Deadline.now()
    let interactive = isatty(stdinFD) == 1
    var logger = Logger(minimumLevel: .info, sinks: interactive ? .stderr : [])
    if useSyslog {
        Logger.openSyslog(ident: "notify-deliver")
        logger.sinks.insert(.syslog)
    } else {
        logger.sinks.insert(.stderr)
    }

    let options: DeliverOptions
    switch parseCommandLine(arguments) {
    case .success(.help):
        writeText(helpText, to: stdoutFD)
        return SysExit.ok.rawValue
    case .success(.version):
        writeText("notify-deliver \(notifyDeliverVersion)\n", to: stdoutFD)
        return SysExit.ok.rawValue
    case .success(.deliver(let parsed)):
        options = parsed
    case .failure(let error):
        applyVerbose(error.partialOptions, to: &logger)
        if error.partialOptions.execArguments != nil {
            // The delivery program was not run, so exit 0 would lose the message.
            let status = interactive ? SysExit.usage.rawValue : SysExit.tempFail.rawValue
            logger.error("\(error.message) (the delivery program was not run)", [("exit_status", String(status))])
            return status
        }
        logger.error(error.message)
        return exitStatus(for: .usageError, interactive: interactive, tempfail: error.partialOptions.tempfail)
    }
    applyVerbose(options, to: &logger)
    if let program = options.execArguments {
        return runWrapped(
            program: program, options: options, environment: environment, stdinFD: stdinFD,
            interactive: interactive, stdoutFD: stdoutFD, logger: logger)
    }

    let deadline = Deadline(seconds: options.timeoutSeconds, after: start)
    let timeoutStatus = exitStatus(for: .relayUnreachable, interactive: interactive, tempfail: options.tempfail)
    armBackstop(seconds: options.timeoutSeconds + 1, exitStatus: timeoutStatus)

    let outcome = deliver(
        options: options, environment: environment, stdinFD: interactive ? nil : stdinFD,
        deadline: deadline, stdoutFD: stdoutFD, logger: logger)
    disarmBackstop()
    return exitStatus(for: outcome, interactive: interactive, tempfail: options.tempfail)
}

/// Reads the message, builds the record and prints or sends it.
func deliver(
    options: DeliverOptions, environment: [String: String], stdinFD: Int32?, deadline: Deadline,
    stdoutFD: Int32, logger: Logger
) -> RunOutcome {
    let (headers, size) = readStdin(stdinFD, deadline: deadline, timeoutSeconds: options.timeoutSeconds, logger: logger)
    return notify(
        headers: headers, size: size, options: options, environment: environment, deadline: deadline,
        stdoutFD: stdoutFD, logger: logger)
}

/// Chooses the recipients, builds the record from the message's header fields
/// and size, and prints (--dry-run) or sends it.
func notify(
    headers: HeaderBlock, size: Int?, options: DeliverOptions, environment: [String: String], deadline: Deadline,
    stdoutFD: Int32, logger: Logger
) -> RunOutcome {
    let (raw, source) = selectRecipients(arguments: options.recipients, environment: environment, headers: headers)
    let policy = InboxPolicy(subaddressDelimiters: options.subaddressDelimiters)
    let (recipients, invalid) = validateRecipients(raw, policy: policy)
    for error in invalid {
        logger.warning("invalid recipient dropped", [("source", source.label), ("error", error.description)])
    }
    let queueId = selectQueueId(environment: environment, headers: headers)
    guard !recipients.isEmpty else {
        logger.warning(
            "no recipient: pass RECIPIENT arguments or let the MTA set RECIPIENT or LOCAL_PART",
            [("source", source.label), ("queue_id", queueId ?? "-")])
        return .noRecipient
    }

    let record = MailRecord(
        recipients: recipients, from: headers.value("From"), subject: headers.value("Subject"),
        messageId: headers.value("Message-ID"), size: size,
        sender: selectSender(environment: environment, headers: headers), queueId: queueId)
    if options.dryRun {
        writeText(record.jsonLine() + "\n", to: stdoutFD)
        return .delivered
    }
    return send(record, options: options, environment: environment, deadline: deadline, logger: logger)
}

/// Resolves the socket path, sends the record and logs the result.
func send(
    _ record: MailRecord, options: DeliverOptions, environment: [String: String], deadline: Deadline,
    logger: Logger
) -> RunOutcome {
    var fields = [("recipients", record.recipients.joined(separator: ",")), ("queue_id", record.queueId ?? "-")]
    let socketPath: String
    if let path = options.socketPath {
        socketPath = path
    } else {
        switch IngestSocketPath.resolve(environment: environment) {
        case .success(let path): socketPath = path
        case .failure(let error):
            logger.error(error.message, fields)
            return .usageError
        }
    }
    fields.append(("socket", socketPath))

    switch RelayClient(socketPath: socketPath, deadline: deadline).send(record) {
    case .success(let cursor):
        logger.info("relay notified", [("cursor", cursor)] + fields)
        return .delivered
    case .failure(let error):
        logger.warning(error.message, fields)
        return error.isUnreachable ? .relayUnreachable : .relayRejected
    }
}

/// Reads stdin for the header block and the size. The size is nil when the
/// read did not reach EOF; what was read of the headers is still used.
func readStdin(
    _ fd: Int32?, deadline: Deadline, timeoutSeconds: Double, logger: Logger
) -> (HeaderBlock, Int?) {
    guard let fd else {
        logger.debug("stdin is a terminal: not reading a message")
        return (HeaderBlock(), nil)
    }
    let readDeadline = deadline.earlier(by: min(1, timeoutSeconds / 2))
    let (reader, end) = readMessage(fd: fd, deadline: readDeadline)
    let headers = reader.headerBlock
    logHeaderTruncation(reader, logger: logger)

    switch end {
    case .endOfInput:
        return (headers, reader.size)
    case .timedOut:
        logger.warning("timed out reading the message from stdin: size unknown", [("bytes_read", String(reader.size))])
    case .failed(let call, let code):
        logger.warning("\(call) on stdin failed: \(errnoText(code))", [("bytes_read", String(reader.size))])
    }
    return (headers, nil)
}

/// Logs a warning when the header block was longer than the reader keeps.
func logHeaderTruncation(_ reader: MessageReader, logger: Logger) {
    guard reader.headerTruncated else { return }
    logger.warning(
        "header block longer than \(reader.headerLimit) bytes: later header fields ignored",
        [("size", String(reader.size))])
}

private func applyVerbose(_ options: DeliverOptions, to logger: inout Logger) {
    guard options.verbose else { return }
    logger.sinks.insert(.stderr)
    logger.minimumLevel = .debug
}

/// Writes all of `text` to `fd`, retrying on EINTR and short writes; other errors end the write.
func writeText(_ text: String, to fd: Int32) {
    let bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
        if written < 0 && errno == EINTR { continue }
        guard written > 0 else { return }
        offset += written
    }
}

/// Exit status used by the SIGALRM handler. Written before the timer is armed
/// and only read in the handler, so the handler does no allocation or locking.
nonisolated(unsafe) private var backstopExitStatus: Int32 = 0

/// Arms SIGALRM to `_exit(exitStatus)` after `seconds`, the hard bound on the run.
func armBackstop(seconds: Double, exitStatus: Int32) {
    backstopExitStatus = exitStatus
    signal(SIGALRM) { _ in _exit(backstopExitStatus) }
    let whole = Int(seconds)
    let micro = Int((seconds - Double(whole)) * 1_000_000)
    var timer = itimerval(
        it_interval: timeval(tv_sec: 0, tv_usec: 0), it_value: timeval(tv_sec: whole, tv_usec: micro))
    setitimer(__itimer_which_t(ITIMER_REAL.rawValue), &timer, nil)
}

/// Cancels the backstop timer once the run has finished its waits.
func disarmBackstop() {
    var timer = itimerval()
    setitimer(__itimer_which_t(ITIMER_REAL.rawValue), &timer, nil)
}
