// Client steps for the relay's admin listener (--admin-listen): finding its
// port in the start-up log line, POST requests with a body, and reading
// /metrics as Prometheus text.
//
// The metrics parser is strict on purpose: every sample line must read
// `name value` or `name{labels} value` with an integer value, because the
// relay only exports counters and gauges of whole numbers. Lines that do not
// parse are kept, so a test can show them in its failure message.

import Foundation
import XCTest

extension RelayProcess {
    /// Returns the value of `name=` in the `relay started` log line, without quotes.
    func startedLogField(_ name: String) -> String? {
        guard let line = log.split(separator: "\n").first(where: { $0.contains("msg=\"relay started\"") }) else {
            return nil
        }
        return logFieldValue(name, inLine: String(line))
    }

    /// Parses the admin port from `admin=127.0.0.1:PORT` in the start-up log
    /// line; call it after `waitUntilStarted`.
    func adminPort() throws -> UInt16 {
        guard let address = startedLogField("admin") else {
            throw TestFailure("no admin= field in the start-up line; log:\n\(log)")
        }
        guard address.hasPrefix("127.0.0.1:"), let colon = address.lastIndex(of: ":"),
            let port = UInt16(address[address.index(after: colon)...]), port != 0
        else {
            throw TestFailure("admin= field is not 127.0.0.1:PORT: \(address)")
        }
        return port
    }
}

/// Returns the value of `name=` in one `key=value` log line, with the quotes
/// of a quoted value removed, or nil when the field is absent.
func logFieldValue(_ name: String, inLine line: String) -> String? {
    guard let start = line.range(of: " \(name)=") else { return nil }
    let rest = line[start.upperBound...]
    if rest.first == "\"" {
        let quoted = rest.dropFirst()
        guard let end = quoted.firstIndex(of: "\"") else { return nil }
        return String(quoted[..<end])
    }
    return String(rest.prefix { $0 != " " })
}

extension HTTPTestClient {
    /// Sends `POST target` with a Content-Length body, or with no
    /// Content-Length field at all when `body` is nil.
    func sendPost(_ target: String, body: [UInt8]?, extraFields: [String] = []) throws {
        var head = "POST \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for field in extraFields { head += field + "\r\n" }
        if let body { head += "Content-Length: \(body.count)\r\n" }
        try socket.send(Array((head + "\r\n").utf8) + (body ?? []))
    }

    /// Sends a POST and reads its response.
    func post(_ target: String, body: String?, within seconds: TimeInterval = 10) throws -> HTTPTestResponse {
        try sendPost(target, body: body.map { Array($0.utf8) })
        return try readResponse(within: seconds)
    }
}

/// The JSON body of a successful POST /publish/<inbox>.
struct PublishBody: Decodable {
    let inbox: String
    let cursor: String
}

/// One /metrics document: its samples by series, and what did not parse.
struct MetricsSnapshot {
    /// Sample values keyed by series as written: `name` or `name{labels}`.
    private(set) var samples: [String: Int] = [:]
    /// Metric names announced by a `# HELP` line.
    private(set) var helpNames: Set<String> = []
    /// Metric types announced by `# TYPE` lines, by metric name.
    private(set) var types: [String: String] = [:]
    /// Lines that are neither a HELP or TYPE comment nor a valid sample.
    private(set) var invalidLines: [String] = []
    /// Sample lines whose metric had no `# TYPE` line before them.
    private(set) var untypedSamples: [String] = []
    let text: String

    init(text: String) {
        self.text = text
        let sampleLine = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^{}]*\})? (0|-?[1-9][0-9]*)$/
        let labelList = /^[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*")*$/
        let comment = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/

        for line in text.split(separator: "\n", omittingEmptySubsequences: false) where !line.isEmpty {
            if let match = line.wholeMatch(of: comment) {
                if match.1 == "HELP" {
                    helpNames.insert(String(match.2))
                } else if ["counter", "gauge"].contains(match.3) {
                    types[String(match.2)] = String(match.3)
                } else {
                    invalidLines.append(String(line))
                }
                continue
            }
            guard let match = line.wholeMatch(of: sampleLine), let value = Int(match.3) else {
                invalidLines.append(String(line))
                continue
            }
            if let labels = match.2, labels.dropFirst().dropLast().wholeMatch(of: labelList) == nil {
                invalidLines.append(String(line))
                continue
            }
            if types[String(match.1)] == nil { untypedSamples.append(String(line)) }
            samples[String(match.1) + String(match.2 ?? "")] = value
        }
    }

    /// Returns the value of `series` (`name` or `name{labels}` exactly as the relay writes it).
    subscript(_ series: String) -> Int? { samples[series] }
}

extension RelayTestCase {
    /// Reads GET /metrics on a new admin connection and checks its status
    /// and content type.
    func fetchMetrics(adminPort: UInt16) throws -> MetricsSnapshot {
        let client = try HTTPTestClient(port: adminPort)
        return try fetchMetrics(on: client)
    }

    /// Reads GET /metrics on an open admin connection.
    func fetchMetrics(on client: HTTPTestClient) throws -> MetricsSnapshot {
        let response = try client.get("/metrics")
        guard response.status == 200 else {
            throw TestFailure("GET /metrics returned \(response.status): \(response.bodyText)")
        }
        return MetricsSnapshot(text: response.bodyText)
    }

    /// Polls /metrics until `series` has the value `expected`, for up to
    /// `seconds`, and returns the last snapshot. A failure names the last value seen.
    @discardableResult
    func waitForMetric(
        _ series: String, toEqual expected: Int, adminPort: UInt16, within seconds: TimeInterval = 5,
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> MetricsSnapshot {
        var last: MetricsSnapshot? = nil
        var lastError: Error? = nil
        let reached = waitUntil(seconds: seconds) {
            do {
                last = try fetchMetrics(adminPort: adminPort)
                return last?[series] == expected
            } catch {
                lastError = error
                return false
            }
        }
        guard let snapshot = last else {
            throw lastError ?? TestFailure("no /metrics response within \(seconds) s")
        }
        XCTAssertTrue(
            reached, "\(series) is \(snapshot[series].map(String.init) ?? "absent"), expected \(expected) within \(seconds) s",
            file: file, line: line)
        return snapshot
    }
}
