// Wrapper mode (--exec) of the built notify-deliver binary. Small shell
// scripts act as the delivery program, and a test server on a Unix socket in
// a temporary directory acts as the relay.

import Foundation
import Glibc
import XCTest

@testable import NotifyDeliver

final class WrapperTests: XCTestCase {
    private let message = "From bob@example.org Tue Jan  1 00:00:00 2026\nSubject: Wrapped\nDelivered-To: W@example.com\n\nbody\n"
    /// The size notify-deliver reports for `message`: the bytes after the mbox From line.
    private let messageSize = 51
    private var directory = ""

    override func setUpWithError() throws {
        // A program that exits without reading must not kill the test with SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
        directory = try TestRelayServer.makeTemporaryDirectory()
    }

    override func tearDownWithError() throws {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for file in files { unlink(directory + "/" + file) }
        rmdir(directory)
    }

    // MARK: - Exit status

    func testExitStatusPassedThrough() throws {
        let script = try writeScript("exits", "cat >/dev/null\nexit \"$1\"\n")
        for code in [0] + Array(64...78) {
            let relay = try TestListener(directory: directory, name: "status-\(code).sock", reply: code == 0 ? "OK c-\(code)" : nil)
            let result = try runBinary(["--socket", relay.socketPath, "--exec", script, String(code)], stdin: message)
            XCTAssertEqual(result.status, Int32(code), "program exit \(code)")
            XCTAssertEqual(result.stdout, "", "program exit \(code)")
            let line = relay.finish()
            if code == 0 {
                XCTAssertEqual(line, "{\"recipients\":[\"w@example.com\"],\"subject\":\"Wrapped\",\"size\":\(messageSize)}")
            } else {
                XCTAssertNil(line, "program exit \(code): want no notification")
            }
        }
    }

    func testSignalBecomesTempfail() throws {
        for signalName in ["KILL", "TERM", "SEGV"] {
            let script = try writeScript("signal-\(signalName)", "cat >/dev/null\nkill -\(signalName) $$\nsleep 5\n")
            let relay = try TestListener(directory: directory, name: "signal.sock", reply: nil)
            let result = try runBinary(["--socket", relay.socketPath, "--exec", script], stdin: message)
            XCTAssertEqual(result.status, 75, "SIG\(signalName)")
            XCTAssertNil(relay.finish(), "SIG\(signalName): want no notification")
        }
    }

    func testMissingProgramExits75() throws {
        let relay = try TestListener(directory: directory, name: "missing.sock", reply: nil)
        let result = try runBinary(
            ["--verbose", "--socket", relay.socketPath, "--exec", directory + "/no-such-program"], stdin: message)
        XCTAssertEqual(result.status, 75)
        XCTAssertTrue(result.stderr.contains("program=\(directory)/no-such-program"), result.stderr)
        XCTAssertTrue(result.stderr.contains("No such file or directory"), result.stderr)
        XCTAssertNil(relay.finish())
    }

    func testProgramNotInPathExits75() throws {
        let result = try runBinary(["--exec", "notify-no-such-program-in-path"], stdin: message)
        XCTAssertEqual(result.status, 75)
    }

    func testNotExecutableExits75() throws {
        let path = directory + "/not-executable"
        try "#!/bin/sh\nexit 0\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o644)
        let result = try runBinary(["--verbose", "--exec", path], stdin: message)
        XCTAssertEqual(result.status, 75)
        XCTAssertTrue(result.stderr.contains("Permission denied"), result.stderr)
    }

