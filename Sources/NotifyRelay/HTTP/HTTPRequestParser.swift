// Parser for HTTP/1.0 and HTTP/1.1 request heads (RFC 9112).
//
// Trust boundary: every byte comes from an unauthenticated client. The parser
// works on a bounded buffer (`maxHeadBytes`), accepts only tokens where the
// grammar asks for tokens, rejects obsolete line folding, control characters
// in field values and bare CR, and reports each violation as a status code
// with a one-line reason. It never traps on input.
//
// Request bodies are not parsed: the relay serves GET, HEAD and OPTIONS only,
// and the connection layer rejects a request that announces a body.

/// A parsed request head.
struct HTTPRequestHead: Equatable {
    var method: String
    /// The target as sent: path and optional query, still percent-encoded.
    var target: String
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    var minorVersion: Int
    /// Header fields with lowercased names, in the order received.
    var fields: [(name: String, value: String)]

    static func == (lhs: HTTPRequestHead, rhs: HTTPRequestHead) -> Bool {
        lhs.method == rhs.method && lhs.target == rhs.target && lhs.minorVersion == rhs.minorVersion
            && lhs.fields.map(\.name) == rhs.fields.map(\.name) && lhs.fields.map(\.value) == rhs.fields.map(\.value)
    }

    /// Returns the value of the first field named `name` (lowercase), if present.
    func field(_ name: String) -> String? {
        fields.first(where: { $0.name == name })?.value
    }

    /// The path part of the target, still percent-encoded.
    var path: Substring {
        guard let question = target.firstIndex(of: "?") else { return target[...] }
        return target[..<question]
    }

    /// The query part of the target without `?`, or nil when there is none.
    var query: Substring? {
        guard let question = target.firstIndex(of: "?") else { return nil }
        return target[target.index(after: question)...]
    }

    /// Whether the connection stays open after the response, from the version and Connection field.
    var keepAlive: Bool {
        let options = (field("connection") ?? "").lowercased().split(separator: ",").map {
            $0.trimmingCharacters(in: " \t")
        }
        if options.contains("close") { return false }
        return minorVersion == 1 || options.contains("keep-alive")
    }
}

/// A request head that cannot be served, with the status to send and why.
struct HTTPParseError: Error, Equatable {
    var status: HTTPStatus
    var reason: String
}

/// The outcome of parsing the buffered bytes.
enum HTTPParseResult: Equatable {
    /// More bytes are needed.
    case incomplete
    /// A whole head, and how many bytes of the buffer it used.
    case complete(HTTPRequestHead, consumed: Int)
    case failure(HTTPParseError)
}

enum HTTPRequestParser {
    /// Largest request head accepted: request line plus header fields.
    static let maxHeadBytes = 8 * 1024
    /// Most header fields accepted in one request.
    static let maxFields = 100

    /// Parses the head at the start of `buffer`.
    static func parse(_ buffer: [UInt8]) -> HTTPParseResult {
        // Ignore empty lines before the request line (RFC 9112 section 2.2).
        var start = 0
        while start < buffer.count, buffer[start] == 0x0D || buffer[start] == 0x0A { start += 1 }

        // The empty lines count toward the limit, so a client cannot grow the buffer by sending only those.
        guard let headEnd = findHeadEnd(buffer, from: start) else {
            return buffer.count > maxHeadBytes ? .failure(oversizeError(buffer, from: start)) : .incomplete
        }
        guard headEnd.contentEnd <= maxHeadBytes else {
            return .failure(oversizeError(buffer, from: start))
        }
        do {
            let head = try parseLines(Array(buffer[start..<headEnd.contentEnd]))
            return .complete(head, consumed: headEnd.consumed)
        } catch {
            return .failure(error)
        }
    }

    /// Finds the blank line ending the head: returns where the head's content
    /// ends and how many bytes the head occupies including the blank line.
    private static func findHeadEnd(_ buffer: [UInt8], from start: Int) -> (contentEnd: Int, consumed: Int)? {
        var i = start
        while i < buffer.count {
            if buffer[i] == 0x0A {
                if i + 1 < buffer.count, buffer[i + 1] == 0x0A { return (i, i + 2) }
                if i + 2 < buffer.count, buffer[i + 1] == 0x0D, buffer[i + 2] == 0x0A { return (i, i + 3) }
            }
            i += 1
        }
        return nil
    }

    /// Builds the error for a head over `maxHeadBytes`: 414 when the request
    /// line alone (from `start`, ended or not) is over the limit, else 431.
    private static func oversizeError(_ buffer: [UInt8], from start: Int) -> HTTPParseError {
        let requestLineEnd = buffer[start...].firstIndex(of: 0x0A) ?? buffer.count
        if requestLineEnd - start > maxHeadBytes {
            return HTTPParseError(status: .uriTooLong, reason: "request line is longer than \(maxHeadBytes) bytes")
        }
        return HTTPParseError(status: .headerFieldsTooLarge, reason: "request head is larger than \(maxHeadBytes) bytes")
    }

