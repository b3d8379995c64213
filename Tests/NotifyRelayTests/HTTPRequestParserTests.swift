// Table tests for the HTTP request head parser, the query string splitter and
// percent-decoding: valid heads, incomplete ones, and every malformed or
// oversized head with the status the relay returns.

import XCTest

@testable import NotifyRelay

final class HTTPRequestParserTests: XCTestCase {
    // MARK: - Helpers

    private func parse(_ text: String) -> HTTPParseResult {
        HTTPRequestParser.parse(Array(text.utf8))
    }

    private func head(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> HTTPRequestHead? {
        guard case .complete(let head, _) = parse(text) else {
            XCTFail("expected a complete head for \(text.debugDescription), got \(parse(text))", file: file, line: line)
            return nil
        }
        return head
    }

    private func consumed(_ text: String) -> Int? {
        guard case .complete(_, let consumed) = parse(text) else { return nil }
        return consumed
    }

    private func status(_ bytes: [UInt8]) -> HTTPStatus? {
        guard case .failure(let error) = HTTPRequestParser.parse(bytes) else { return nil }
        return error.status
    }

    private func status(_ text: String) -> HTTPStatus? {
        status(Array(text.utf8))
    }

    // MARK: - Valid heads

    func testGetWithQuery() {
        let parsed = head("GET /test?since=abc-1&timeout=5 HTTP/1.1\r\nHost: relay\r\n\r\n")
        XCTAssertEqual(parsed?.method, "GET")
        XCTAssertEqual(parsed?.target, "/test?since=abc-1&timeout=5")
        XCTAssertEqual(parsed?.path, "/test")
        XCTAssertEqual(parsed?.query, "since=abc-1&timeout=5")
        XCTAssertEqual(parsed?.minorVersion, 1)
        XCTAssertEqual(parsed?.field("host"), "relay")
    }

    func testPathWithoutQuery() {
        let parsed = head("GET /test HTTP/1.1\r\nHost: relay\r\n\r\n")
        XCTAssertEqual(parsed?.path, "/test")
        XCTAssertNil(parsed?.query)
    }

    func testEmptyQuery() {
        let parsed = head("GET /test? HTTP/1.1\r\nHost: relay\r\n\r\n")
        XCTAssertEqual(parsed?.path, "/test")
        XCTAssertEqual(parsed?.query, "")
    }

    func testHeadMethod() {
        let parsed = head("HEAD /test HTTP/1.1\r\nHost: relay\r\n\r\n")
        XCTAssertEqual(parsed?.method, "HEAD")
        XCTAssertEqual(parsed?.target, "/test")
    }

    func testOptionsAsterisk() {
        let parsed = head("OPTIONS * HTTP/1.1\r\nHost: relay\r\n\r\n")
        XCTAssertEqual(parsed?.method, "OPTIONS")
        XCTAssertEqual(parsed?.target, "*")
    }

    func testHTTP10WithoutHost() {
        let parsed = head("GET /test HTTP/1.0\r\n\r\n")
        XCTAssertEqual(parsed?.minorVersion, 0)
        XCTAssertEqual(parsed?.fields.count, 0)
    }

    func testLineEndings() {
        let cases: [(text: String, consumed: Int)] = [
            ("GET / HTTP/1.0\r\n\r\n", 18),
            ("GET / HTTP/1.0\n\n", 16),
            ("GET / HTTP/1.0\r\n\n", 17),
            ("GET / HTTP/1.0\n\r\n", 17),
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27),
            ("GET / HTTP/1.1\nHost: a\n\n", 24),
            ("GET / HTTP/1.1\r\nHost: a\nAccept: */*\r\n\r\n", 39),
        ]
        for item in cases {
            XCTAssertEqual(consumed(item.text), item.consumed, "consumed for \(item.text.debugDescription)")
        }
    }

    func testBareLFFieldValues() {
        let parsed = head("GET / HTTP/1.1\nHost: a\nAccept: */*\n\n")
        XCTAssertEqual(parsed?.field("host"), "a")
        XCTAssertEqual(parsed?.field("accept"), "*/*")
    }

