// Tests for the router: which requests wait on an inbox and for how long,
// which get a response at once, the status of every rejected request, and the
// JSON and text bodies of a response with events.

import NotifyCore
import XCTest

@testable import NotifyRelay

final class RouterTests: XCTestCase {
    private let settings = RouterSettings(policy: InboxPolicy(), defaultPollTimeout: 30, maxPollTimeout: 120)

    private func makeHub() -> Hub {
        Hub(limits: HistoryLimits(perInbox: 16, maxAgeMilliseconds: 60_000, maxTotal: 1000), epoch: "e1")
    }

    private func request(_ target: String, method: String = "GET", fields: [(String, String)] = []) -> HTTPRequestHead {
        HTTPRequestHead(method: method, target: target, minorVersion: 1, fields: [("host", "relay")] + fields)
    }

    private func route(
        _ target: String, method: String = "GET", fields: [(String, String)] = [], hub: Hub? = nil,
        settings: RouterSettings? = nil
    ) -> RouteAction {
        NotifyRelay.route(
            request(target, method: method, fields: fields), hub: hub ?? makeHub(), settings: settings ?? self.settings)
    }

    private func response(_ action: RouteAction) -> HTTPResponse? {
        guard case .respond(let response) = action else { return nil }
        return response
    }

    private func wait(_ action: RouteAction) -> (key: String, format: ResponseFormat, timeout: Int64)? {
        guard case .wait(let target, let format, let timeout) = action, target.keys.count == 1 else { return nil }
        return (target.keys[0], format, timeout)
    }

    private func status(_ action: RouteAction) -> HTTPStatus? {
        response(action)?.status
    }

    private func field(_ response: HTTPResponse?, _ name: String) -> String? {
        response?.fields.first(where: { $0.0.lowercased() == name.lowercased() })?.1
    }

    private func body(_ response: HTTPResponse?) -> String? {
        response.map { String(decoding: $0.body, as: UTF8.self) }
    }

    /// Publishes one message for `address` and returns the hub.
    private func hubWithMail(
        for addresses: [String] = ["test@example.com"], policy: InboxPolicy = InboxPolicy(), wallClock: Int = 1_733_338_800
    ) throws -> Hub {
        let hub = makeHub()
        let record = MailRecord(
            recipients: addresses, from: "Alice <alice@example.org>", subject: "Hello", messageId: "<abc@example.org>",
            size: 1234)
        let inboxes = try addresses.map { try policy.normalize($0) }
        hub.publish(record, to: inboxes, now: 0, wallClock: time_t(wallClock))
        return hub
    }

    // MARK: - Waiting

    func testWaitWithDefaultTimeout() {
        let waiting = wait(route("/test"))
        XCTAssertEqual(waiting?.key, "test")
        XCTAssertEqual(waiting?.format, .text)
        XCTAssertEqual(waiting?.timeout, 30_000)
    }

    func testInboxNameNormalized() {
        XCTAssertEqual(wait(route("/TeSt"))?.key, "test")
        XCTAssertEqual(wait(route("/test%40Example.com"))?.key, "test")
    }

    func testTimeoutZero() {
        let hub = makeHub()
        let answer = response(route("/test?timeout=0", hub: hub))
        XCTAssertEqual(answer?.status, .noContent)
        XCTAssertEqual(field(answer, "Notify-Cursor"), "e1-0")
        XCTAssertEqual(answer?.body.count, 0)
        XCTAssertEqual(field(answer, "Cache-Control"), "no-store")
    }

    func testTimeoutValues() {
        let cases: [(query: String, milliseconds: Int64)] = [
            ("timeout=5", 5000),
            ("timeout=0.5", 500),
            ("timeout=120", 120_000),
            ("timeout=121", 120_000),
            ("timeout=1e9", 120_000),
            ("timeout=1&timeout=2", 2000),
        ]
        for item in cases {
            XCTAssertEqual(wait(route("/test?\(item.query)"))?.timeout, item.milliseconds, item.query)
        }
    }

