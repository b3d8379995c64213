// Listening sockets: TCP on IPv4 or IPv6 from a `HOST:PORT` option, and the
// ingest Unix socket with its stale-file handling and permissions.

import CNotifyShim
import Glibc

/// A parsed `HOST:PORT` option value. IPv6 hosts are written in brackets: `[::1]:8000`.
struct ListenAddress: Equatable, CustomStringConvertible {
    var host: String
    var port: UInt16

    var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// True for 127.0.0.0/8, ::1 and localhost.
    var isLoopback: Bool { host == "::1" || host == "localhost" || host.hasPrefix("127.") }

    /// Parses `HOST:PORT`, `[IPV6]:PORT` or `:PORT` (all IPv4 addresses), or returns nil.
    init?(_ text: String) {
        var host: Substring
        var portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                return nil
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        if host.isEmpty { host = "0.0.0.0" }
        guard let port = UInt16(portText) else { return nil }
        self.host = host == "localhost" ? "127.0.0.1" : String(host)
        self.port = port
        guard sockaddrStorage() != nil else { return nil }
    }

    /// Returns the socket address for bind(2), or nil when the host is not a numeric IPv4 or IPv6 address.
    func sockaddrStorage() -> (storage: sockaddr_storage, length: socklen_t, family: Int32)? {
        var storage = sockaddr_storage()
        var v4 = sockaddr_in()
        if inet_pton(AF_INET, host, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = port.bigEndian
            withUnsafeBytes(of: &v4) { source in
                withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: source) }
            }
            return (storage, socklen_t(MemoryLayout<sockaddr_in>.size), AF_INET)
        }
        var v6 = sockaddr_in6()
        if inet_pton(AF_INET6, host, &v6.sin6_addr) == 1 {
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = port.bigEndian
            withUnsafeBytes(of: &v6) { source in
                withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: source) }
            }
            return (storage, socklen_t(MemoryLayout<sockaddr_in6>.size), AF_INET6)
        }
        return nil
    }
}

/// An error while opening a listener, worded for the operator.
struct ListenError: Error, CustomStringConvertible {
    var description: String
}

/// Opens a non-blocking TCP listener on `address`.
func listenTCP(_ address: ListenAddress, backlog: Int32 = 4096) throws(ListenError) -> Int32 {
    guard let (initialStorage, length, family) = address.sockaddrStorage() else {
        throw ListenError(description: "invalid listen address \(address)")
    }
    let fd = notify_socket_nonblocking(family, Int32(SOCK_STREAM.rawValue))
    guard fd >= 0 else { throw ListenError(description: "cannot listen on \(address): \(SystemError(call: "socket"))") }
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    if family == AF_INET6 {
        setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
    }
    var storage = initialStorage
    let bound = withUnsafePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    guard bound == 0, listen(fd, backlog) == 0 else {
        let error = SystemError(call: "bind")
        close(fd)
        throw ListenError(description: "cannot listen on \(address): \(error); is another process using that port?")
    }
    return fd
}

/// Returns the port a listener is bound to (useful with port 0).
func boundPort(_ fd: Int32) -> UInt16 {
    socketAddress(fd, peer: false)?.port ?? 0
}

/// Returns the local address of a TCP socket as `HOST:PORT` (`[HOST]:PORT` for IPv6).
func boundAddress(_ fd: Int32) -> String {
    guard let address = socketAddress(fd, peer: false) else { return "?" }
    return address.host.contains(":") ? "[\(address.host)]:\(address.port)" : "\(address.host):\(address.port)"
}

