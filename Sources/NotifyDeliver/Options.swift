// Command-line options of notify-deliver and its help text.
//
// Accepted forms: `--name value`, `--name=value`, and `--` to end the options,
// after which every argument is a recipient (one may start with `-`) up to an
// `--exec`. `--exec PROGRAM` ends the command line of notify-deliver: PROGRAM
// and every argument after it form the delivery program's command line.
//
// Trust boundary: the arguments come from the MTA configuration (master.cf, an
// Exim transport, a .forward file), so they are the admin's or a local user's.
// Recipients given here are validated later, with the other recipient sources.

import NotifyCore

/// The settings of one notify-deliver run.
public struct DeliverOptions: Equatable, Sendable {
    /// Ingest socket path; nil means `IngestSocketPath.resolve`.
    public var socketPath: String? = nil
    /// Bound on the whole run, in seconds, counted from process start.
    public var timeoutSeconds: Double = DeliverOptions.defaultTimeoutSeconds
    /// Exit 75 (EX_TEMPFAIL) when the relay cannot be reached in time.
    public var tempfail = false
    /// Print the record on stdout and send nothing.
    public var dryRun = false
    /// Log to stderr as well, at debug level.
    public var verbose = false
    /// Recipients given as arguments, in order.
    public var recipients: [String] = []
    /// Sub-address delimiters (--subaddress-delimiter), cut from recipients before they are sent.
    public var subaddressDelimiters: [UInt8] = []
    /// The delivery program and its arguments (--exec), or nil when notify-deliver
    /// only notifies. In the partial options of a usage error it is empty when
    /// the command line contains `--exec` but could not be read up to its program.
    public var execArguments: [String]? = nil

    /// Default for --timeout, in seconds.
    public static let defaultTimeoutSeconds = 5.0
    /// Largest --timeout accepted, in seconds. Postfix's default command time
    /// limit is 1000 s, and a notification that takes minutes is of no use.
    public static let maxTimeoutSeconds = 300.0

    public init() {}
}

/// The action the command line requests.
public enum CommandLineRequest: Equatable, Sendable {
    case deliver(DeliverOptions)
    case help
    case version
}

/// An invalid command line, with the options read before the error, so that
/// --verbose and --tempfail still apply to how the error is reported.
public struct UsageError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public var partialOptions: DeliverOptions
    public var description: String { message }
}

/// The version printed by --version.
public let notifyDeliverVersion = "0.1.0"

/// Parses the arguments after the program name.
public func parseCommandLine(_ arguments: [String]) -> Result<CommandLineRequest, UsageError> {
    var options = DeliverOptions()
    var index = 0
    var optionsEnded = false

    while index < arguments.count {
        let argument = arguments[index]
        index += 1
        let isExec = argument == "--exec" || argument.hasPrefix("--exec=")
        if !isExec && (optionsEnded || !argument.hasPrefix("-") || argument == "-") {
            options.recipients.append(argument)
            continue
        }
        if argument == "--" {
            optionsEnded = true
            continue
        }

        // Split `--name=value`; a value-taking option otherwise uses the next argument.
        var name = argument
        var inlineValue: String? = nil
        if let equals = argument.firstIndex(of: "=") {
            name = String(argument[..<equals])
            inlineValue = String(argument[argument.index(after: equals)...])
        }
        func fail(_ message: String) -> Result<CommandLineRequest, UsageError> {
            // Flags after the bad argument still decide how the error is reported.
            var partial = options
            let flags = arguments[index...].prefix { $0 != "--" }
            partial.verbose = partial.verbose || flags.contains("--verbose")
            partial.tempfail = partial.tempfail || flags.contains("--tempfail")
            // With --exec anywhere, the caller must not exit 0: that would tell
            // the MTA the message was delivered when no program stored it.
            if partial.execArguments == nil, arguments.contains(where: { $0 == "--exec" || $0.hasPrefix("--exec=") }) {
                partial.execArguments = []
            }
            return .failure(UsageError(message: message, partialOptions: partial))
        }
        func takeValue() -> String? {
            if let inlineValue { return inlineValue }
            guard index < arguments.count else { return nil }
            index += 1
            return arguments[index - 1]
        }

        switch name {
        case "--help", "-h":
            return .success(.help)
        case "--version":
            return .success(.version)
        case "--tempfail", "--dry-run", "--verbose":
            guard inlineValue == nil else { return fail("option \(name) takes no value; remove \"=\(inlineValue!)\"") }
            if name == "--tempfail" { options.tempfail = true }
            if name == "--dry-run" { options.dryRun = true }
            if name == "--verbose" { options.verbose = true }
        case "--socket":
            guard let value = takeValue(), !value.isEmpty else {
                return fail("missing value for --socket: expected the path of the relay's ingest socket")
            }
            options.socketPath = value
        case "--timeout":
            guard let value = takeValue() else {
                return fail("missing value for --timeout: expected seconds greater than 0, such as 5 or 0.5")
            }
            guard let seconds = parseTimeout(value) else {
                return fail(
                    "invalid value \(quoted(value)) for --timeout: expected seconds greater than 0 "
                        + "and at most \(Int(DeliverOptions.maxTimeoutSeconds)), such as 5 or 0.5")
            }
            options.timeoutSeconds = seconds
        case "--subaddress-delimiter":
            guard let value = takeValue() else {
                return fail("missing value for --subaddress-delimiter: expected one or more characters, such as + or +-")
            }
            guard let delimiters = InboxPolicy.parseSubaddressDelimiters(value) else {
                return fail(
                    "invalid value \(quoted(value)) for --subaddress-delimiter: expected characters from "
                        + "\(InboxPolicy.allowedSubaddressDelimiters), such as + or +-")
            }
            options.subaddressDelimiters = delimiters
        case "--exec":
            guard let program = takeValue(), !program.isEmpty else {
                return fail("missing value for --exec: expected the delivery program, then its arguments")
            }
            options.execArguments = [program] + arguments[index...]
            return .success(.deliver(options))
        default:
            return fail("unknown option \(quoted(name)); run notify-deliver --help for the list of options")
        }
    }
    return .success(.deliver(options))
}

