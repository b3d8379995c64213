// Serialization of HTTP/1.1 responses. Every response carries a
// Content-Length (or none for 204/304), so keep-alive framing never depends on
// closing the connection.

/// The status codes the relay sends.
enum HTTPStatus: Int {
    case ok = 200
    case noContent = 204
    case badRequest = 400
    case notFound = 404
    case methodNotAllowed = 405
    case requestTimeout = 408
    case payloadTooLarge = 413
    case uriTooLong = 414
    case tooManyRequests = 429
    case headerFieldsTooLarge = 431
    case internalServerError = 500
    case notImplemented = 501
    case serviceUnavailable = 503
    case versionNotSupported = 505

    var reasonPhrase: String {
        switch self {
        case .ok: return "OK"
        case .noContent: return "No Content"
        case .badRequest: return "Bad Request"
        case .notFound: return "Not Found"
        case .methodNotAllowed: return "Method Not Allowed"
        case .requestTimeout: return "Request Timeout"
        case .payloadTooLarge: return "Content Too Large"
        case .uriTooLong: return "URI Too Long"
        case .tooManyRequests: return "Too Many Requests"
        case .headerFieldsTooLarge: return "Request Header Fields Too Large"
        case .internalServerError: return "Internal Server Error"
        case .notImplemented: return "Not Implemented"
        case .serviceUnavailable: return "Service Unavailable"
        case .versionNotSupported: return "HTTP Version Not Supported"
        }
    }
}

/// A response ready to be serialized.
struct HTTPResponse {
    var status: HTTPStatus
    var fields: [(String, String)] = []
    var body: [UInt8] = []
    /// Mail events carried in the body, for the relay's counters.
    var eventCount = 0

    init(status: HTTPStatus, fields: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.fields = fields
        self.body = body
    }

    /// A response with a one-line plain-text body, as sent for every error.
    static func text(_ status: HTTPStatus, _ line: String, fields: [(String, String)] = []) -> HTTPResponse {
        HTTPResponse(
            status: status, fields: [("Content-Type", "text/plain; charset=utf-8")] + fields,
            body: Array((line + "\n").utf8))
    }

    /// The bytes on the wire. `includeBody` is false for HEAD requests, which
    /// still announce the Content-Length the GET would have.
    func serialized(keepAlive: Bool, includeBody: Bool = true) -> [UInt8] {
        var head = "HTTP/1.1 \(status.rawValue) \(status.reasonPhrase)\r\n"
        for (name, value) in fields {
            head += "\(name): \(value)\r\n"
        }
        if status != .noContent {
            head += "Content-Length: \(body.count)\r\n"
        }
        head += keepAlive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n"
        var bytes = Array(head.utf8)
        if includeBody && status != .noContent {
            bytes.append(contentsOf: body)
        }
        return bytes
    }
}