    private static func parseLines(_ head: [UInt8]) throws(HTTPParseError) -> HTTPRequestHead {
        var lines: [[UInt8]] = []
        for rawLine in head.split(separator: 0x0A, omittingEmptySubsequences: false) {
            var line = Array(rawLine)
            if line.last == 0x0D { line.removeLast() }
            if line.contains(0x0D) { throw bad("bare CR in the request head") }
            lines.append(line)
        }
        guard let requestLine = lines.first else { throw bad("empty request") }
        var request = try parseRequestLine(requestLine)

        for line in lines.dropFirst() {
            guard request.fields.count < maxFields else {
                throw HTTPParseError(status: .headerFieldsTooLarge, reason: "more than \(maxFields) header fields")
            }
            request.fields.append(try parseField(line))
        }
        if request.minorVersion == 1, request.field("host") == nil {
            throw bad("HTTP/1.1 request without a Host header field")
        }
        if request.fields.filter({ $0.name == "host" }).count > 1 {
            throw bad("more than one Host header field")
        }
        return request
    }

    private static func parseRequestLine(_ line: [UInt8]) throws(HTTPParseError) -> HTTPRequestHead {
        let parts = line.split(separator: 0x20, omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw bad("malformed request line: expected METHOD TARGET HTTP/1.1") }
        guard !parts[0].isEmpty, parts[0].allSatisfy(isTokenByte) else { throw bad("invalid method") }
        let target = parts[1]
        guard !target.isEmpty, target.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw bad("invalid request target")
        }
        guard target.first == UInt8(ascii: "/") || Array(target) == Array("*".utf8) else {
            throw bad("request target must start with '/'")
        }
        let version = Array(parts[2])
        guard version.count == 8, Array(version[0..<5]) == Array("HTTP/".utf8), version[6] == UInt8(ascii: "."),
            isDigit(version[5]), isDigit(version[7])
        else { throw bad("invalid HTTP version") }
        guard version[5] == UInt8(ascii: "1") else {
            throw HTTPParseError(status: .versionNotSupported, reason: "only HTTP/1.0 and HTTP/1.1 are supported")
        }
        return HTTPRequestHead(
            method: String(decoding: parts[0], as: UTF8.self), target: String(decoding: target, as: UTF8.self),
            minorVersion: version[7] == UInt8(ascii: "0") ? 0 : 1, fields: [])
    }

    private static func parseField(_ line: [UInt8]) throws(HTTPParseError) -> (name: String, value: String) {
        if line.first == 0x20 || line.first == 0x09 { throw bad("obsolete line folding is not accepted") }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > 0 else {
            throw bad("malformed header field: expected NAME: VALUE")
        }
        let name = line[..<colon]
        guard name.allSatisfy(isTokenByte) else { throw bad("invalid header field name") }
        var value = line[(colon + 1)...]
        while let first = value.first, first == 0x20 || first == 0x09 { value = value.dropFirst() }
        while let last = value.last, last == 0x20 || last == 0x09 { value = value.dropLast() }
        guard value.allSatisfy({ $0 >= 0x20 && $0 != 0x7F || $0 == 0x09 }) else {
            throw bad("control character in a header field value")
        }
        let lowered = String(decoding: name.map { ($0 >= 0x41 && $0 <= 0x5A) ? $0 + 0x20 : $0 }, as: UTF8.self)
        return (lowered, String(decoding: value, as: UTF8.self))
    }

    private static func bad(_ reason: String) -> HTTPParseError {
        HTTPParseError(status: .badRequest, reason: reason)
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    /// tchar from RFC 9110 section 5.6.2.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), 0x30...0x39: return true
        default: return Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> String {
        var text = self
        while let first = text.first, set.contains(first) { text = text.dropFirst() }
        while let last = text.last, set.contains(last) { text = text.dropLast() }
        return String(text)
    }
}

/// Splits a query string into decoded name/value pairs. `+` is kept as a
/// literal plus, because inbox names may contain it; encode spaces as `%20`.
func parseQuery(_ query: Substring?) -> [(name: String, value: String)]? {
    guard let query, !query.isEmpty else { return [] }
    var pairs: [(name: String, value: String)] = []
    for item in query.split(separator: "&", omittingEmptySubsequences: true) {
        let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard let name = percentDecoded(parts[0]) else { return nil }
        guard let value = parts.count > 1 ? percentDecoded(parts[1]) : "" else { return nil }
        pairs.append((name, value))
    }
    return pairs
}

/// Decodes `%XX` escapes; nil when an escape is malformed or the result is not UTF-8.
func percentDecoded(_ text: Substring) -> String? {
    var out: [UInt8] = []
    var bytes = Array(text.utf8)[...]
    while let byte = bytes.popFirst() {
        guard byte == UInt8(ascii: "%") else {
            out.append(byte)
            continue
        }
        guard bytes.count >= 2, let high = hexDigit(bytes.popFirst()!), let low = hexDigit(bytes.popFirst()!) else {
            return nil
        }
        out.append(high << 4 | low)
    }
    return String(validating: out, as: UTF8.self)
}

private func hexDigit(_ byte: UInt8) -> UInt8? {
    switch byte {
    case 0x30...0x39: return byte - 0x30
    case 0x41...0x46: return byte - 0x41 + 10
    case 0x61...0x66: return byte - 0x61 + 10
    default: return nil
    }
}