    func testUsageErrorWithExecExits75() throws {
        let marker = directory + "/ran"
        let script = try writeScript("touch", "cat >/dev/null\n: > \"\(marker)\"\n")
        for arguments in [["--timeout", "abc", "--exec", script], ["--bogus", "--exec", script], ["--exec"]] {
            let result = try runBinary(arguments, stdin: message)
            XCTAssertEqual(result.status, 75, "\(arguments)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "the program must not run")
    }

    // MARK: - Notification

    func testRelayDownProgramSucceededExitsZero() throws {
        let script = try writeScript("ok", "cat >/dev/null\n")
        let socket = directory + "/none.sock"
        for extra in [[], ["--tempfail"]] {
            let result = try runBinary(extra + ["--socket", socket, "--exec", script], stdin: message)
            XCTAssertEqual(result.status, 0, "\(extra)")
        }
    }

    func testRelayRejectsProgramSucceededExitsZero() throws {
        let script = try writeScript("ok", "cat >/dev/null\n")
        let relay = try TestListener(directory: directory, name: "reject.sock", reply: "ERR no")
        let result = try runBinary(["--tempfail", "--socket", relay.socketPath, "--exec", script], stdin: message)
        XCTAssertEqual(result.status, 0)
        XCTAssertNotNil(relay.finish())
    }

    func testSubaddressAndIDNNormalizedBeforeSending() throws {
        let script = try writeScript("ok", "cat >/dev/null\n")
        let relay = try TestListener(directory: directory, name: "idn.sock", reply: "OK 1")
        let result = try runBinary(
            ["--subaddress-delimiter", "+-", "--socket", relay.socketPath, "Jürgen+News@Bücher.Example", "--exec", script],
            stdin: message)
        XCTAssertEqual(result.status, 0)
        let line = try XCTUnwrap(relay.finish())
        XCTAssertTrue(line.hasPrefix("{\"recipients\":[\"jürgen@xn--bcher-kva.example\"]"), line)
    }

    func testTimeoutDoesNotBoundProgram() throws {
        let script = try writeScript("slow", "cat >/dev/null\nsleep 2\n")
        let relay = try TestListener(directory: directory, name: "slow.sock", reply: "OK 2")
        let result = try runBinary(["--timeout", "0.5", "--socket", relay.socketPath, "--exec", script], stdin: message)
        XCTAssertEqual(result.status, 0)
        XCTAssertGreaterThanOrEqual(result.seconds, 2)
        XCTAssertNotNil(relay.finish(), "the notification after a slow delivery must still be sent")
    }

    func testTimeoutBoundsNotification() throws {
        let script = try writeScript("ok", "cat >/dev/null\n")
        let relay = try TestListener(directory: directory, name: "stall.sock", reply: nil, acceptAndStall: true)
        let result = try runBinary(["--timeout", "0.5", "--socket", relay.socketPath, "--exec", script], stdin: message)
        XCTAssertEqual(result.status, 0)
        XCTAssertLessThan(result.seconds, 3)
        _ = relay.finish()
    }

    // MARK: - The message stream

    func testProgramClosingStdinEarly() throws {
        // The program exits 0 without reading; the MTA's write of 4 MiB must still succeed.
        let script = try writeScript("no-read", "exit 0\n")
        let relay = try TestListener(directory: directory, name: "early.sock", reply: "OK 3")
        let body = String(repeating: "0123456789abcdef\n", count: 4 * 1024 * 1024 / 17)
        let input = message + body
        let result = try runBinary(["--socket", relay.socketPath, "--exec", script], stdin: input)
        XCTAssertEqual(result.status, 0)
        XCTAssertTrue(result.stdinWritten, "the MTA's write failed")
        let line = try XCTUnwrap(relay.finish())
        XCTAssertTrue(line.hasSuffix("\"size\":\(messageSize + body.utf8.count)}"), line)
    }

    func testProgramGetsExactBytesInConstantMemory() throws {
        let script = try writeScript("copy", "exec cat > \"$1\"\n")

        // A 48 MiB message with an mbox From line, CRLF headers and bytes of every value in the body.
        let large = directory + "/large.eml"
        try writeLargeMessage(to: large, bodyMiB: 48)
        let small = directory + "/small.eml"
        try message.write(toFile: small, atomically: true, encoding: .utf8)

        let smallRun = try spawnMeasured(
            ["--socket", directory + "/none.sock", "--exec", script, directory + "/small.out"], stdinPath: small)
        let largeRun = try spawnMeasured(
            ["--socket", directory + "/none.sock", "--exec", script, directory + "/large.out"], stdinPath: large)
        XCTAssertEqual(smallRun.status, 0)
        XCTAssertEqual(largeRun.status, 0)
        XCTAssertTrue(try filesEqual(small, directory + "/small.out"), "small message changed on the way")
        XCTAssertTrue(try filesEqual(large, directory + "/large.out"), "large message changed on the way")

        // Buffering the message would add 48 MiB; the reader keeps one 64 KiB buffer and the header block.
        let growthKiB = largeRun.maxResidentKiB - smallRun.maxResidentKiB
        XCTAssertLessThan(
            growthKiB, 8 * 1024,
            "max RSS \(smallRun.maxResidentKiB) KiB for a small message, \(largeRun.maxResidentKiB) KiB for 48 MiB")
    }

    func testProgramInheritsNoSocket() throws {
        // The program lists where its descriptors point, and none may be a socket.
        // The binary is started with only 0, 1 and 2 open, so any socket in the
        // list was opened by notify-deliver (syslog, the relay).
        let listing = directory + "/fds"
        let script = try writeScript("fds", "cat >/dev/null\nfor f in /proc/$$/fd/*; do readlink \"$f\"; done > \"\(listing)\"\nexit 0\n")
        let input = directory + "/message.eml"
        try message.write(toFile: input, atomically: true, encoding: .utf8)
        let relay = try TestListener(directory: directory, name: "fds.sock", reply: "OK 4")
        let result = try spawnMeasured(["--socket", relay.socketPath, "--exec", script], stdinPath: input)
        XCTAssertEqual(result.status, 0)
        XCTAssertNotNil(relay.finish())
        let targets = try String(contentsOfFile: listing, encoding: .utf8).split(separator: "\n")
        XCTAssertFalse(targets.isEmpty)
        for target in targets {
            XCTAssertFalse(target.hasPrefix("socket:"), "the program inherited \(target)")
        }
    }

    func testProgramGetsArgumentsAndEnvironment() throws {
        let output = directory + "/args"
        let script = try writeScript(
            "args", "cat >/dev/null\nprintf '%s|' \"$@\" > \"\(output)\"\nprintf '%s' \"$NOTIFY_TEST_VALUE\" >> \"\(output)\"\n")
        let result = try runBinary(
            ["--socket", directory + "/none.sock", "--exec", script, "-d", "a b", "--", "*"], stdin: message,
            extraEnvironment: ["NOTIFY_TEST_VALUE": "kept"])
        XCTAssertEqual(result.status, 0)
        XCTAssertEqual(try String(contentsOfFile: output, encoding: .utf8), "-d|a b|--|*|kept")
    }

    // MARK: - Helpers

    private func writeScript(_ name: String, _ body: String) throws -> String {
        let path = directory + "/" + name + ".sh"
        try ("#!/bin/sh\n" + body).write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    private struct RunResult {
        var status: Int32
        var stdout: String
        var stderr: String
        var seconds: Double
        var stdinWritten: Bool
    }

    private func runBinary(
        _ arguments: [String], stdin: String, extraEnvironment: [String: String] = [:]
    ) throws -> RunResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try notifyDeliverBinaryPath())
        process.arguments = arguments
        process.environment = ["PATH": "/usr/bin:/bin"].merging(extraEnvironment) { $1 }
        let input = Pipe()
        let output = Pipe()
        let errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors

        let started = Date()
        try process.run()
        // Output is read on other threads, so a full stdout pipe cannot block the write below.
        let stdoutReader = DataReader(output.fileHandleForReading)
        let stderrReader = DataReader(errors.fileHandleForReading)
        var written = true
        do {
            try input.fileHandleForWriting.write(contentsOf: Data(stdin.utf8))
        } catch {
            written = false
        }
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
        return RunResult(
            status: process.terminationStatus, stdout: String(decoding: stdoutReader.wait(), as: UTF8.self),
            stderr: String(decoding: stderrReader.wait(), as: UTF8.self), seconds: Date().timeIntervalSince(started),
            stdinWritten: written)
    }

    /// Runs the binary with stdin from a file and descriptors 3 and up closed,
    /// and returns its status and its max resident set size from wait4(2),
    /// which includes the program it waited for.
    private func spawnMeasured(_ arguments: [String], stdinPath: String) throws -> (status: Int32, maxResidentKiB: Int) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdinPath, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        // The test process may hold descriptors without close-on-exec; mark
        // them, so the binary gets none of them.
        for name in try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            if let fd = Int32(name), fd > 2 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        }

