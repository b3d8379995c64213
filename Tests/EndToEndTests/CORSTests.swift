// Cross-origin resource sharing of the built relay, end to end. With
// --cors-origin, every response (events, timeouts, errors, the 503 of the
// connection limit, an event stream's head) lets the listed origin read it
// and exposes Notify-Cursor. A preflight OPTIONS allows the request headers
// EventSource sends. Unlisted origins get nothing, and CORS is off by default.

import Foundation
import XCTest

final class CORSTests: RelayTestCase {
    let origin = "http://app.test"

    /// Checks the three fields every response carries for an allowed origin.
    func assertAllowed(_ response: HTTPTestResponse, origin: String, _ context: String) {
        XCTAssertEqual(response.header("Access-Control-Allow-Origin"), origin, context)
        XCTAssertTrue(response.header("Vary")?.contains("Origin") ?? false, "\(context): Vary is \(response.header("Vary") ?? "missing")")
        XCTAssertTrue(
            response.header("Access-Control-Expose-Headers")?.contains("Notify-Cursor") ?? false,
            "\(context): Access-Control-Expose-Headers is \(response.header("Access-Control-Expose-Headers") ?? "missing")")
    }

    func testHeadersOnEveryResponseKind() throws {
        let relay = try startRelay(extraArguments: ["--cors-origin", origin])
        let before = try currentCursor(inbox: "test", relay: relay)
        _ = try publish(inbox: "test", subject: "cors", to: relay)

        let cases: [(target: String, status: Int)] = [
            ("/test?since=\(before)&format=json&timeout=5", 200),
            ("/test?since=\(before)&format=text&timeout=5", 200),
            ("/other?timeout=0", 204),
            ("/a%2Fb?timeout=0", 400),
            ("/test?timeout=soon", 400),
            ("/no/such/file", 404),
        ]
        for (target, status) in cases {
            let client = try HTTPTestClient(port: relay.httpPort)
            let response = try client.get(target, extraFields: ["Origin: \(origin)"])
            XCTAssertEqual(response.status, status, "\(target): \(response.bodyText)")
            assertAllowed(response, origin: origin, target)
        }

        // The head of an event stream carries the same fields.
        let stream = try EventStreamClient(port: relay.httpPort, target: "/test?format=sse", extraFields: ["Origin: \(origin)"])
        let head = try stream.readHead()
        XCTAssertEqual(head.status, 200)
        assertAllowed(head, origin: origin, "event stream head")
    }

    func testConnectionLimit503AllowsAnyOrigin() throws {
        let relay = try startRelay(extraArguments: ["--max-connections", "1", "--cors-origin", "*"])

        // The first connection stays open after its response (keep-alive) and takes the only slot.
        let first = try HTTPTestClient(port: relay.httpPort)
        XCTAssertEqual(try first.get("/test?timeout=0", extraFields: ["Origin: \(origin)"]).status, 204)

        // The relay responds on the second connection before reading a request from it.
        let second = try HTTPTestClient(port: relay.httpPort)
        let response = try second.readResponse(within: 10)
        XCTAssertEqual(response.status, 503, response.bodyText)
        XCTAssertNotNil(response.header("Retry-After"))
        assertAllowed(response, origin: "*", "503 at the connection limit")
        withExtendedLifetime(first) {}
    }

    func testPreflightAllowsStreamHeaders() throws {
        let relay = try startRelay(extraArguments: ["--cors-origin", origin])
        let client = try HTTPTestClient(port: relay.httpPort)
        try client.sendRaw(
            "OPTIONS /test HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: \(origin)\r\n"
                + "Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: last-event-id\r\n\r\n")
        let response = try client.readResponse(within: 10)
        XCTAssertEqual(response.status, 204, response.bodyText)
        assertAllowed(response, origin: origin, "preflight")

        let methods = response.header("Access-Control-Allow-Methods") ?? ""
        XCTAssertTrue(methods.contains("GET"), "Access-Control-Allow-Methods: \(methods)")
        let headers = (response.header("Access-Control-Allow-Headers") ?? "").lowercased()
        XCTAssertTrue(headers.contains("last-event-id"), "Access-Control-Allow-Headers: \(headers)")
        XCTAssertTrue(headers.contains("cache-control"), "Access-Control-Allow-Headers: \(headers)")
        let maxAge = response.header("Access-Control-Max-Age").flatMap { Int($0) }
        XCTAssertNotNil(maxAge, "Access-Control-Max-Age missing or not a number")
        XCTAssertGreaterThan(maxAge ?? 0, 0)
    }

    func testUnlistedOriginGetsVaryOnly() throws {
        let relay = try startRelay(extraArguments: ["--cors-origin", origin])
        let unlisted = "http://elsewhere.test"

        let response = try HTTPTestClient(port: relay.httpPort).get("/test?timeout=0", extraFields: ["Origin: \(unlisted)"])
        XCTAssertEqual(response.status, 204)
        XCTAssertTrue(response.header("Vary")?.contains("Origin") ?? false, "Vary is \(response.header("Vary") ?? "missing")")
        XCTAssertNil(response.header("Access-Control-Allow-Origin"))

        let client = try HTTPTestClient(port: relay.httpPort)
        try client.sendRaw(
            "OPTIONS /test HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: \(unlisted)\r\nAccess-Control-Request-Method: GET\r\n\r\n")
        let preflight = try client.readResponse(within: 10)
        XCTAssertNil(preflight.header("Access-Control-Allow-Origin"))
        XCTAssertNil(preflight.header("Access-Control-Allow-Methods"))
    }

    func testOffByDefault() throws {
        let relay = try startRelay()
        let response = try HTTPTestClient(port: relay.httpPort).get("/test?timeout=0", extraFields: ["Origin: \(origin)"])
        XCTAssertEqual(response.status, 204)

        let client = try HTTPTestClient(port: relay.httpPort)
        try client.sendRaw(
            "OPTIONS /test HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: \(origin)\r\nAccess-Control-Request-Method: GET\r\n\r\n")
        let preflight = try client.readResponse(within: 10)
        for (name, answer) in [("GET", response), ("OPTIONS", preflight)] {
            let corsFields = answer.headers.filter { $0.name.lowercased().hasPrefix("access-control-") }
            XCTAssertTrue(corsFields.isEmpty, "\(name) without --cors-origin: \(corsFields)")
        }
    }
}
