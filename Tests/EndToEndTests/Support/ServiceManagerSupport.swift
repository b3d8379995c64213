// The parts of a service manager such as systemd that the tests play
// themselves. A datagram socket receives sd_notify(3) state lines
// (NOTIFY_SOCKET). Listening sockets are created before the relay starts, and
// a child process inherits them at descriptors 3, 4, … as socket activation
// (sd_listen_fds(3)) passes them.
//
// Foundation's Process closes every descriptor above 2 in the child, so
// `SpawnedProcess` uses posix_spawn(3) with file actions instead and reaps the
// child with waitpid(2). Every wait here has a deadline.

import Foundation
import Glibc

/// A child process started with posix_spawn(3), with `inheritedDescriptors`
/// placed at 3, 4, … and no other descriptor of the test process.
final class SpawnedProcess {
    let pid: pid_t
    let logPath: String
    /// The exit status once reaped: the exit code, or 128 plus the signal number.
    private var exitStatus: Int32? = nil

    /// Starts `executable` with `arguments` (without argv[0]) and exactly
    /// `environment`; stdin and stdout are /dev/null and stderr goes to `logPath`.
    init(
        executable: String, arguments: [String], environment: [String: String], inheritedDescriptors: [Int32] = [],
        logPath: String
    ) throws {
        self.logPath = logPath
        guard FileManager.default.createFile(atPath: logPath, contents: nil) else {
            throw TestFailure("cannot create log file \(logPath)")
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, logPath, O_WRONLY | O_APPEND, 0)

        // Descriptors of the test process that lack close-on-exec would leak
        // into the child; close them there first.
        for fd in inheritableDescriptors() {
            posix_spawn_file_actions_addclose(&actions, fd)
        }

        // dup2 onto the same number would keep close-on-exec, so each source
        // is first copied above the target range.
        var sources: [Int32] = []
        defer { for fd in sources { Glibc.close(fd) } }
        for fd in inheritedDescriptors {
            let copy = fcntl(fd, F_DUPFD_CLOEXEC, 3 + Int32(inheritedDescriptors.count) + 16)
            guard copy >= 0 else { throw TestFailure("cannot copy descriptor \(fd): \(errnoText())") }
            sources.append(copy)
        }
        for (index, fd) in sources.enumerated() {
            posix_spawn_file_actions_adddup2(&actions, fd, 3 + Int32(index))
        }

        let argv = [executable] + arguments
        let envp = environment.map { "\($0.key)=\($0.value)" }
        var childPID: pid_t = 0
        let result = withCStringArray(argv) { argvPointer in
            withCStringArray(envp) { envpPointer in
                posix_spawn(&childPID, executable, &actions, nil, argvPointer, envpPointer)
            }
        }
        guard result == 0 else {
            throw TestFailure("posix_spawn of \(executable) failed: \(String(cString: strerror(result)))")
        }
        pid = childPID
    }

    /// The child's stderr so far.
    var log: String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    /// Whether the child still runs; reaps it once it has exited.
    var isRunning: Bool {
        if exitStatus != nil { return false }
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        guard result == pid else { return result == 0 }
        let signal = status & 0x7F
        exitStatus = signal == 0 ? (status >> 8) & 0xFF : 128 + signal
        return false
    }

    /// Waits up to `seconds` for the child to exit and returns its exit
    /// status, or nil if it is still running.
    func waitForExit(within seconds: TimeInterval) -> Int32? {
        guard waitUntil(seconds: seconds, { !isRunning }) else { return nil }
        return exitStatus
    }

    /// Waits for the `relay started` log line and returns the HTTP port in it.
    func waitUntilStarted(within seconds: TimeInterval = 10) throws -> UInt16 {
        var port: UInt16? = nil
        let started = waitUntil(seconds: seconds) {
            port = RelayProcess.httpPort(inLog: log)
            return port != nil || !isRunning
        }
        guard started, let port else {
            let state = isRunning ? "still running" : "exited with status \(exitStatus ?? -1)"
            throw TestFailure("relay did not log its start within \(seconds) s (\(state)); log:\n\(log)")
        }
        return port
    }

    /// Returns the value of `name=` in the `relay started` log line.
    func startedLogField(_ name: String) -> String? {
        guard let line = log.split(separator: "\n").first(where: { $0.contains("msg=\"relay started\"") }) else {
            return nil
        }
        return logFieldValue(name, inLine: String(line))
    }

