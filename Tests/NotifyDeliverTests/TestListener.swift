// A relay stand-in for the wrapper tests: a Unix stream socket in a test's
// temporary directory. It replies to one record, or reads one record and never
// replies, or is only checked afterwards for a connection that should not have
// come. Every wait is bounded.

import Foundation
import Glibc

/// One listening Unix socket that takes at most one connection.
final class TestListener: @unchecked Sendable {
    let socketPath: String
    private let listener: Int32
    private let lock = NSLock()
    private var receivedLine: String?
    private var serving: DispatchSemaphore?

    /// Listens on `directory/name`.
    ///
    /// - Parameters:
    ///   - reply: the reply line to send after one record, or nil to serve
    ///     nothing; `finish()` then reports a connection that arrived anyway.
    ///   - acceptAndStall: with `reply` nil, accept the record and never reply.
    init(directory: String, name: String, reply: String?, acceptAndStall: Bool = false) throws {
        socketPath = directory + "/" + name
        unlink(socketPath)
        // Close-on-exec, so the binary under test does not inherit the listener through Foundation's Process.
        listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = Array(socketPath.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0, listen(listener, 4) == 0 else {
            throw NSError(domain: "TestListener", code: Int(errno))
        }
        guard reply != nil || acceptAndStall else { return }

        let done = DispatchSemaphore(value: 0)
        serving = done
        Thread { [self] in
            serveOne(reply: reply)
            done.signal()
        }.start()
    }

    /// Returns the record line received, or nil when no client connected.
    /// Call it after the client process has exited.
    func finish() -> String? {
        if let serving {
            _ = serving.wait(timeout: .now() + 15)
        } else if waitReadable(listener, milliseconds: 0) {
            // A connection arrived although none should have: read what it sent.
            let connection = accept(listener, nil, nil)
            if connection >= 0 {
                store(readLine(connection))
                close(connection)
            }
        }
        lock.lock()
        defer { lock.unlock() }
        return receivedLine
    }

    deinit {
        close(listener)
        unlink(socketPath)
    }

    private func serveOne(reply: String?) {
        guard waitReadable(listener, milliseconds: 10_000) else { return }
        let connection = accept(listener, nil, nil)
        guard connection >= 0 else { return }
        defer { close(connection) }
        store(readLine(connection))

        if let reply {
            let bytes = Array((reply + "\n").utf8)
            _ = bytes.withUnsafeBytes { write(connection, $0.baseAddress, $0.count) }
        }
        // Hold the connection until the client closes it, so a reply is not cut by a reset.
        var byte: UInt8 = 0
        while waitReadable(connection, milliseconds: 10_000), read(connection, &byte, 1) == 1 {}
    }

    private func readLine(_ connection: Int32) -> String {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while waitReadable(connection, milliseconds: 5_000), read(connection, &byte, 1) == 1, byte != 0x0A {
            line.append(byte)
        }
        return String(decoding: line, as: UTF8.self)
    }

    private func store(_ line: String) {
        lock.lock()
        receivedLine = line
        lock.unlock()
    }

    private func waitReadable(_ fd: Int32, milliseconds: Int32) -> Bool {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, milliseconds) > 0
    }
}

/// Returns the path of the notify-deliver binary in the build products directory, next to the test bundle.
func notifyDeliverBinaryPath() throws -> String {
    let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
    let path = URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent("notify-deliver").path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw NSError(
            domain: "notify-deliver not built at \(path): run swift build first", code: Int(ENOENT))
    }
    return path
}
