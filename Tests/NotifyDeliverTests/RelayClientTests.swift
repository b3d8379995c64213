// Relay client against a real Unix socket server run by the test.

import Glibc
import NotifyCore
import XCTest

@testable import NotifyDeliver

final class RelayClientTests: XCTestCase {
    private let record = MailRecord(
        recipients: ["a@example.com", "b@example.com"], subject: "Hi", size: 42, queueId: "Q1")

    private func send(to path: String, timeout: Double = 5) -> (Result<String, RelayError>, Double) {
        let started = Deadline.now()
        let client = RelayClient(socketPath: path, deadline: Deadline(seconds: timeout, after: started))
        let result = client.send(record)
        return (result, Double(Deadline.now() - started) / 1e9)
    }

    func testOKReplyReturnsCursor() throws {
        let server = try TestRelayServer(behavior: .reply("OK x-1"))
        let (result, _) = send(to: server.socketPath)
        XCTAssertEqual(result, .success("x-1"))
        XCTAssertEqual(server.waitForLine(), record.jsonLine())
    }

    func testRecordArrivesAsJSON() throws {
        let server = try TestRelayServer(behavior: .reply("OK 7"))
        _ = send(to: server.socketPath)
        let line = try XCTUnwrap(server.waitForLine())
        let parsed = try IngestProtocol.parseLine(Array(line.utf8))
        XCTAssertEqual(parsed.recipients, ["a@example.com", "b@example.com"])
        XCTAssertEqual(parsed.subject, "Hi")
        XCTAssertEqual(parsed.size, 42)
        XCTAssertEqual(parsed.queueId, "Q1")
    }

    func testERRReplyIsRejection() throws {
        let server = try TestRelayServer(behavior: .reply("ERR nope"))
        let (result, _) = send(to: server.socketPath)
        XCTAssertEqual(result, .failure(.rejected(reason: "nope")))
        XCTAssertEqual(RelayError.rejected(reason: "nope").isUnreachable, false)
    }

    func testNoReplyTimesOut() throws {
        let server = try TestRelayServer(behavior: .neverReply)
        let (result, seconds) = send(to: server.socketPath, timeout: 0.5)
        XCTAssertEqual(result, .failure(.timedOut(stage: "reply")))
        XCTAssertLessThan(seconds, 10)
        XCTAssertEqual(server.waitForLine(), record.jsonLine())
    }

    func testCloseWithoutReply() throws {
        let server = try TestRelayServer(behavior: .closeWithoutReply)
        let (result, _) = send(to: server.socketPath)
        XCTAssertEqual(result, .failure(.closedWithoutReply))
    }

    func testMissingSocketIsUnreachable() throws {
        let directory = try TestRelayServer.makeTemporaryDirectory()
        defer { rmdir(directory) }
        let (result, _) = send(to: directory + "/absent.sock")
        XCTAssertEqual(result, .failure(.connectFailed(errno: ENOENT)))
        XCTAssertTrue(RelayError.connectFailed(errno: ENOENT).isUnreachable)
    }

    func testParseReply() {
        let cases: [(String, Result<String, RelayError>)] = [
            ("OK 1-2", .success("1-2")), ("OK", .success("")), ("ERR bad record", .failure(.rejected(reason: "bad record"))),
            ("HELLO", .failure(.invalidReply("\"HELLO\""))),
        ]
        for (line, expected) in cases {
            XCTAssertEqual(parseReply(Array(line.utf8)), expected, line)
        }
    }

    func testErrorMessagesNameErrno() {
        XCTAssertTrue(RelayError.connectFailed(errno: ENOENT).message.contains("No such file or directory (errno 2)"))
        XCTAssertTrue(RelayError.timedOut(stage: "reply").message.contains("timed out"))
    }
}