    func testLeadingEmptyLinesIgnored() {
        let text = "\r\n\r\nGET /test HTTP/1.1\r\nHost: a\r\n\r\n"
        XCTAssertEqual(head(text)?.target, "/test")
        XCTAssertEqual(consumed(text), text.utf8.count)
        XCTAssertEqual(consumed("\n\nGET / HTTP/1.0\n\n"), 18)
    }

    func testFieldNamesFolded() {
        let parsed = head("GET / HTTP/1.1\r\nHOST: a\r\nX-Custom-Name: b\r\nlast-event-id: c\r\n\r\n")
        XCTAssertEqual(parsed?.fields.map(\.name), ["host", "x-custom-name", "last-event-id"])
        XCTAssertEqual(parsed?.field("x-custom-name"), "b")
        XCTAssertNil(parsed?.field("X-Custom-Name"))
    }

    func testFieldValuesTrimmed() {
        let parsed = head("GET / HTTP/1.1\r\nHost:   a  \r\nX-Tab:\t b \t\r\nX-Empty:\r\nX-Inner: one  two\r\n\r\n")
        XCTAssertEqual(parsed?.field("host"), "a")
        XCTAssertEqual(parsed?.field("x-tab"), "b")
        XCTAssertEqual(parsed?.field("x-empty"), "")
        XCTAssertEqual(parsed?.field("x-inner"), "one  two")
    }

    func testFieldsKeepOrderAndRepeats() {
        let parsed = head("GET / HTTP/1.1\r\nHost: a\r\nAccept: one\r\nAccept: two\r\n\r\n")
        XCTAssertEqual(parsed?.fields.map(\.value), ["a", "one", "two"])
        XCTAssertEqual(parsed?.field("accept"), "one")
    }

    func testNonASCIIValueKept() {
        let parsed = head("GET / HTTP/1.1\r\nHost: a\r\nX-Name: Jürgen\r\n\r\n")
        XCTAssertEqual(parsed?.field("x-name"), "Jürgen")
    }

    func testPipelinedSecondRequest() {
        let first = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        let second = "GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
        let buffer = Array((first + second).utf8)
        guard case .complete(let head, let consumed) = HTTPRequestParser.parse(buffer) else {
            return XCTFail("expected a complete head")
        }
        XCTAssertEqual(head.target, "/a")
        XCTAssertEqual(consumed, first.utf8.count)
        guard case .complete(let next, let nextConsumed) = HTTPRequestParser.parse(Array(buffer[consumed...])) else {
            return XCTFail("expected a complete second head")
        }
        XCTAssertEqual(next.target, "/b")
        XCTAssertEqual(nextConsumed, second.utf8.count)
    }

    func testHeadAtExactLimit() {
        // The head is measured without the line ending of its last field and the blank line.
        let start = "GET / HTTP/1.1\nHost: a\nX-Pad: "
        let padding = String(repeating: "p", count: HTTPRequestParser.maxHeadBytes - start.utf8.count)
        XCTAssertEqual(head(start + padding + "\n\n")?.field("x-pad")?.utf8.count, padding.utf8.count)
        XCTAssertEqual(status(start + padding + "p\n\n"), .headerFieldsTooLarge)
    }

    func testHundredFieldsAccepted() {
        var text = "GET / HTTP/1.1\r\nHost: a\r\n"
        for index in 1..<HTTPRequestParser.maxFields { text += "X-\(index): v\r\n" }
        XCTAssertEqual(head(text + "\r\n")?.fields.count, HTTPRequestParser.maxFields)
    }

    // MARK: - Incomplete heads

    func testIncompleteHeads() {
        let cases = [
            "",
            "\r\n",
            "\r\n\r\n",
            "GET",
            "GET / HTTP/1.1",
            "GET / HTTP/1.1\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n\r",
            "GET / HTTP/1.1\nHost: a\n",
        ]
        for text in cases {
            XCTAssertEqual(parse(text), .incomplete, "parse(\(text.debugDescription))")
        }
    }

    // MARK: - Malformed heads

