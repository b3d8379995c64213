// The two systemd interfaces the relay speaks without linking libsystemd:
// socket activation (sd_listen_fds(3): LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES)
// and service notification (sd_notify(3): a datagram to NOTIFY_SOCKET).
//
// Trust boundary: both come from the environment, which the service manager
// (or whoever started the relay) controls. Inherited descriptors are checked
// to be listening stream sockets before they are used; a NOTIFY_SOCKET that
// cannot be reached is logged and otherwise ignored.

import Glibc

/// A listening socket handed over by the service manager.
struct ActivatedSocket {
    enum Role: String {
        case http, ingest, admin
    }

    var fd: Int32
    var role: Role
    /// For log lines: the name systemd gave, or what the socket is.
    var name: String
}

/// Reads LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES; returns the sockets meant
/// for this process (none when the variables are absent or name another PID).
///
/// Roles come from the names (`FileDescriptorName=` in the .socket unit):
/// `http`, `ingest` or `admin`. An unnamed socket, or one named after its
/// unit (`notify-relay.socket`, systemd's default name), is an HTTP listener
/// when it is TCP and the ingest socket when it is a Unix stream socket.
func takeActivatedSockets(environment: [String: String]) throws(ListenError) -> [ActivatedSocket] {
    guard let pidText = environment["LISTEN_PID"], let countText = environment["LISTEN_FDS"] else { return [] }
    guard let pid = Int32(pidText), pid == getpid() else { return [] }
    guard let count = Int32(countText), count >= 0, count < 1024 else {
        throw ListenError(description: "invalid LISTEN_FDS \(countText) from the service manager")
    }
    let names = environment["LISTEN_FDNAMES"].map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) } ?? []
    // The variables are for this process alone: children such as a future exec must not see them.
    unsetenv("LISTEN_PID")
    unsetenv("LISTEN_FDS")
    unsetenv("LISTEN_FDNAMES")

    var sockets: [ActivatedSocket] = []
    for index in 0..<count {
        let fd = 3 + index
        let givenName = Int(index) < names.count ? names[Int(index)] : ""
        let family = try socketFamily(of: fd, name: givenName)
        let role: ActivatedSocket.Role
        if let named = ActivatedSocket.Role(rawValue: givenName) {
            role = named
        } else if givenName.isEmpty || givenName == "unknown" || givenName == "stored" || givenName.hasSuffix(".socket") {
            // systemd names a socket after its unit when FileDescriptorName= is not set.
            role = family == AF_UNIX ? .ingest : .http
        } else {
            throw ListenError(
                description: "activated socket \(index) is named \"\(givenName)\"; name it http, ingest or admin "
                    + "with FileDescriptorName= in the .socket unit")
        }
        // Inherited descriptors are blocking and may lack close-on-exec.
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let label = givenName.isEmpty ? (family == AF_UNIX ? "unix" : "tcp") : givenName
        sockets.append(ActivatedSocket(fd: fd, role: role, name: "activated \(label) fd \(fd)"))
    }
    return sockets
}

/// Returns the address family of a listening stream socket, or throws an error naming the descriptor.
private func socketFamily(of fd: Int32, name givenName: String) throws(ListenError) -> Int32 {
    let name = givenName.isEmpty ? "unnamed" : givenName
    var value: Int32 = 0
    var length = socklen_t(MemoryLayout<Int32>.size)
    guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &value, &length) == 0, value == Int32(SOCK_STREAM.rawValue) else {
        throw ListenError(description: "activated descriptor \(fd) (\(name)) is not a stream socket")
    }
    guard getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &length) == 0, value == 1 else {
        throw ListenError(description: "activated descriptor \(fd) (\(name)) is not listening")
    }
    guard getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &value, &length) == 0 else {
        throw ListenError(description: "cannot read the family of activated descriptor \(fd): \(SystemError(call: "getsockopt"))")
    }
    return value
}

/// Sends sd_notify(3) state lines to NOTIFY_SOCKET, when it is set.
struct ServiceNotifier {
    private let path: String?

    init(environment: [String: String]) {
        let value = environment["NOTIFY_SOCKET"] ?? ""
        path = value.isEmpty ? nil : value
        // Like sd_notify's unset_environment: programs the relay might start must not inherit it.
        if path != nil { unsetenv("NOTIFY_SOCKET") }
    }

    var isEnabled: Bool { path != nil }

    /// Sends `state` (lines such as `READY=1`) as one datagram; returns an error text on failure.
    func send(_ state: String) -> String? {
        guard let path else { return nil }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        // "@name" is an abstract socket: a leading NUL byte instead of the '@'.
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity, bytes.first == 0 || bytes.first == UInt8(ascii: "/") else {
            return "NOTIFY_SOCKET \"\(path)\" is not an absolute path or @abstract name"
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1))

        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return SystemError(call: "socket").description }
        defer { close(fd) }
        let sent = state.withCString { text in
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, text, strlen(text), Int32(MSG_NOSIGNAL), $0, length) }
            }
        }
        return sent < 0 ? SystemError(call: "sendto").description : nil
    }
}
