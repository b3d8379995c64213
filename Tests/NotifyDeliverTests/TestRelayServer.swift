// A tiny ingest server for tests: one Unix stream socket in a temporary
// directory, one connection, one scripted reply. Every wait is bounded.

import Foundation
import Glibc

/// What the test server does after reading one request line.
enum ServerBehavior {
    case reply(String)
    case neverReply
    case closeWithoutReply
}

/// A one-shot Unix socket server running on its own thread.
final class TestRelayServer: @unchecked Sendable {
    let directory: String
    let socketPath: String
    private let listener: Int32
    private let lock = NSLock()
    private var receivedLine: String?
    private let finished = DispatchSemaphore(value: 0)

    init(behavior: ServerBehavior) throws {
        directory = try TestRelayServer.makeTemporaryDirectory()
        socketPath = directory + "/relay.sock"
        listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
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
            throw NSError(domain: "TestRelayServer", code: Int(errno))
        }
        let thread = Thread { [self] in
            serve(behavior)
            finished.signal()
        }
        thread.start()
    }

    /// Waits at most 15 s for the server to finish and returns the request line it received.
    func waitForLine() -> String? {
        _ = finished.wait(timeout: .now() + 15)
        lock.lock()
        defer { lock.unlock() }
        return receivedLine
    }

    deinit {
        close(listener)
        unlink(socketPath)
        rmdir(directory)
    }

    private func serve(_ behavior: ServerBehavior) {
        guard waitReadable(listener, milliseconds: 10_000) else { return }
        let connection = accept(listener, nil, nil)
        guard connection >= 0 else { return }
        defer { close(connection) }

        var line: [UInt8] = []
        var byte: UInt8 = 0
        while waitReadable(connection, milliseconds: 10_000), read(connection, &byte, 1) == 1 {
            if byte == 0x0A { break }
            line.append(byte)
        }
        lock.lock()
        receivedLine = String(decoding: line, as: UTF8.self)
        lock.unlock()

        switch behavior {
        case .reply(let text):
            let bytes = Array((text + "\n").utf8)
            _ = bytes.withUnsafeBytes { write(connection, $0.baseAddress, $0.count) }
            // Wait for the client to close, so the reply is not cut by a reset.
            _ = waitReadable(connection, milliseconds: 5_000)
        case .neverReply:
            // Hold the connection until the client gives up and closes it.
            while waitReadable(connection, milliseconds: 15_000), read(connection, &byte, 1) == 1 {}
        case .closeWithoutReply:
            break
        }
    }

    private func waitReadable(_ fd: Int32, milliseconds: Int32) -> Bool {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, milliseconds) > 0
    }

    static func makeTemporaryDirectory() throws -> String {
        var template = Array("/tmp/notify-deliver-test-XXXXXX".utf8CString)
        guard let result = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw NSError(domain: "mkdtemp", code: Int(errno))
        }
        return String(cString: result)
    }
}
