// A notify-relay child process for one test: launched with an HTTP listener
// on an ephemeral loopback port and an ingest socket in the test's scratch
// directory, its stderr captured in a log file.
//
// The bound HTTP port is read from the first log line,
// `msg="relay started" ... http=127.0.0.1:PORT`. Every wait here has a
// deadline, and the owning test kills any relay still running in tearDown.

import Foundation
import Glibc

final class RelayProcess {
    let process: Process
    let socketPath: String
    let logPath: String
    /// The HTTP port, known once `waitUntilStarted` has returned.
    private(set) var httpPort: UInt16 = 0

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// Launches the relay without waiting for it to start.
    /// `extraArguments` follow `--listen` and `--socket`. With `openFileLimit`,
    /// a shell lowers RLIMIT_NOFILE and then execs the relay, so the process
    /// id stays the relay's.
    init(socketPath: String, logPath: String, extraArguments: [String] = [], openFileLimit: Int? = nil) throws {
        self.socketPath = socketPath
        self.logPath = logPath

        guard FileManager.default.createFile(atPath: logPath, contents: nil),
            let log = FileHandle(forWritingAtPath: logPath)
        else {
            throw TestFailure("cannot create relay log file \(logPath)")
        }
        let relay = try ProductBinaries.executable("notify-relay")
        let arguments = ["--listen", "127.0.0.1:0", "--socket", socketPath] + extraArguments
        process = Process()
        if let openFileLimit {
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "ulimit -n \(openFileLimit) && exec \"$0\" \"$@\"", relay.path] + arguments
        } else {
            process.executableURL = relay
            process.arguments = arguments
        }
        process.environment = isolatedEnvironment()
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = log
        try process.run()
        try? log.close()
    }

    /// The relay's stderr so far.
    var log: String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    /// Waits for the start-up log line and records the HTTP port from it.
    /// Throws, with the log, if the relay exits or stays silent for `seconds`.
    @discardableResult
    func waitUntilStarted(within seconds: TimeInterval = 10) throws -> UInt16 {
        var port: UInt16? = nil
        let started = waitUntil(seconds: seconds) {
            port = Self.httpPort(inLog: log)
            return port != nil || !process.isRunning
        }
        guard started, let port else {
            let state = process.isRunning ? "still running" : "exited with status \(process.terminationStatus)"
            throw TestFailure("relay did not log its start within \(seconds) s (\(state)); log:\n\(log)")
        }
        httpPort = port
        return port
    }

    /// Parses `http=127.0.0.1:PORT` out of the `relay started` line.
    static func httpPort(inLog log: String) -> UInt16? {
        guard let line = log.split(separator: "\n").first(where: { $0.contains("msg=\"relay started\"") }) else {
            return nil
        }
        for field in line.split(separator: " ") where field.hasPrefix("http=") {
            if let colon = field.lastIndex(of: ":") {
                return UInt16(field[field.index(after: colon)...])
            }
        }
        return nil
    }

    /// Waits up to `seconds` for the relay to exit and returns its exit
    /// status, or nil if it is still running.
    func waitForExit(within seconds: TimeInterval) -> Int32? {
        guard waitUntil(seconds: seconds, { !process.isRunning }) else { return nil }
        return process.terminationStatus
    }

    /// Sends SIGTERM, the orderly shutdown signal.
    func sendTerminate() {
        if process.isRunning { kill(pid, SIGTERM) }
    }

    /// Sends SIGKILL and waits for the process to be reaped, so that it leaves
    /// its socket file behind as a crashed relay would.
    func killHard() {
        if process.isRunning { kill(pid, SIGKILL) }
        _ = waitForExit(within: 10)
    }

    /// Counts the relay's open file descriptors in /proc/PID/fd, or returns
    /// nil when that directory cannot be read.
    func openDescriptorCount() -> Int? {
        try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
    }
}