        let argv: [UnsafeMutablePointer<CChar>?] = ([try notifyDeliverBinaryPath()] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/bin:/bin"), nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0]!, &actions, nil, argv, envp)
        guard spawned == 0 else { throw XCTSkip("posix_spawn failed: errno \(spawned)") }

        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        return (ProgramTermination(waitStatus: status).exitStatus, usage.ru_maxrss)
    }

    private func writeLargeMessage(to path: String, bodyMiB: Int) throws {
        FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.write(contentsOf: Data("From a@example.org Tue Jan  1 00:00:00 2026\r\nSubject: big\r\nTo: w@example.com\r\n\r\n".utf8))
        var chunk = [UInt8](repeating: 0, count: 1024 * 1024)
        for megabyte in 0..<bodyMiB {
            for index in chunk.indices { chunk[index] = UInt8(truncatingIfNeeded: index &* 31 &+ megabyte) }
            try handle.write(contentsOf: Data(chunk))
        }
    }

    private func filesEqual(_ first: String, _ second: String) throws -> Bool {
        let a = try FileHandle(forReadingFrom: URL(fileURLWithPath: first))
        let b = try FileHandle(forReadingFrom: URL(fileURLWithPath: second))
        defer {
            try? a.close()
            try? b.close()
        }
        while true {
            let left = try a.read(upToCount: 1024 * 1024) ?? Data()
            let right = try b.read(upToCount: 1024 * 1024) ?? Data()
            if left != right { return false }
            if left.isEmpty { return true }
        }
    }
}

/// Reads a file handle to EOF on its own thread.
private final class DataReader: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) {
        Thread { [self] in
            data = handle.readDataToEndOfFile()
            done.signal()
        }.start()
    }

    /// Waits at most 30 s for EOF and returns what was read.
    func wait() -> Data {
        _ = done.wait(timeout: .now() + 30)
        return data
    }
}
