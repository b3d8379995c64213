// The base class of the end-to-end tests: a scratch directory per test,
// relays that are always stopped in tearDown, and the client steps that most
// tests share (publishing over the ingest socket, reading the current cursor,
// running notify-deliver).
//
// Scratch directories live under /tmp with a short name, because a Unix
// socket path must fit in the 108 bytes of `sun_path`.

import Foundation
import Glibc
import XCTest

class RelayTestCase: XCTestCase {
    /// A directory of this test's own, removed in tearDown.
    private(set) var scratchDirectory = ""
    /// Every relay this test launched. Any still running is killed in tearDown.
    private var relays: [RelayProcess] = []

    override func setUpWithError() throws {
        try super.setUpWithError()
        var template = Array("/tmp/notify-e2e.XXXXXX".utf8CString)
        guard let path = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw TestFailure("mkdtemp failed: \(errnoText())")
        }
        scratchDirectory = String(cString: path)
        relays = []
        // A peer that closes early must fail a write, not kill the test process.
        signal(SIGPIPE, SIG_IGN)
    }

    override func tearDown() {
        for relay in relays where relay.isRunning {
            relay.killHard()
        }

        // The scratch directory goes away below, so show the relay logs of a failed test now.
        if let run = testRun, run.totalFailureCount > 0 {
            for (index, relay) in relays.enumerated() {
                print("relay \(index) (pid \(relay.pid)) log:\n\(relay.log)")
            }
        }
        relays = []
        if !scratchDirectory.isEmpty {
            try? FileManager.default.removeItem(atPath: scratchDirectory)
        }
        super.tearDown()
    }

    /// Returns the path of `name` inside the scratch directory.
    func scratchPath(_ name: String) -> String {
        scratchDirectory + "/" + name
    }

    // MARK: Relays

    /// Launches a relay without waiting for it to start, for start-ups that should fail.
    func launchRelay(
        socketName: String = "relay.sock", extraArguments: [String] = [], openFileLimit: Int? = nil
    ) throws -> RelayProcess {
        let logPath = scratchPath("relay-\(relays.count).log")
        let relay = try RelayProcess(
            socketPath: scratchPath(socketName), logPath: logPath, extraArguments: extraArguments,
            openFileLimit: openFileLimit)
        relays.append(relay)
        return relay
    }

    /// Launches a relay and waits until it logs that it has started.
    func startRelay(
        socketName: String = "relay.sock", extraArguments: [String] = [], openFileLimit: Int? = nil
    ) throws -> RelayProcess {
        let relay = try launchRelay(
            socketName: socketName, extraArguments: extraArguments, openFileLimit: openFileLimit)
        try relay.waitUntilStarted()
        return relay
    }

    // MARK: Ingest and polling

    /// Sends one ingest line over the relay's Unix socket and returns the reply line.
    func sendIngestLine(_ line: String, to relay: RelayProcess) throws -> String {
        let socket = try TestSocket.connectUnix(path: relay.socketPath)
        try socket.send(line + "\n")
        guard let reply = try socket.readLine(deadline: Deadline(seconds: 10)) else {
            throw TestFailure("ingest socket closed without a reply to \(line)")
        }
        return reply
    }

    /// Publishes one event for `inbox` with `subject` and returns its cursor.
    func publish(inbox: String, subject: String, to relay: RelayProcess) throws -> String {
        let record = #"{"recipients":["\#(inbox)"],"from":"sender@example.org","subject":"\#(subject)"}"#
        let reply = try sendIngestLine(record, to: relay)
        guard reply.hasPrefix("OK "), reply.count > 3 else {
            throw TestFailure("expected OK <cursor> for \(record), got: \(reply)")
        }
        return String(reply.dropFirst(3))
    }

    /// Reads the inbox's current cursor from the Notify-Cursor header of a
    /// long-poll that does not wait (`timeout=0`).
    func currentCursor(inbox: String, relay: RelayProcess) throws -> String {
        let client = try HTTPTestClient(port: relay.httpPort)
        let response = try client.get("/\(inbox)?timeout=0")
        guard response.status == 204, let cursor = response.header("Notify-Cursor") else {
            throw TestFailure("expected 204 with Notify-Cursor for /\(inbox)?timeout=0, got \(response.status): \(response.bodyText)")
        }
        return cursor
    }

    /// Completes one request on a fresh connection. The relay reads its
    /// sockets on a single event-loop thread, so once this request has its
    /// response, requests written earlier on other connections have been read
    /// and their long-polls registered.
    func waitForEarlierRequests(relay: RelayProcess) throws {
        let client = try HTTPTestClient(port: relay.httpPort)
        let response = try client.get("/a/b")
        XCTAssertEqual(response.status, 404, "barrier request /a/b")
    }

    // MARK: notify-deliver

    struct DeliverRun {
        let status: Int32
        let seconds: TimeInterval
        let stdout: String
        let stderr: String
    }

    /// Runs notify-deliver with `message` on a pipe as stdin (never a
    /// terminal) and `environment` added to an isolated environment, and
    /// kills it if it runs longer than `limit` seconds.
    func runDeliver(
        _ arguments: [String], message: String, environment: [String: String] = [:], limit: TimeInterval = 20
    ) throws -> DeliverRun {
        let index = UUID().uuidString.prefix(8)
        let stdoutPath = scratchPath("deliver-\(index).out")
        let stderrPath = scratchPath("deliver-\(index).err")
        guard FileManager.default.createFile(atPath: stdoutPath, contents: nil),
            FileManager.default.createFile(atPath: stderrPath, contents: nil),
            let stdout = FileHandle(forWritingAtPath: stdoutPath),
            let stderr = FileHandle(forWritingAtPath: stderrPath)
        else {
            throw TestFailure("cannot create output files for notify-deliver in \(scratchDirectory)")
        }
        let input = Pipe()
        let process = Process()
        process.executableURL = try ProductBinaries.executable("notify-deliver")
        process.arguments = arguments
        process.environment = isolatedEnvironment().merging(environment) { $1 }
        process.standardInput = input
        process.standardOutput = stdout
        process.standardError = stderr

        let started = Date()
        try process.run()
        try? stdout.close()
        try? stderr.close()
        writeInBackground(Array(message.utf8), to: input)

        let finished = waitUntil(seconds: limit) { !process.isRunning }
        let seconds = Date().timeIntervalSince(started)
        if !finished {
            kill(process.processIdentifier, SIGKILL)
            _ = waitUntil(seconds: 10) { !process.isRunning }
            throw TestFailure("notify-deliver \(arguments) still ran after \(limit) s and was killed")
        }
        return DeliverRun(
            status: process.terminationStatus, seconds: seconds,
            stdout: (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "")
    }
}