/// Parses a decimal number of seconds in (0, maxTimeoutSeconds]. Only digits
/// and one dot are accepted, so forms like "inf", "nan", "1e3" or "0x10" fail.
func parseTimeout(_ text: String) -> Double? {
    let allowed = text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: ".") }
    guard allowed, text.utf8.filter({ $0 == UInt8(ascii: ".") }).count <= 1, text.utf8.count <= 20 else { return nil }
    guard let seconds = Double(text), seconds > 0, seconds <= DeliverOptions.maxTimeoutSeconds else { return nil }
    return seconds
}

private func quoted(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars.prefix(80) {
        if scalar.value < 0x20 || scalar.value == 0x7F {
            out += "?"
        } else {
            out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

/// The text printed by --help.
public let helpText = """
    Usage: notify-deliver [options] [RECIPIENT...]
           notify-deliver [options] [RECIPIENT...] --exec PROGRAM [ARGUMENT...]

    Tells the local notify-relay that a message was delivered, so browsers
    waiting on the recipient's inbox are notified. Run it from the MTA with
    the message on stdin (Postfix pipe(8) or local(8), an Exim pipe transport).

    With --exec, notify-deliver wraps the program that stores the message,
    such as /usr/lib/dovecot/dovecot-lda or procmail. It copies stdin to
    PROGRAM's stdin unchanged, a leading mbox "From " line included, waits
    for PROGRAM and exits with its status. The relay is notified only when
    PROGRAM exits 0, and a failed notification never changes the status.

    Recipients, from the first source that has any:
      1. the RECIPIENT arguments;
      2. the environment: ORIGINAL_RECIPIENT, then RECIPIENT (Postfix local),
         then LOCAL_PART with DOMAIN (Exim);
      3. the headers Delivered-To (topmost), X-Original-To, Envelope-To,
         X-Envelope-To.
    Recipients are sent normalized: ASCII letters lowercased, sub-addresses
    cut (see --subaddress-delimiter), Unicode domains as xn-- A-labels.

    Options:
      --socket PATH      ingest socket of notify-relay (default: $NOTIFY_RELAY_SOCKET,
                         else /run/notify/relay.sock for root,
                         else $XDG_RUNTIME_DIR/notify/relay.sock or
                         $HOME/.cache/notify/relay.sock)
      --timeout SECONDS  bound on the whole run, reading stdin included, in
                         seconds; fractions allowed, greater than 0, at most 300
                         (default: 5). With --exec it bounds only the
                         notification, which starts when PROGRAM has exited.
      --tempfail         exit 75 (EX_TEMPFAIL) when the relay cannot be reached
                         in time, so the MTA retries (default: exit 0); ignored
                         with --exec, where a retry would deliver the message twice
      --subaddress-delimiter CHARS
                         cut a recipient's local part at the first of CHARS, so
                         user+tag@example.com notifies user@example.com; as
                         Postfix's recipient_delimiter, e.g. + or +- (default:
                         none). Give notify-relay the same setting.
      --dry-run          print the record as one JSON line on stdout and send nothing
      --verbose          also log to stderr, including debug lines
      --help             print this help and exit
      --version          print the version and exit
      --                 end of options; later arguments are recipients, up
                         to --exec
      --exec PROGRAM [ARGUMENT...]
                         run PROGRAM with these arguments to deliver the
                         message; must come last. PROGRAM without a "/" is
                         looked up in $PATH. It runs without a shell, with
                         notify-deliver's environment, stdout and stderr.

    Exit status: with stdin from the MTA (not a terminal), 0 on success and on
    every failure, so a notification never bounces mail; with --tempfail, 75
    when the relay cannot be reached in time. From a terminal: 64 for a usage
    error or no recipient, 65 when the relay rejects the record, 69 when the
    relay cannot be reached. Logs go to syslog (facility mail), and to stderr
    as well from a terminal or with --verbose.

    With --exec the status is PROGRAM's: its exit code as it is, or 75
    (EX_TEMPFAIL) when a signal killed it, because the message may be stored
    partly or not at all and 75 makes Postfix and Exim retry it later. When
    PROGRAM cannot be started (not found, not executable), or the command
    line is invalid, the status is 75 as well, so the MTA keeps the message
    in its queue instead of losing it (64 from a terminal). Once PROGRAM runs,
    notify-deliver reads stdin to the end even if PROGRAM stops reading, so
    the MTA's write never fails; nothing bounds PROGRAM's run time but the
    MTA's own limit (Postfix: command_time_limit).

    """