    func testInvalidTimeouts() {
        for value in ["abc", "-1", "nan", "inf", "", "5s", "%20"] {
            let answer = response(route("/test?timeout=\(value)"))
            XCTAssertEqual(answer?.status, .badRequest, "timeout=\(value)")
            XCTAssertEqual(body(answer)?.hasPrefix("invalid timeout"), true, "timeout=\(value)")
        }
    }

    // MARK: - Formats

    func testFormatParameter() {
        XCTAssertEqual(wait(route("/test?format=json"))?.format, .json)
        XCTAssertEqual(wait(route("/test?format=text"))?.format, .text)
        let answer = response(route("/test?format=xml"))
        XCTAssertEqual(answer?.status, .badRequest)
        XCTAssertEqual(body(answer)?.contains("\"xml\""), true)
    }

    func testAcceptHeader() {
        XCTAssertEqual(wait(route("/test", fields: [("accept", "application/json")]))?.format, .json)
        XCTAssertEqual(wait(route("/test", fields: [("accept", "text/html, application/json;q=0.9")]))?.format, .json)
        XCTAssertEqual(wait(route("/test", fields: [("accept", "text/html")]))?.format, .text)
        XCTAssertEqual(wait(route("/test?format=text", fields: [("accept", "application/json")]))?.format, .text)
    }

    // MARK: - Cursors

    func testLastEventIDHeader() throws {
        let hub = try hubWithMail()
        let answer = response(route("/test", fields: [("last-event-id", "e1-0")], hub: hub))
        XCTAssertEqual(answer?.status, .ok)
        XCTAssertEqual(field(answer, "Notify-Cursor"), "e1-1")
    }

    func testSinceWinsOverLastEventID() throws {
        let hub = try hubWithMail()
        XCTAssertNotNil(wait(route("/test?since=e1-1", fields: [("last-event-id", "e1-0")], hub: hub)))
        XCTAssertEqual(status(route("/test?since=e1-0", fields: [("last-event-id", "e1-1")], hub: hub)), .ok)
    }

    func testUnknownCursorAnsweredAtOnce() {
        let answer = response(route("/test?since=garbage&format=json"))
        XCTAssertEqual(answer?.status, .ok)
        let json = try? parseJSON(answer?.body ?? [])
        XCTAssertEqual(json?["gap"], .bool(true))
        XCTAssertEqual(json?["messages"], .array([]))
    }

    // MARK: - Paths and methods

    func testUnknownPaths() {
        for target in ["/a/b", "/test/", "//", "/static/missing.js", "*"] {
            XCTAssertEqual(status(route(target)), .notFound, target)
        }
    }

    func testDemoPageAtRoot() {
        let page = response(route("/"))
        XCTAssertEqual(page?.status, .ok)
        XCTAssertEqual(field(page, "Content-Type"), "text/html; charset=utf-8")
        XCTAssertNotNil(field(page, "Content-Security-Policy"))
    }

    func testDemoPageOff() {
        var noDemo = settings
        noDemo.demoEnabled = false
        XCTAssertEqual(status(route("/", settings: noDemo)), .notFound)
    }

    func testStaticClientScript() {
        let script = response(route("/static/notify.js"))
        XCTAssertEqual(script?.status, .ok)
        XCTAssertEqual(field(script, "Content-Type"), "text/javascript; charset=utf-8")
        XCTAssertEqual(status(route("/static/notify.d.ts")), .ok)
    }

    // MARK: - Several inboxes

    private func target(_ action: RouteAction) -> SubscriptionTarget? {
        switch action {
        case .wait(let target, _, _), .stream(let target, _): return target
        case .respond: return nil
        }
    }

    func testMultiInboxWaits() {
        let waiting = target(route("/?inbox=a&inbox=B&inbox=a"))
        XCTAssertEqual(waiting?.keys, ["a", "b"], "names are normalized and repeats dropped")
        XCTAssertEqual(waiting?.isMulti, true)
    }

    func testMultiInboxLimit() {
        let sixteen = (0..<16).map { "inbox=i\($0)" }.joined(separator: "&")
        XCTAssertEqual(target(route("/?" + sixteen))?.keys.count, 16)
        XCTAssertEqual(status(route("/?" + sixteen + "&inbox=extra")), .badRequest)
    }