/// Writes `bytes` to the pipe and closes it on a thread of its own, because a
/// message larger than the pipe buffer blocks until the child reads it. A child
/// that exits without reading ends the write with EPIPE (SIGPIPE is ignored).
private func writeInBackground(_ bytes: [UInt8], to pipe: Pipe) {
    // A descriptor of the thread's own, created after the child started, so
    // the child cannot inherit it and the pipe still ends when the thread closes it.
    let fd = fcntl(pipe.fileHandleForWriting.fileDescriptor, F_DUPFD_CLOEXEC, 0)
    try? pipe.fileHandleForWriting.close()
    guard fd >= 0 else { return }
    let writer = Thread {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if written < 0 && errno == EINTR { continue }
                if written <= 0 { break }
                offset += written
            }
        }
        close(fd)
    }
    writer.start()
}

/// Builds a small RFC 5322 message whose Subject is an RFC 2047 encoded word.
func sampleMessage(subject: String, messageID: String) -> String {
    let encodedSubject = "=?UTF-8?B?" + Data(subject.utf8).base64EncodedString() + "?="
    return [
        "Return-Path: <alice@example.org>",
        "From: Alice <alice@example.org>",
        "To: test@example.com",
        "Subject: \(encodedSubject)",
        "Message-ID: <\(messageID)>",
        "Date: Fri, 04 Dec 2026 19:00:00 +0000",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Hello from the end-to-end tests.",
        "",
    ].joined(separator: "\r\n")
}
