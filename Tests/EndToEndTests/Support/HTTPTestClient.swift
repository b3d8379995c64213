// A minimal HTTP/1.1 client on a raw TCP socket, so that tests control every
// byte of a request (malformed ones included), can keep one connection open
// for several requests, and can leave a long-poll waiting while they do
// something else.
//
// Limits: responses are framed by Content-Length, by the absence of a body
// (1xx, 204, 304) or by the connection closing. Chunked encoding is not
// supported, because the relay does not use it for long-poll responses.

import Foundation

/// One parsed HTTP response.
struct HTTPTestResponse {
    let status: Int
    let headers: [(name: String, value: String)]
    let body: [UInt8]

    /// Returns the value of the first header field named `name`, compared without case.
    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    var bodyText: String { String(decoding: body, as: UTF8.self) }

    /// Decodes the body as a JSON long-poll response.
    func pollBody() throws -> PollBody {
        do {
            return try JSONDecoder().decode(PollBody.self, from: Data(body))
        } catch {
            throw TestFailure("body is not a long-poll JSON object (\(error)): \(preview(body))")
        }
    }
}

/// The JSON body of a long-poll response.
struct PollBody: Decodable {
    let inbox: String
    let cursor: String
    let gap: Bool
    let messages: [Message]

    struct Message: Decodable {
        let id: String
        let recipient: String
        let from: String?
        let subject: String?
        let messageId: String?
        let size: Int?
        let receivedAt: String
    }
}

/// A client connection to the relay's HTTP listener.
final class HTTPTestClient {
    let socket: TestSocket

    /// Connects to the relay. `receiveBufferBytes` and `sourceAddress` are as in `TestSocket.connectTCP`.
    init(port: UInt16, receiveBufferBytes: Int32? = nil, sourceAddress: String? = nil) throws {
        socket = try TestSocket.connectTCP(
            port: port, receiveBufferBytes: receiveBufferBytes, sourceAddress: sourceAddress)
    }

    /// Sends `GET target HTTP/1.1` with a Host field and any `extraFields`.
    func sendGet(_ target: String, extraFields: [String] = []) throws {
        var head = "GET \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for field in extraFields { head += field + "\r\n" }
        try socket.send(head + "\r\n")
    }

    /// Sends bytes exactly as given, for malformed requests.
    func sendRaw(_ text: String) throws {
        try socket.send(text)
    }

    /// Reads the next response on this connection, waiting at most `seconds`.
    func readResponse(within seconds: TimeInterval) throws -> HTTPTestResponse {
        let deadline = Deadline(seconds: seconds)
        let partial = try readResponseHead(deadline: deadline)
        let status = partial.status
        let headers = partial.headers

        // Frame the body the way RFC 9112 section 6.3 orders it.
        if status < 200 || status == 204 || status == 304 {
            return partial
        }
        if let lengthText = partial.header("Content-Length") {
            guard let length = Int(lengthText), length >= 0 else {
                throw TestFailure("invalid Content-Length: \(lengthText)")
            }
            let body = try socket.read(count: length, deadline: deadline)
            return HTTPTestResponse(status: status, headers: headers, body: body)
        }
        let body = try socket.readToEnd(deadline: deadline)
        return HTTPTestResponse(status: status, headers: headers, body: body)
    }

    /// Reads the status line and header fields of the next response and
    /// leaves its body unread, for event streams that have no end.
    func readResponseHead(deadline: Deadline) throws -> HTTPTestResponse {
        guard let headBytes = try socket.read(until: Array("\r\n\r\n".utf8), deadline: deadline) else {
            throw TestFailure("connection closed before a response head arrived")
        }
        let lines = String(decoding: headBytes, as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ", maxSplits: 2)
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else {
            throw TestFailure("invalid status line: \(lines[0])")
        }
        var headers: [(name: String, value: String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else {
                throw TestFailure("invalid header line: \(line)")
            }
            let name = String(line[..<colon])
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers.append((name, value))
        }
        return HTTPTestResponse(status: status, headers: headers, body: [])
    }

    /// Sends a GET and reads its response.
    func get(_ target: String, extraFields: [String] = [], within seconds: TimeInterval = 10) throws -> HTTPTestResponse {
        try sendGet(target, extraFields: extraFields)
        return try readResponse(within: seconds)
    }

    /// Returns whether the server closes this connection within `seconds`,
    /// discarding anything it sends before that.
    func isClosedByServer(within seconds: TimeInterval) -> Bool {
        do {
            _ = try socket.readToEnd(deadline: Deadline(seconds: seconds))
            return true
        } catch {
            return false
        }
    }
}
