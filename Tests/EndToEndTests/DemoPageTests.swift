// The demo page and browser client files the built relay serves: `/` is the
// page with a Content-Security-Policy, `/static/notify.js` the client script,
// `--no-demo` turns the page off, and unknown files are 404, never inboxes.

import Foundation
import XCTest

final class DemoPageTests: RelayTestCase {
    func testDemoPageServedWithPolicy() throws {
        let relay = try startRelay()
        let response = try HTTPTestClient(port: relay.httpPort).get("/")
        XCTAssertEqual(response.status, 200, response.bodyText)
        XCTAssertTrue(response.header("Content-Type")?.hasPrefix("text/html") ?? false, "Content-Type: \(response.header("Content-Type") ?? "missing")")
        let policy = try XCTUnwrap(response.header("Content-Security-Policy"), "demo page without Content-Security-Policy")
        XCTAssertTrue(policy.contains("script-src 'self'"), policy)
        XCTAssertTrue(response.bodyText.contains("src=\"static/notify.js\""), "the page does not load the client script")
    }

    func testClientScriptServed() throws {
        let relay = try startRelay()
        let response = try HTTPTestClient(port: relay.httpPort).get("/static/notify.js")
        XCTAssertEqual(response.status, 200, response.bodyText)
        XCTAssertTrue(response.header("Content-Type")?.contains("javascript") ?? false, "Content-Type: \(response.header("Content-Type") ?? "missing")")
        XCTAssertFalse(response.body.isEmpty)
    }

    func testUnknownStaticFileIs404() throws {
        let relay = try startRelay()
        let response = try HTTPTestClient(port: relay.httpPort).get("/static/nope.js")
        XCTAssertEqual(response.status, 404, response.bodyText)
    }

    func testNoDemoOptionHidesPage() throws {
        let relay = try startRelay(extraArguments: ["--no-demo"])
        let page = try HTTPTestClient(port: relay.httpPort).get("/")
        XCTAssertEqual(page.status, 404, page.bodyText)

        // Inboxes still work without the page.
        let inbox = try HTTPTestClient(port: relay.httpPort).get("/test?timeout=0")
        XCTAssertEqual(inbox.status, 204, inbox.bodyText)
    }
}
