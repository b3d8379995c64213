// Reads the relay's state from /proc: resident memory, open descriptors, and
// the receive queues of its accepted TCP connections.
//
// The relay exposes no subscriber count, so readiness is inferred. Every
// client's connection has been accepted once the relay's descriptor count has
// grown by the number of clients. Every request has been read once all the
// relay-side sockets on its HTTP port have an empty receive queue. The relay
// parses a request and subscribes the client in one event handler call, so
// at most the request being handled at probe time is not yet subscribed.
//
// Limits: IPv4 only (/proc/net/tcp), and the relay must be the only process
// listening on `port`. Linux only.

import Glibc

/// Read-only view of one relay process through /proc.
struct RelayProbe {
    let pid: Int32
    let port: UInt16

    /// VmRSS and RssAnon of the relay in KiB, from /proc/PID/status.
    func memoryKiB() -> (rss: Int, anonymous: Int)? {
        guard let text = readWholeFile("/proc/\(pid)/status") else { return nil }
        var rss: Int? = nil
        var anonymous = 0
        for line in text.split(separator: "\n") {
            if line.hasPrefix("VmRSS:") { rss = kibValue(line) }
            if line.hasPrefix("RssAnon:") { anonymous = kibValue(line) ?? 0 }
        }
        guard let rss else { return nil }
        return (rss, anonymous)
    }

    /// User and system CPU time of the relay in clock ticks (usually 10 ms),
    /// fields 14 and 15 of /proc/PID/stat.
    func cpuTicks() -> (user: Int, system: Int)? {
        guard let text = readWholeFile("/proc/\(pid)/stat"), let commandEnd = text.lastIndex(of: ")") else { return nil }
        // After the command name: state is field 3, so utime is the 12th field from here.
        let fields = text[text.index(after: commandEnd)...].split(separator: " ")
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return nil }
        return (user, system)
    }

    /// Number of entries in /proc/PID/fd, or nil when the process is gone.
    func openDescriptorCount() -> Int? {
        guard let directory = opendir("/proc/\(pid)/fd") else { return nil }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let isDotEntry = withUnsafeBytes(of: entry.pointee.d_name) { name in
                name[0] == 0x2E && (name[1] == 0 || (name[1] == 0x2E && name[2] == 0))
            }
            if !isDotEntry { count += 1 }
        }
        return count
    }

    /// Established sockets whose local port is the relay's HTTP port, and how
    /// many of them still hold unread bytes.
    func acceptedSocketQueues() -> (established: Int, unread: Int) {
        guard let text = readWholeFile("/proc/net/tcp") else { return (0, 0) }
        let portField = ":" + hex4(port)
        var established = 0
        var unread = 0
        for line in text.split(separator: "\n").dropFirst() {
            // Fields: sl local_address rem_address st tx_queue:rx_queue ...
            let fields = line.split(separator: " ", maxSplits: 5)
            guard fields.count >= 5, fields[1].hasSuffix(portField), fields[3] == "01" else { continue }
            established += 1
            if let colon = fields[4].firstIndex(of: ":"),
                let queued = Int(fields[4][fields[4].index(after: colon)...], radix: 16), queued > 0
            {
                unread += 1
            }
        }
        return (established, unread)
    }

    private func kibValue(_ line: Substring) -> Int? {
        line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }
    }

    private func hex4(_ value: UInt16) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: 4 - digits.count) + digits
    }
}

/// The contents of a (proc) file as text, read until end of file.
func readWholeFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { break }
        bytes.append(contentsOf: chunk[0..<count])
    }
    return String(decoding: bytes, as: UTF8.self)
}