    func testMultiInboxWithoutInbox() {
        XCTAssertEqual(status(route("/?format=json")), .badRequest)
        XCTAssertEqual(status(route("/?inbox=a%2Fb")), .badRequest)
    }

    func testMultiInboxJSON() throws {
        let hub = makeHub()
        _ = hub.publish(
            MailRecord(recipients: ["a", "b"], subject: "s"), to: [Inbox(key: "a", recipient: "a"), Inbox(key: "b", recipient: "b")],
            now: 0, wallClock: 0)
        let answer = response(route("/?inbox=a&inbox=b&since=e1-0&format=json", hub: hub))
        let json = try parseJSON(answer?.body ?? [])
        XCTAssertEqual(json["inboxes"], .array([.string("a"), .string("b")]))
        XCTAssertNil(json["inbox"])
        guard case .array(let messages)? = json["messages"] else { return XCTFail("no messages") }
        XCTAssertEqual(messages.map { $0["inbox"] }, [.string("a"), .string("b")])
    }

    // MARK: - Event streams

    private func backlog(_ action: RouteAction) -> HistoryLookup? {
        guard case .stream(_, let backlog) = action else { return nil }
        return backlog
    }

    func testEventStreamSelected() {
        XCTAssertNotNil(backlog(route("/test?format=sse")))
        XCTAssertNotNil(backlog(route("/test", fields: [("accept", "text/event-stream")])))
        XCTAssertNotNil(backlog(route("/?inbox=a&format=sse")))
    }

    func testEventStreamResumeByQueryAndHeader() {
        let hub = makeHub()
        for _ in 0..<2 {
            _ = hub.publish(MailRecord(recipients: ["test"]), to: [Inbox(key: "test", recipient: "test")], now: 0, wallClock: 0)
        }
        let byQuery = backlog(route("/test?format=sse&lastEventId=e1-1", hub: hub))
        XCTAssertEqual(byQuery?.events.map(\.sequence), [2])
        let byHeader = backlog(route("/test?format=sse", fields: [("last-event-id", "e1-0")], hub: hub))
        XCTAssertEqual(byHeader?.events.map(\.sequence), [1, 2])
        let unknown = backlog(route("/test?format=sse&lastEventId=other-5", hub: hub))
        XCTAssertEqual(unknown?.gap, true)
    }

    func testEventStreamHead() {
        let answer = response(route("/test?format=sse", method: "HEAD"))
        XCTAssertEqual(answer?.status, .ok)
        XCTAssertEqual(field(answer, "Content-Type"), "text/event-stream; charset=utf-8")
    }

    func testInvalidInbox() {
        for target in ["/%2F", "/a%00", "/a%0A", "/%zz", "/a%4", "/%FF", "/a%20b", "/a@b@c", "/%20"] {
            let answer = response(route(target))
            XCTAssertEqual(answer?.status, .badRequest, target)
            XCTAssertEqual(body(answer)?.hasPrefix("invalid inbox name"), true, target)
        }
    }

    func testMalformedQuery() {
        XCTAssertEqual(status(route("/test?since=%4")), .badRequest)
        XCTAssertEqual(status(route("/test?%FF=1")), .badRequest)
    }

    func testUnknownQueryParameterIgnored() {
        XCTAssertNotNil(wait(route("/test?cachebust=123")))
    }

    func testMethodNotAllowed() {
        for method in ["POST", "PUT", "DELETE", "PATCH", "get"] {
            let answer = response(route("/test", method: method))
            XCTAssertEqual(answer?.status, .methodNotAllowed, method)
            XCTAssertEqual(field(answer, "Allow"), "GET, HEAD, OPTIONS", method)
        }
    }

    func testOptions() {
        for target in ["/test", "*"] {
            let answer = response(route(target, method: "OPTIONS"))
            XCTAssertEqual(answer?.status, .noContent, target)
            XCTAssertEqual(field(answer, "Allow"), "GET, HEAD, OPTIONS", target)
        }
    }

    func testHeadWithNothingNew() {
        let answer = response(route("/test", method: "HEAD"))
        XCTAssertEqual(answer?.status, .noContent)
        XCTAssertEqual(field(answer, "Notify-Cursor"), "e1-0")
    }

