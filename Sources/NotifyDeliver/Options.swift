// Command-line options of notify-deliver and its help text.
//
// Accepted forms: `--name value`, `--name=value`, and `--` to end the options,
// after which every argument is a recipient (one may start with `-`).
//
// Trust boundary: the arguments come from the MTA configuration (master.cf, an
// Exim transport, a .forward file), so they are the admin's or a local user's.
// Recipients given here are validated later, with the other recipient sources.

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
        if optionsEnded || !argument.hasPrefix("-") || argument == "-" {
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

    Tells the local notify-relay that a message was delivered, so browsers
    waiting on the recipient's inbox are notified. Run it from the MTA with
    the message on stdin (Postfix pipe(8) or local(8), an Exim pipe transport).

    Recipients, from the first source that has any:
      1. the RECIPIENT arguments;
      2. the environment: ORIGINAL_RECIPIENT, then RECIPIENT (Postfix local),
         then LOCAL_PART with DOMAIN (Exim);
      3. the headers Delivered-To (topmost), X-Original-To, Envelope-To,
         X-Envelope-To.

    Options:
      --socket PATH      ingest socket of notify-relay (default: $NOTIFY_RELAY_SOCKET,
                         else /run/notify/relay.sock for root,
                         else $XDG_RUNTIME_DIR/notify/relay.sock or
                         $HOME/.cache/notify/relay.sock)
      --timeout SECONDS  bound on the whole run, reading stdin included, in
                         seconds; fractions allowed, greater than 0, at most 300
                         (default: 5)
      --tempfail         exit 75 (EX_TEMPFAIL) when the relay cannot be reached
                         in time, so the MTA retries (default: exit 0)
      --dry-run          print the record as one JSON line on stdout and send nothing
      --verbose          also log to stderr, including debug lines
      --help             print this help and exit
      --version          print the version and exit
      --                 end of options; later arguments are recipients

    Exit status: with stdin from the MTA (not a terminal), 0 on success and on
    every failure, so a notification never bounces mail; with --tempfail, 75
    when the relay cannot be reached in time. From a terminal: 64 for a usage
    error or no recipient, 65 when the relay rejects the record, 69 when the
    relay cannot be reached. Logs go to syslog (facility mail), and to stderr
    as well from a terminal or with --verbose.

    """