    func testMalformedHeads() {
        let cases: [(text: String, status: HTTPStatus)] = [
            // Host is required on HTTP/1.1 only.
            ("GET / HTTP/1.1\r\n\r\n", .badRequest),
            ("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", .badRequest),
            // Method must be a token.
            ("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", .badRequest),
            ("GÉT / HTTP/1.1\r\nHost: a\r\n\r\n", .badRequest),
            (" GET / HTTP/1.1\r\nHost: a\r\n\r\n", .badRequest),
            // Request line shape.
            ("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", .badRequest),
            ("GET / HTTP/1.1 extra\r\nHost: a\r\n\r\n", .badRequest),
            ("GET /\r\nHost: a\r\n\r\n", .badRequest),
            ("GET\r\n\r\n", .badRequest),
            // Target must start with '/' or be '*'.
            ("GET test HTTP/1.1\r\nHost: a\r\n\r\n", .badRequest),
            ("GET http://relay/test HTTP/1.1\r\nHost: a\r\n\r\n", .badRequest),
            ("GET ** HTTP/1.1\r\nHost: a\r\n\r\n", .badRequest),
            ("GET /a\u{7F} HTTP/1.1\r\nHost: a\r\n\r\n", .badRequest),
            ("GET /ü HTTP/1.1\r\nHost: a\r\n\r\n", .badRequest),
            // Version syntax.
            ("GET / HTTP/1\r\nHost: a\r\n\r\n", .badRequest),
            ("GET / HTTP/1.1.1\r\nHost: a\r\n\r\n", .badRequest),
            ("GET / http/1.1\r\nHost: a\r\n\r\n", .badRequest),
            ("GET / HTTP/x.1\r\nHost: a\r\n\r\n", .badRequest),
            ("GET / HTTP/1,1\r\nHost: a\r\n\r\n", .badRequest),
            ("GET / HTTP/11\r\nHost: a\r\n\r\n", .badRequest),
            // Well-formed versions other than 1.x.
            ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", .versionNotSupported),
            ("GET / HTTP/0.9\r\nHost: a\r\n\r\n", .versionNotSupported),
            ("GET / HTTP/3.0\r\nHost: a\r\n\r\n", .versionNotSupported),
            // Header field syntax.
            ("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", .badRequest),
            ("GET / HTTP/1.1\r\nHost: a\r\n\tfolded\r\n\r\n", .badRequest),
            ("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", .badRequest),
            ("GET / HTTP/1.1\r\nHost: a\r\n: empty name\r\n\r\n", .badRequest),
            ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", .badRequest),
            ("GET / HTTP/1.1\r\nHost: a\r\nX Y: b\r\n\r\n", .badRequest),
            ("GET / HTTP/1.1\r\nHost: a\r\nX-(: b\r\n\r\n", .badRequest),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: b\u{0}c\r\n\r\n", .badRequest),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: b\u{1B}c\r\n\r\n", .badRequest),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: b\u{7F}\r\n\r\n", .badRequest),
            // Bare CR, in the request line or in a field.
            ("GET / HTTP/1.1\rHost: a\r\n\r\n", .badRequest),
            ("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", .badRequest),
            ("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", .badRequest),
        ]
        for item in cases {
            XCTAssertEqual(status(item.text), item.status, "status for \(item.text.debugDescription)")
        }
    }

    func testFailureHasReason() {
        guard case .failure(let error) = parse("GET / HTTP/1.1\r\n\r\n") else { return XCTFail("expected a failure") }
        XCTAssertTrue(error.reason.contains("Host"), error.reason)
    }

    // MARK: - Oversized heads

    func testLongHeadWithLineEnded() {
        let padding = String(repeating: "p", count: HTTPRequestParser.maxHeadBytes)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost: a\r\nX-Pad: \(padding)\r\n"), .headerFieldsTooLarge)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost: a\r\nX-Pad: \(padding)"), .headerFieldsTooLarge)
    }

    func testLongCompleteHead() {
        let padding = String(repeating: "p", count: HTTPRequestParser.maxHeadBytes)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost: a\r\nX-Pad: \(padding)\r\n\r\n"), .headerFieldsTooLarge)
    }

    func testLongRequestLineNotEnded() {
        let path = "/" + String(repeating: "a", count: HTTPRequestParser.maxHeadBytes)
        XCTAssertEqual(status("GET \(path)"), .uriTooLong)
        XCTAssertEqual(status("GET \(path) HTTP/1.1"), .uriTooLong)
    }

    func testLongRequestLineEnded() {
        let path = "/" + String(repeating: "a", count: HTTPRequestParser.maxHeadBytes)
        XCTAssertEqual(status("GET \(path) HTTP/1.1\r\n"), .uriTooLong)
        XCTAssertEqual(status("GET \(path) HTTP/1.1\r\nHost: a\r\n\r\n"), .uriTooLong)
    }

    func testRequestLineUnderLimitIncomplete() {
        let path = "/" + String(repeating: "a", count: HTTPRequestParser.maxHeadBytes - 100)
        XCTAssertEqual(parse("GET \(path)"), .incomplete)
    }

    func testEndlessEmptyLinesRejected() {
        // Empty lines before the request line count toward the limit, so they cannot grow a buffer forever.
        let lines = [UInt8](repeating: 0x0A, count: HTTPRequestParser.maxHeadBytes + 1)
        XCTAssertNotNil(status(lines))
        let crlf = Array(String(repeating: "\r\n", count: HTTPRequestParser.maxHeadBytes).utf8)
        XCTAssertNotNil(status(crlf))
    }

    func testTooManyFields() {
        var text = "GET / HTTP/1.1\r\nHost: a\r\n"
        for index in 1...HTTPRequestParser.maxFields { text += "X-\(index): v\r\n" }
        XCTAssertEqual(status(text + "\r\n"), .headerFieldsTooLarge)
    }

    // MARK: - Keep-alive

    func testKeepAlive() {
        let cases: [(text: String, keepAlive: Bool)] = [
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
            ("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", true),
            ("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade, close\r\n\r\n", false),
            ("GET / HTTP/1.0\r\n\r\n", false),
            ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
            ("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            ("GET / HTTP/1.0\r\nConnection: close\r\n\r\n", false),
            ("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false),
            ("GET / HTTP/1.0\r\nConnection: foo ,keep-alive\r\n\r\n", true),
        ]
        for item in cases {
            XCTAssertEqual(head(item.text)?.keepAlive, item.keepAlive, "keepAlive for \(item.text.debugDescription)")
        }
    }

    // MARK: - Query strings and percent-decoding

    func testParseQuery() {
        let pairs = parseQuery("since=abc-1&timeout=5&flag&=empty&x=a%20b&plus=a+b")
        XCTAssertEqual(pairs?.map(\.name), ["since", "timeout", "flag", "", "x", "plus"])
        XCTAssertEqual(pairs?.map(\.value), ["abc-1", "5", "", "empty", "a b", "a+b"])
    }

    func testParseQueryEmptyParts() {
        XCTAssertEqual(parseQuery(nil)?.count, 0)
        XCTAssertEqual(parseQuery("")?.count, 0)
        XCTAssertEqual(parseQuery("&&")?.count, 0)
        XCTAssertEqual(parseQuery("a=1&&b=2")?.map(\.name), ["a", "b"])
    }

    func testParseQueryValueWithEquals() {
        let pairs = parseQuery("a=b=c")
        XCTAssertEqual(pairs?.first?.name, "a")
        XCTAssertEqual(pairs?.first?.value, "b=c")
    }

    func testParseQueryMalformed() {
        XCTAssertNil(parseQuery("a=%4"))
        XCTAssertNil(parseQuery("a%zz=1"))
        XCTAssertNil(parseQuery("a=%FF"))
    }

    func testPercentDecoded() {
        let cases: [(text: Substring, want: String?)] = [
            ("", ""),
            ("plain", "plain"),
            ("a%20b", "a b"),
            ("%41%42c", "ABc"),
            ("%2f%2F", "//"),
            ("a+b", "a+b"),
            ("%25", "%"),
            ("J%C3%BCrgen", "Jürgen"),
            ("%E2%82%AC", "€"),
            ("%", nil),
            ("%4", nil),
            ("a%4", nil),
            ("%4g", nil),
            ("%g4", nil),
            ("%FF", nil),
            ("%C3", nil),
            ("%C3%28", nil),
            ("%ED%A0%80", nil),
        ]
        for item in cases {
            XCTAssertEqual(percentDecoded(item.text), item.want, "percentDecoded(\(String(item.text).debugDescription))")
        }
    }
}
