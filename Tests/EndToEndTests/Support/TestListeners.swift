// Listening sockets that tests create themselves: a Unix socket that never
// accepts (a relay that hangs), a Unix socket file with no listener (a relay
// that crashed), and a free loopback TCP port for options that need a fixed
// port.

import Glibc

/// A Unix stream socket that listens but never accepts, so a client's
/// connect succeeds (the kernel queues it) and its reads then wait forever.
final class SilentUnixListener {
    private var fd: Int32

    init(path: String) throws {
        fd = try bindUnixSocket(path: path)
        guard listen(fd, 16) == 0 else {
            let text = errnoText()
            Glibc.close(fd)
            throw TestFailure("listen on \(path) failed: \(text)")
        }
    }

    deinit {
        Glibc.close(fd)
    }
}

/// Leaves a Unix socket file at `path` with nothing listening on it,
/// as a relay killed with SIGKILL does.
func createStaleSocketFile(path: String) throws {
    let fd = try bindUnixSocket(path: path)
    Glibc.close(fd)
}

/// Returns whether `path` exists and is a socket, without following links.
func isSocketFile(_ path: String) -> Bool {
    var info = stat()
    guard lstat(path, &info) == 0 else { return false }
    return (info.st_mode & S_IFMT) == S_IFSOCK
}

/// Returns a loopback TCP port that was free a moment ago. The kernel picks
/// it for a socket bound to port 0, which is then closed.
/// NOTE: another process may take the port before the relay binds it, which
/// is unlikely on a test machine but possible.
func unusedLoopbackPort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket() failed: \(errnoText())") }
    defer { Glibc.close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
            bind(fd, generic, length) == 0 && getsockname(fd, generic, &length) == 0
        }
    }
    guard bound else { throw TestFailure("binding 127.0.0.1:0 failed: \(errnoText())") }
    return UInt16(bigEndian: address.sin_port)
}

private func bindUnixSocket(path: String) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket() failed: \(errnoText())") }
    var address = try unixAddress(path)
    let result = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
    guard result == 0 else {
        let text = errnoText()
        Glibc.close(fd)
        throw TestFailure("bind to \(path) failed: \(text)")
    }
    return fd
}
