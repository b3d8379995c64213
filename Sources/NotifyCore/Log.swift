// One-line structured logging: `level=info msg="relay started" key=value ...`.
//
// The relay writes these lines to stderr, where systemd's journal or a
// supervisor collects them; notify-deliver sends them to syslog with facility
// mail, as MTA helpers do. Values are quoted when they contain spaces, quotes
// or `=`, and control characters are escaped, so a stranger's subject line
// can never forge a second log line. Mail bodies are never logged.

import CNotifyShim
import Glibc

/// Severity of a log line, in increasing order.
public enum LogLevel: Int, Comparable, Sendable, CaseIterable {
    case debug = 0, info, warning, error

    /// The name used in log lines and in the --log-level option.
    public var name: String {
        switch self {
        case .debug: return "debug"
        case .info: return "info"
        case .warning: return "warning"
        case .error: return "error"
        }
    }

    /// Parses a --log-level value.
    public init?(name: String) {
        guard let level = LogLevel.allCases.first(where: { $0.name == name }) else { return nil }
        self = level
    }

    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool { lhs.rawValue < rhs.rawValue }

    var syslogPriority: Int32 {
        switch self {
        case .debug: return 7  // LOG_DEBUG
        case .info: return 6  // LOG_INFO
        case .warning: return 4  // LOG_WARNING
        case .error: return 3  // LOG_ERR
        }
    }
}

/// Where log lines go.
public struct LogSinks: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public static let stderr = LogSinks(rawValue: 1)
    public static let syslog = LogSinks(rawValue: 2)
}

/// Formats and writes structured log lines. Not thread-safe: each program logs from one thread.
public struct Logger: Sendable {
    public var minimumLevel: LogLevel
    public var sinks: LogSinks

    public init(minimumLevel: LogLevel = .info, sinks: LogSinks = .stderr) {
        self.minimumLevel = minimumLevel
        self.sinks = sinks
    }

    /// Opens the syslog connection with `ident` and facility mail; call once before logging to syslog.
    public static func openSyslog(ident: StaticString) {
        // openlog keeps the pointer; a StaticString lives for the whole process.
        ident.withUTF8Buffer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
                openlog($0, notify_LOG_PID | notify_LOG_NDELAY, notify_LOG_MAIL)
            }
        }
    }

    /// Writes one line if `level` is at or above the minimum.
    public func log(_ level: LogLevel, _ message: String, _ fields: [(String, String)] = []) {
        guard level >= minimumLevel else { return }
        let line = Logger.format(level: level, message: message, fields: fields)
        if sinks.contains(.stderr) {
            let text = line + "\n"
            _ = text.withCString { write(2, $0, strlen($0)) }
        }
        if sinks.contains(.syslog) {
            notify_syslog(level.syslogPriority, line)
        }
    }

    public func debug(_ message: String, _ fields: [(String, String)] = []) { log(.debug, message, fields) }
    public func info(_ message: String, _ fields: [(String, String)] = []) { log(.info, message, fields) }
    public func warning(_ message: String, _ fields: [(String, String)] = []) { log(.warning, message, fields) }
    public func error(_ message: String, _ fields: [(String, String)] = []) { log(.error, message, fields) }

    /// Formats one line: `level=L msg="M" key=value ...`.
    public static func format(level: LogLevel, message: String, fields: [(String, String)]) -> String {
        var line = "level=\(level.name) msg=\(logValue(message))"
        for (key, value) in fields {
            line += " \(key)=\(logValue(value))"
        }
        return line
    }

    /// Quotes a value when needed and escapes control characters, C1 controls
    /// (U+0080-U+009F, NEL among them) included.
    public static func logValue(_ value: String) -> String {
        let needsQuotes =
            value.isEmpty
            || value.unicodeScalars.contains { $0 == " " || $0 == "\"" || $0 == "=" || isControl($0) }
        guard needsQuotes else { return value }
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case _ where isControl(scalar): out += "\\x" + hexByte(UInt8(scalar.value))
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (scalar.value >= 0x7F && scalar.value < 0xA0)
    }
}
