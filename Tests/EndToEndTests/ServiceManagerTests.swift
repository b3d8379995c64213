// The relay under a service manager, without systemd itself running:
// readiness notification (NOTIFY_SOCKET, on a path or an abstract address)
// and socket activation (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES) with sockets
// the test creates, plus one run under Debian's systemd-socket-activate.
//
// The relay must know its listeners are its own: a LISTEN_PID naming another
// process is ignored, and an inherited descriptor that is not a listening
// stream socket stops start-up with a message naming it.

import Foundation
import Glibc
import XCTest

final class ServiceManagerTests: RelayTestCase {
    /// Children started by this test, killed in tearDown if still running.
    private var children: [SpawnedProcess] = []

    override func tearDown() {
        for child in children where child.isRunning {
            child.killHard()
        }
        if let run = testRun, run.totalFailureCount > 0 {
            for child in children {
                print("child (pid \(child.pid)) log:\n\(child.log)")
            }
        }
        children = []
        super.tearDown()
    }

    /// Where LISTEN_PID points.
    private enum ListenPID {
        /// The relay's own pid, written by the shell that then execs the relay.
        case relay
        /// The test process: a parent that passed its variables on by mistake.
        case testProcess
    }

    /// Starts the relay through `sh`, so that LISTEN_PID can be the pid that
    /// exec keeps, with `descriptors` at 3, 4, … and `environment` added to an
    /// isolated one. The relay's own options are `--listen 127.0.0.1:0
    /// --socket <scratch>/own.sock` and `extraArguments`.
    private func spawnRelay(
        descriptors: [Int32] = [], listenPID: ListenPID? = nil, environment: [String: String] = [:],
        extraArguments: [String] = []
    ) throws -> SpawnedProcess {
        let relay = try ProductBinaries.executable("notify-relay")
        var script = #"exec "$0" "$@""#
        switch listenPID {
        case .relay?: script = "LISTEN_PID=$$ " + script
        case .testProcess?: script = "LISTEN_PID=\(getpid()) " + script
        case nil: break
        }
        let arguments = ["-c", script, relay.path, "--listen", "127.0.0.1:0", "--socket", ownSocketPath] + extraArguments
        let child = try SpawnedProcess(
            executable: "/bin/sh", arguments: arguments,
            environment: serviceManagerFreeEnvironment().merging(environment) { $1 }, inheritedDescriptors: descriptors,
            logPath: scratchPath("child-\(children.count).log"))
        children.append(child)
        return child
    }

    /// The --socket path given to every relay here, which activation must leave unused.
    private var ownSocketPath: String { scratchPath("own.sock") }

    // MARK: Readiness

    func testReadyAndStoppingNotifications() throws {
        let notify = try NotifySocketListener(address: scratchPath("notify.sock"))
        let relay = try spawnRelay(environment: ["NOTIFY_SOCKET": notify.address])

        let ready = try notify.receive(containingLine: "READY=1", within: 10)

        // At READY=1 the listeners are open: a request succeeds at once.
        let port = try XCTUnwrap(RelayProcess.httpPort(inLog: relay.log), "READY=1 before the start-up line:\n\(relay.log)")
        let response = try HTTPTestClient(port: port).get("/ready?timeout=0")
        XCTAssertEqual(response.status, 204)
        let lines = ready.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains("MAINPID=\(relay.pid)"), "message: \(ready)")
        let status = lines.first { $0.hasPrefix("STATUS=") }
        XCTAssertNotNil(status, "no STATUS line in: \(ready)")
        XCTAssertTrue(status?.contains("127.0.0.1:\(port)") ?? false, "STATUS does not name the listener: \(ready)")