    func testHeadWithEvents() throws {
        let hub = try hubWithMail()
        let answer = response(route("/test?since=e1-0", method: "HEAD", hub: hub))
        XCTAssertEqual(answer?.status, .ok)
        XCTAssertEqual(field(answer, "Notify-Cursor"), "e1-1")
    }

    // MARK: - Bodies

    func testJSONAnswer() throws {
        let hub = try hubWithMail()
        let answer = response(route("/test?since=e1-0&format=json", hub: hub))
        XCTAssertEqual(answer?.status, .ok)
        XCTAssertEqual(field(answer, "Content-Type"), "application/json; charset=utf-8")
        XCTAssertEqual(field(answer, "Notify-Cursor"), "e1-1")
        XCTAssertEqual(field(answer, "Cache-Control"), "no-store")

        let json = try parseJSON(answer?.body ?? [])
        XCTAssertEqual(json["inbox"], .string("test"))
        XCTAssertEqual(json["cursor"], .string("e1-1"))
        XCTAssertEqual(json["gap"], .bool(false))
        guard case .array(let messages)? = json["messages"] else { return XCTFail("messages is not an array") }
        XCTAssertEqual(messages.count, 1)
        let message = messages.first
        XCTAssertEqual(message?["id"], .string("e1-1"))
        XCTAssertEqual(message?["recipient"], .string("test@example.com"))
        XCTAssertEqual(message?["from"], .string("Alice <alice@example.org>"))
        XCTAssertEqual(message?["subject"], .string("Hello"))
        XCTAssertEqual(message?["messageId"], .string("<abc@example.org>"))
        XCTAssertEqual(message?["size"], .number(1234))
        XCTAssertEqual(message?["receivedAt"], .string("2024-12-04T19:00:00Z"))
    }

    func testJSONAnswerSeveralEvents() throws {
        let hub = try hubWithMail()
        hub.publish(MailRecord(recipients: ["test"]), to: [Inbox(key: "test", recipient: "test")], now: 0, wallClock: 0)
        let json = try parseJSON(response(route("/test?since=e1-0", fields: [("accept", "application/json")], hub: hub))?.body ?? [])
        guard case .array(let messages)? = json["messages"] else { return XCTFail("messages is not an array") }
        XCTAssertEqual(messages.map { $0["id"] }, [.string("e1-1"), .string("e1-2")])
        XCTAssertEqual(messages.last?["subject"], nil, "absent fields are left out")
        XCTAssertEqual(messages.last?["receivedAt"], .string("1970-01-01T00:00:00Z"))
        XCTAssertEqual(json["cursor"], .string("e1-2"))
    }

    func testTextAnswer() throws {
        let hub = try hubWithMail()
        let answer = response(route("/test?since=e1-0", hub: hub))
        XCTAssertEqual(answer?.status, .ok)
        XCTAssertEqual(field(answer, "Content-Type"), "text/plain; charset=utf-8")
        XCTAssertEqual(body(answer), "New mail for: test\n")
    }

    func testTextAnswerWithGap() throws {
        let hub = try hubWithMail()
        let text = body(response(route("/test?since=e0-5", hub: hub)))
        XCTAssertEqual(text?.hasSuffix("New mail for: test\n"), true)
        XCTAssertEqual(text?.contains("no longer held"), true)
    }

    // MARK: - Domain policy

    func testDomainPolicy() throws {
        let policy = InboxPolicy(domains: ["example.com"])
        let served = RouterSettings(policy: policy, defaultPollTimeout: 30, maxPollTimeout: 120)
        XCTAssertEqual(wait(route("/test", settings: served))?.key, "test@example.com")
        XCTAssertEqual(wait(route("/Test@Example.com", settings: served))?.key, "test@example.com")
        XCTAssertEqual(status(route("/x@other.org", settings: served)), .badRequest)

        let hub = try hubWithMail(policy: policy)
        let json = try parseJSON(response(route("/test?since=e1-0&format=json", hub: hub, settings: served))?.body ?? [])
        XCTAssertEqual(json["inbox"], .string("test@example.com"))
        XCTAssertEqual(body(response(route("/test?since=e1-0", hub: hub, settings: served))), "New mail for: test@example.com\n")
    }
}