/// Returns the numeric host and port of a TCP socket's local or peer address, or nil for other families.
func socketAddress(_ fd: Int32, peer: Bool) -> (host: String, port: UInt16)? {
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let result = withUnsafeMutablePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { peer ? getpeername(fd, $0, &length) : getsockname(fd, $0, &length) }
    }
    guard result == 0 else { return nil }
    var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
    return withUnsafeBytes(of: &storage) { raw -> (host: String, port: UInt16)? in
        switch Int32(raw.load(as: sa_family_t.self)) {
        case AF_INET6:
            var v6 = raw.load(as: sockaddr_in6.self)
            inet_ntop(AF_INET6, &v6.sin6_addr, &text, socklen_t(text.count))
            return (nulTerminatedString(text), UInt16(bigEndian: v6.sin6_port))
        case AF_INET:
            var v4 = raw.load(as: sockaddr_in.self)
            inet_ntop(AF_INET, &v4.sin_addr, &text, socklen_t(text.count))
            return (nulTerminatedString(text), UInt16(bigEndian: v4.sin_port))
        default:
            return nil
        }
    }
}

/// Fills a sockaddr_un for `path`, or returns nil when the path is too long.
func unixAddress(_ path: String) -> sockaddr_un? {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    guard bytes.count < capacity else { return nil }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    return address
}

/// Opens the ingest Unix socket at `path` with `mode` and optional `group`.
///
/// A socket file left by a crashed relay (nothing accepts on it) is replaced.
/// A live relay on the path, or a path that exists and is not a socket, is an
/// error, so a second relay or a typo can never take over another file.
func listenUnix(path: String, mode: mode_t, group: gid_t?) throws(ListenError) -> Int32 {
    guard var address = unixAddress(path) else {
        throw ListenError(description: "socket path \"\(path)\" is too long for a Unix socket; pass a shorter --socket")
    }
    try createParentDirectory(of: path)
    try removeStaleSocket(path)

    let fd = notify_socket_nonblocking(AF_UNIX, Int32(SOCK_STREAM.rawValue))
    guard fd >= 0 else { throw ListenError(description: "cannot create the ingest socket: \(SystemError(call: "socket"))") }
    // Bind under a strict umask so the file is never open to others before chmod.
    let oldMask = umask(0o177)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    umask(oldMask)
    guard bound == 0, listen(fd, 1024) == 0 else {
        let error = SystemError(call: "bind")
        close(fd)
        throw ListenError(description: "cannot listen on the ingest socket \"\(path)\": \(error)")
    }
    if let group, chown(path, uid_t.max, group) != 0 {
        let error = SystemError(call: "chown")
        close(fd)
        throw ListenError(description: "cannot set the group of \"\(path)\" to \(group): \(error)")
    }
    guard chmod(path, mode) == 0 else {
        let error = SystemError(call: "chmod")
        close(fd)
        throw ListenError(description: "cannot set the mode of \"\(path)\": \(error)")
    }
    return fd
}

private func createParentDirectory(of path: String) throws(ListenError) {
    guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return }
    let directory = String(path[..<slash])
    var info = stat()
    if stat(directory, &info) == 0 { return }
    // Under /run the MTA's user must reach the socket inside; a user's own directories stay private.
    let mode: mode_t = directory.hasPrefix("/run/") ? 0o755 : 0o700
    var prefix = ""
    for component in directory.split(separator: "/") {
        prefix += "/" + component
        if stat(prefix, &info) == 0 { continue }
        guard mkdir(prefix, mode) == 0 || errno == EEXIST else {
            throw ListenError(
                description: "cannot create the directory \"\(prefix)\" for the ingest socket: "
                    + "\(SystemError(call: "mkdir")); create it or pass another --socket")
        }
    }
}

private func removeStaleSocket(_ path: String) throws(ListenError) {
    var info = stat()
    guard lstat(path, &info) == 0 else { return }
    guard (info.st_mode & S_IFMT) == S_IFSOCK else {
        throw ListenError(
            description: "\"\(path)\" exists and is not a socket; remove it or pass another --socket")
    }
    guard var address = unixAddress(path) else { return }
    let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(probe) }
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    if connected == 0 {
        throw ListenError(
            description: "another relay is already listening on \"\(path)\"; stop it first or pass another --socket")
    }
    guard unlink(path) == 0 else {
        throw ListenError(description: "cannot remove the stale socket \"\(path)\": \(SystemError(call: "unlink"))")
    }
}

/// Decodes a C string buffer up to its first NUL byte.
func nulTerminatedString(_ buffer: [CChar]) -> String {
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}
