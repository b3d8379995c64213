// notify-deliver when things go wrong, run as an MTA runs it (stdin from a
// pipe, never a terminal). It must exit 0 so that no mail bounces, or 75
// (EX_TEMPFAIL) with --tempfail so that the MTA retries. It must also finish
// within its --timeout bound instead of holding a delivery slot.

import Foundation
import XCTest

final class DeliverFailureTests: RelayTestCase {
    /// EX_TEMPFAIL from sysexits.h.
    let exitTempFail: Int32 = 75
    /// The bound given to notify-deliver, and the generous bound the test checks.
    let deliverTimeout = "2"
    let finishWithin: TimeInterval = 10

    private var message: String { sampleMessage(subject: "relay trouble", messageID: "e2e-down@example.org") }

    func testMissingSocketExitsZero() throws {
        let run = try runDeliver(
            ["--socket", scratchPath("absent.sock"), "--timeout", deliverTimeout, "test"], message: message)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertLessThan(run.seconds, finishWithin)
    }

    func testMissingSocketWithTempfailExits75() throws {
        let run = try runDeliver(
            ["--socket", scratchPath("absent.sock"), "--timeout", deliverTimeout, "--tempfail", "test"],
            message: message)
        XCTAssertEqual(run.status, exitTempFail, run.stderr)
        XCTAssertLessThan(run.seconds, finishWithin)
    }

    func testStaleSocketFileExitsZero() throws {
        let path = scratchPath("stale.sock")
        try createStaleSocketFile(path: path)
        let run = try runDeliver(["--socket", path, "--timeout", deliverTimeout, "test"], message: message)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertLessThan(run.seconds, finishWithin)
    }

    func testStaleSocketFileWithTempfailExits75() throws {
        let path = scratchPath("stale.sock")
        try createStaleSocketFile(path: path)
        let run = try runDeliver(
            ["--socket", path, "--timeout", deliverTimeout, "--tempfail", "test"], message: message)
        XCTAssertEqual(run.status, exitTempFail, run.stderr)
        XCTAssertLessThan(run.seconds, finishWithin)
    }

    func testSilentRelayExitsZeroWithinTimeout() throws {
        let path = scratchPath("silent.sock")
        let listener = try SilentUnixListener(path: path)
        let run = try runDeliver(["--socket", path, "--timeout", deliverTimeout, "test"], message: message)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertLessThan(run.seconds, finishWithin)
        withExtendedLifetime(listener) {}
    }

    func testSilentRelayWithTempfailExits75() throws {
        let path = scratchPath("silent.sock")
        let listener = try SilentUnixListener(path: path)
        let run = try runDeliver(
            ["--socket", path, "--timeout", deliverTimeout, "--tempfail", "test"], message: message)
        XCTAssertEqual(run.status, exitTempFail, run.stderr)
        XCTAssertLessThan(run.seconds, finishWithin)
        withExtendedLifetime(listener) {}
    }

    func testGarbageStdinWithoutRecipientExitsZero() throws {
        let relay = try startRelay()
        let garbage = String(decoding: (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }, as: UTF8.self)
        let run = try runDeliver(["--socket", relay.socketPath, "--timeout", deliverTimeout], message: garbage)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertLessThan(run.seconds, finishWithin)
    }

    func testUnknownOptionExitsZero() throws {
        let run = try runDeliver(["--no-such-option", "test"], message: message)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertLessThan(run.seconds, finishWithin)
    }
}
