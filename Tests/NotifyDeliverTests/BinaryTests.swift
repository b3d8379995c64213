// Runs the built notify-deliver binary with stdin from a pipe, as an MTA does.

import Foundation
import XCTest

final class BinaryTests: XCTestCase {
    /// A message with an mbox From line; the 48 bytes after that line are its size.
    private let message = "From bob@example.org Tue Jan  1 00:00:00 2026\nSubject: Test\nDelivered-To: t@example.com\n\nbody\n"

    private func binaryPath() throws -> String {
        try notifyDeliverBinaryPath()
    }

    private struct RunResult {
        var status: Int32
        var stdout: String
        var stderr: String
        var seconds: Double
    }

    private func runBinary(_ arguments: [String], environment: [String: String], stdin: String) throws -> RunResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try binaryPath())
        process.arguments = arguments
        process.environment = environment
        let input = Pipe()
        let output = Pipe()
        let errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors

        let started = Date()
        try process.run()
        // The program may exit before reading stdin (--version, a bad option): a
        // write that fails with EPIPE is expected then, and must not stop the test.
        try? input.fileHandleForWriting.write(contentsOf: Data(stdin.utf8))
        try? input.fileHandleForWriting.close()
        let stdoutData = output.fileHandleForReading.readDataToEndOfFile()
        let stderrData = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return RunResult(
            status: process.terminationStatus, stdout: String(decoding: stdoutData, as: UTF8.self),
            stderr: String(decoding: stderrData, as: UTF8.self), seconds: Date().timeIntervalSince(started))
    }

    private func environment(socket: String) -> [String: String] {
        ["NOTIFY_RELAY_SOCKET": socket, "PATH": "/usr/bin:/bin"]
    }

    func testMissingSocketExitsZero() throws {
        let directory = try TestRelayServer.makeTemporaryDirectory()
        defer { rmdir(directory) }
        let result = try runBinary([], environment: environment(socket: directory + "/none.sock"), stdin: message)
        XCTAssertEqual(result.status, 0)
        XCTAssertEqual(result.stdout, "")
        XCTAssertEqual(result.stderr, "")
    }

    func testMissingSocketWithTempfailExits75() throws {
        let directory = try TestRelayServer.makeTemporaryDirectory()
        defer { rmdir(directory) }
        let result = try runBinary(
            ["--tempfail"], environment: environment(socket: directory + "/none.sock"), stdin: message)
        XCTAssertEqual(result.status, 75)
        XCTAssertEqual(result.stdout, "")
    }

    func testVerboseLogsToStderrOnly() throws {
        let directory = try TestRelayServer.makeTemporaryDirectory()
        defer { rmdir(directory) }
        let result = try runBinary(
            ["--verbose"], environment: environment(socket: directory + "/none.sock"), stdin: message)
        XCTAssertEqual(result.status, 0)
        XCTAssertEqual(result.stdout, "")
        XCTAssertTrue(result.stderr.contains("No such file or directory"), result.stderr)
        XCTAssertTrue(result.stderr.contains("recipients=t@example.com"), result.stderr)
    }

    func testDryRunPrintsRecord() throws {
        let result = try runBinary(["--dry-run", "a@example.com"], environment: ["PATH": "/bin"], stdin: message)
        XCTAssertEqual(result.status, 0)
        XCTAssertEqual(
            result.stdout, "{\"recipients\":[\"a@example.com\"],\"subject\":\"Test\",\"size\":48}\n")
    }

    func testBadOptionExitsZeroFromMTA() throws {
        let result = try runBinary(["--timeout", "abc"], environment: ["PATH": "/bin"], stdin: message)
        XCTAssertEqual(result.status, 0)
        XCTAssertEqual(result.stdout, "")
    }

    func testRelayAcknowledges() throws {
        let server = try TestRelayServer(behavior: .reply("OK c-9"))
        let result = try runBinary(["--verbose"], environment: environment(socket: server.socketPath), stdin: message)
        XCTAssertEqual(result.status, 0)
        XCTAssertEqual(result.stdout, "")
        XCTAssertTrue(result.stderr.contains("cursor=c-9"), result.stderr)
        XCTAssertEqual(server.waitForLine(), "{\"recipients\":[\"t@example.com\"],\"subject\":\"Test\",\"size\":48}")
    }

    func testSilentRelayTimesOutWithTempfail() throws {
        let server = try TestRelayServer(behavior: .neverReply)
        let result = try runBinary(
            ["--tempfail", "--timeout", "0.5"], environment: environment(socket: server.socketPath), stdin: message)
        XCTAssertEqual(result.status, 75)
        XCTAssertLessThan(result.seconds, 10)
    }

    func testStalledStdinStillNotifiesWithoutSize() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try binaryPath())
        process.arguments = ["--dry-run", "--timeout", "1"]
        process.environment = ["PATH": "/bin"]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = Pipe()
        try process.run()

        // Headers arrive, then the writer stalls with the pipe still open.
        try input.fileHandleForWriting.write(contentsOf: Data("Subject: slow\nDelivered-To: s@example.com\n\npart".utf8))
        let stdoutData = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try? input.fileHandleForWriting.close()
        XCTAssertEqual(process.terminationStatus, 0)
        XCTAssertEqual(
            String(decoding: stdoutData, as: UTF8.self), "{\"recipients\":[\"s@example.com\"],\"subject\":\"slow\"}\n")
    }

    func testVersionAndHelp() throws {
        let version = try runBinary(["--version"], environment: [:], stdin: "")
        XCTAssertEqual(version.stdout, "notify-deliver 0.1.0\n")
        let help = try runBinary(["--help"], environment: [:], stdin: "")
        XCTAssertTrue(help.stdout.hasPrefix("Usage: notify-deliver"))
        XCTAssertEqual(help.status, 0)
    }
}