    func sendTerminate() {
        if isRunning { kill(pid, SIGTERM) }
    }

    /// Sends SIGKILL if the child still runs and reaps it.
    func killHard() {
        if isRunning { kill(pid, SIGKILL) }
        _ = waitForExit(within: 10)
    }
}

/// Returns the test process's descriptors above 2 that lack close-on-exec.
private func inheritableDescriptors() -> [Int32] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    return names.compactMap { Int32($0) }.filter { fd in
        guard fd > 2 else { return false }
        let flags = fcntl(fd, F_GETFD)
        return flags >= 0 && flags & FD_CLOEXEC == 0
    }
}

/// Calls `body` with a NULL-terminated array of C strings, as execve(2) takes.
private func withCStringArray<Result>(
    _ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> Result
) -> Result {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for pointer in pointers { free(pointer) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// A datagram Unix socket that receives sd_notify(3) messages, bound to a
/// path or, for a name that starts with `@`, to an abstract address.
final class NotifySocketListener {
    private var fd: Int32
    /// The value for NOTIFY_SOCKET: the path, or `@name`.
    let address: String

    init(address: String) throws {
        self.address = address
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket() failed: \(errnoText())") }

        var socketAddress = sockaddr_un()
        socketAddress.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(address.utf8)
        let isAbstract = bytes.first == UInt8(ascii: "@")
        // An abstract address is a NUL byte and the name, with no terminating NUL.
        if isAbstract { bytes[0] = 0 }
        guard bytes.count < MemoryLayout.size(ofValue: socketAddress.sun_path) else {
            Glibc.close(fd)
            throw TestFailure("notify socket address too long: \(address)")
        }
        withUnsafeMutableBytes(of: &socketAddress.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (isAbstract ? 0 : 1))
        let result = withUnsafePointer(to: &socketAddress) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard result == 0 else {
            let text = errnoText()
            Glibc.close(fd)
            throw TestFailure("bind of notify socket \(address) failed: \(text)")
        }
    }

    deinit {
        Glibc.close(fd)
    }

    /// Receives the next datagram as text, or returns nil when none arrives before `deadline`.
    func receive(deadline: Deadline) throws -> String? {
        while true {
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, deadline.remainingMilliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                throw TestFailure("poll failed: \(errnoText())")
            }
            if ready == 0 { return nil }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR { continue }
                throw TestFailure("recv on notify socket failed: \(errnoText())")
            }
            return String(decoding: buffer[0..<count], as: UTF8.self)
        }
    }

    /// Receives datagrams until one contains the line `line`, and returns
    /// that datagram; throws with everything received if none does in time.
    func receive(containingLine line: String, within seconds: TimeInterval) throws -> String {
        let deadline = Deadline(seconds: seconds)
        var received: [String] = []
        while let message = try receive(deadline: deadline) {
            if message.split(separator: "\n").contains(Substring(line)) { return message }
            received.append(message)
        }
        throw TestFailure("no notify message with \(line) within \(seconds) s; received: \(received)")
    }
}

/// A listening TCP socket on 127.0.0.1 with a port chosen by the kernel,
/// created by the test as a service manager creates one before the service.
final class ListeningTCPSocket {
    private(set) var fd: Int32
    let port: UInt16

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket() failed: \(errnoText())") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ready = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                bind(fd, generic, length) == 0 && getsockname(fd, generic, &length) == 0
            }
        }
        guard ready, listen(fd, 64) == 0 else {
            let text = errnoText()
            Glibc.close(fd)
            throw TestFailure("listening on 127.0.0.1:0 failed: \(text)")
        }
        self.fd = fd
        port = UInt16(bigEndian: address.sin_port)
    }

    deinit {
        close()
    }

    /// Closes the test's copy; a child that inherited the socket keeps listening.
    func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }
}

/// A listening Unix stream socket at `path`, created by the test.
final class ListeningUnixSocket {
    private(set) var fd: Int32
    let path: String

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket() failed: \(errnoText())") }
        var address = try unixAddress(path)
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            let text = errnoText()
            Glibc.close(fd)
            throw TestFailure("listening on \(path) failed: \(text)")
        }
    }

    deinit {
        close()
    }

    /// Closes the test's copy; a child that inherited the socket keeps listening.
    func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }
}