        relay.sendTerminate()
        _ = try notify.receive(containingLine: "STOPPING=1", within: 5)
        XCTAssertEqual(relay.waitForExit(within: 5), 0, "exit status after SIGTERM")
    }

    func testReadyOnAbstractNotifySocket() throws {
        let name = "@notify-e2e-" + UUID().uuidString.prefix(12)
        let notify = try NotifySocketListener(address: String(name))
        let relay = try spawnRelay(environment: ["NOTIFY_SOCKET": notify.address])

        let ready = try notify.receive(containingLine: "READY=1", within: 10)

        XCTAssertTrue(ready.contains("MAINPID=\(relay.pid)"), "message: \(ready)")
        relay.sendTerminate()
        _ = try notify.receive(containingLine: "STOPPING=1", within: 5)
        XCTAssertEqual(relay.waitForExit(within: 5), 0)
    }

    // MARK: Socket activation

    func testActivatedSocketsReplaceListeners() throws {
        let http = try ListeningTCPSocket()
        let ingest = try ListeningUnixSocket(path: scratchPath("activated.sock"))
        let notify = try NotifySocketListener(address: scratchPath("notify.sock"))
        let relay = try spawnRelay(
            descriptors: [http.fd, ingest.fd], listenPID: .relay,
            environment: ["LISTEN_FDS": "2", "LISTEN_FDNAMES": "http:ingest", "NOTIFY_SOCKET": notify.address])
        // The relay has its own copies now, so the test's copies only keep the sockets open.
        http.close()
        ingest.close()

        let port = try relay.waitUntilStarted()
        XCTAssertEqual(port, http.port, "http= does not show the activated port: \(relay.log)")
        let activated = relay.startedLogField("activated") ?? ""
        XCTAssertTrue(activated.contains("http fd 3"), "activated=\(activated)")
        XCTAssertTrue(activated.contains("ingest fd 4"), "activated=\(activated)")
        let ready = try notify.receive(containingLine: "READY=1", within: 10)
        XCTAssertTrue(ready.contains("127.0.0.1:\(http.port)"), "STATUS does not name the activated port: \(ready)")

        // A long-poll on the activated port receives a record sent to the activated ingest socket.
        let waiter = try HTTPTestClient(port: http.port)
        try waiter.sendGet("/activated?format=json&timeout=30")
        let barrier = try HTTPTestClient(port: http.port).get("/a/b")
        XCTAssertEqual(barrier.status, 404)
        let reply = try sendIngestLine(#"{"recipients":["activated"],"subject":"by activation"}"#, toPath: ingest.path)
        XCTAssertTrue(reply.hasPrefix("OK "), "ingest reply: \(reply)")
        let response = try waiter.readResponse(within: 10)
        XCTAssertEqual(response.status, 200, response.bodyText)
        XCTAssertEqual(try response.pollBody().messages.first?.subject, "by activation")
        XCTAssertFalse(FileManager.default.fileExists(atPath: ownSocketPath), "--socket path created despite activation")

        // The activated socket file belongs to the service manager and outlives the relay.
        relay.sendTerminate()
        XCTAssertEqual(relay.waitForExit(within: 5), 0)
        XCTAssertTrue(isSocketFile(ingest.path), "the relay removed the activated socket file at exit")
    }

    func testUnnamedActivatedSocketsByFamily() throws {
        let http = try ListeningTCPSocket()
        let ingest = try ListeningUnixSocket(path: scratchPath("activated.sock"))
        let relay = try spawnRelay(descriptors: [ingest.fd, http.fd], listenPID: .relay, environment: ["LISTEN_FDS": "2"])
        http.close()
        ingest.close()

        XCTAssertEqual(try relay.waitUntilStarted(), http.port, "the TCP socket at fd 4 is not the HTTP listener")
        XCTAssertEqual(try HTTPTestClient(port: http.port).get("/unnamed?timeout=0").status, 204)
        let reply = try sendIngestLine("unnamed", toPath: ingest.path)
        XCTAssertTrue(reply.hasPrefix("OK "), "ingest reply on the Unix socket at fd 3: \(reply)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: ownSocketPath))
    }

    func testActivatedAdminSocket() throws {
        let http = try ListeningTCPSocket()
        let ingest = try ListeningUnixSocket(path: scratchPath("activated.sock"))
        let admin = try ListeningTCPSocket()
        let relay = try spawnRelay(
            descriptors: [http.fd, ingest.fd, admin.fd], listenPID: .relay,
            environment: ["LISTEN_FDS": "3", "LISTEN_FDNAMES": "http:ingest:admin"],
            extraArguments: ["--admin-listen", "127.0.0.1:0"])
        http.close()
        ingest.close()
        admin.close()

        XCTAssertEqual(try relay.waitUntilStarted(), http.port)
        XCTAssertEqual(relay.startedLogField("admin"), "127.0.0.1:\(admin.port)", "the activated admin socket is not used")
        let health = try HTTPTestClient(port: admin.port).get("/healthz")
        XCTAssertEqual(health.status, 200, health.bodyText)
        let metrics = try HTTPTestClient(port: admin.port).get("/metrics")
        XCTAssertTrue(metrics.bodyText.contains("notify_connections_open"), metrics.bodyText)
    }

    func testNonListeningDescriptorStopsStart() throws {
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else { throw TestFailure("pipe failed: \(errnoText())") }
        for end in pipeEnds { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        defer { for end in pipeEnds { close(end) } }
        let unconnected = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard unconnected >= 0 else { throw TestFailure("socket() failed: \(errnoText())") }
        defer { close(unconnected) }

        let cases: [(descriptor: Int32, what: String)] = [
            (pipeEnds[0], "the read end of a pipe"),
            (unconnected, "a TCP socket that does not listen"),
        ]
        for (descriptor, what) in cases {
            let relay = try spawnRelay(descriptors: [descriptor], listenPID: .relay, environment: ["LISTEN_FDS": "1"])

            let status = relay.waitForExit(within: 10)

            XCTAssertNotNil(status, "\(what): the relay still runs")
            XCTAssertNotEqual(status, 0, "\(what): exit status 0")
            XCTAssertTrue(relay.log.contains("descriptor 3"), "\(what): message does not name descriptor 3: \(relay.log)")
            XCTAssertFalse(relay.log.contains("relay started"), "\(what): \(relay.log)")
        }
    }

    func testUnnamedDescriptorErrorWording() throws {
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else { throw TestFailure("pipe failed: \(errnoText())") }
        for end in pipeEnds { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        defer { for end in pipeEnds { close(end) } }

        // Without LISTEN_FDNAMES the descriptor has no name to show.
        let relay = try spawnRelay(descriptors: [pipeEnds[0]], listenPID: .relay, environment: ["LISTEN_FDS": "1"])

        XCTAssertNotNil(relay.waitForExit(within: 10), "the relay still runs")
        XCTAssertFalse(relay.log.contains("()"), "message has an empty name in parentheses: \(relay.log)")
    }

    func testUnreachableNotifySocketLogged() throws {
        let missing = scratchPath("missing-notify.sock")
        let relay = try spawnRelay(environment: ["NOTIFY_SOCKET": missing])

        let port = try relay.waitUntilStarted()

        XCTAssertEqual(try HTTPTestClient(port: port).get("/still?timeout=0").status, 204)
        XCTAssertTrue(
            waitUntil(seconds: 5) { relay.log.contains("level=warning") && relay.log.contains("service manager") },
            "no warning about the unreachable NOTIFY_SOCKET:\n\(relay.log)")
        relay.sendTerminate()
        XCTAssertEqual(relay.waitForExit(within: 5), 0)
    }

    func testForeignListenPIDIgnored() throws {
        let http = try ListeningTCPSocket()
        let ingest = try ListeningUnixSocket(path: scratchPath("activated.sock"))
        let relay = try spawnRelay(
            descriptors: [http.fd, ingest.fd], listenPID: .testProcess,
            environment: ["LISTEN_FDS": "2", "LISTEN_FDNAMES": "http:ingest"])

        let port = try relay.waitUntilStarted()

        XCTAssertNotEqual(port, http.port, "the relay used descriptors meant for process \(getpid())")
        XCTAssertNil(relay.startedLogField("activated"), "activated= logged for a foreign LISTEN_PID")
        XCTAssertEqual(try HTTPTestClient(port: port).get("/own?timeout=0").status, 204)
        XCTAssertTrue(isSocketFile(ownSocketPath), "--socket path not created")
        XCTAssertTrue(try sendIngestLine("own", toPath: ownSocketPath).hasPrefix("OK "))
    }

    func testSystemdSocketActivateStartsRelay() throws {
        let tool = "/usr/bin/systemd-socket-activate"
        guard FileManager.default.isExecutableFile(atPath: tool) else {
            throw XCTSkip("\(tool) is not installed (Debian package systemd)")
        }
        let port = try unusedLoopbackPort()
        let ingestPath = scratchPath("activated.sock")
        let relayPath = try ProductBinaries.executable("notify-relay").path
        let child = try SpawnedProcess(
            executable: tool,
            arguments: [
                "--listen=127.0.0.1:\(port)", "--listen=\(ingestPath)", "--fdname=http:ingest",
                relayPath, "--listen", "127.0.0.1:0", "--socket", ownSocketPath,
            ],
            environment: serviceManagerFreeEnvironment(), logPath: scratchPath("child-\(children.count).log"))
        children.append(child)

        // The tool execs the relay (keeping its pid) on the first connection,
        // which the relay then accepts from the inherited socket.
        XCTAssertTrue(waitUntil(seconds: 10) { isSocketFile(ingestPath) || !child.isRunning }, child.log)
        let response = try HTTPTestClient(port: port).get("/first?timeout=0", within: 10)
        XCTAssertEqual(response.status, 204)
        XCTAssertEqual(try child.waitUntilStarted(), port)
        XCTAssertNotNil(child.startedLogField("activated"), child.log)
        XCTAssertTrue(try sendIngestLine("first", toPath: ingestPath).hasPrefix("OK "))
        XCTAssertFalse(FileManager.default.fileExists(atPath: ownSocketPath))

        child.sendTerminate()
        XCTAssertEqual(child.waitForExit(within: 5), 0)
        XCTAssertTrue(isSocketFile(ingestPath), "the relay removed the activated socket file at exit")
    }

    /// Returns an isolated environment without the service manager's
    /// variables, in case the test run itself is a systemd service.
    private func serviceManagerFreeEnvironment() -> [String: String] {
        var environment = isolatedEnvironment()
        environment["NOTIFY_SOCKET"] = nil
        environment["LISTEN_FDNAMES"] = nil
        return environment
    }

    /// Sends one ingest line to the Unix socket at `path` and returns the reply line.
    private func sendIngestLine(_ line: String, toPath path: String) throws -> String {
        let socket = try TestSocket.connectUnix(path: path)
        try socket.send(line + "\n")
        guard let reply = try socket.readLine(deadline: Deadline(seconds: 10)) else {
            throw TestFailure("ingest socket \(path) closed without a reply to \(line)")
        }
        return reply
    }
}
