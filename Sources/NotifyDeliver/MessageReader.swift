// Reads the delivered message from stdin as a stream: keeps the header block
// (up to a cap) and counts the size of the whole message in constant memory.
//
// Postfix local(8) and Exim pipe transports may put an mbox `From sender date`
// line before the message. That line is skipped and not counted in the size,
// so the size matches what the sender submitted plus the MTA's own headers.
//
// Trust boundary: stdin is the message a stranger sent, of any size and
// content. Memory is bounded by the header cap plus one 64 KiB read buffer, and
// every read waits at most until the deadline.
//
// Known limits: when the deadline passes before EOF, reading stops and the size
// is unknown. The MTA writing the rest then gets EPIPE once this process exits.

import Glibc

/// Consumes message bytes chunk by chunk, collecting the header block and counting the size.
public struct MessageReader: Sendable {
    /// Default cap of the header block kept in memory, in bytes.
    public static let defaultHeaderLimit = 256 * 1024

    private enum Phase {
        case start, mboxFromLine, headers, body
    }

    /// Maximum header bytes kept; past it, bytes are counted but not kept.
    public let headerLimit: Int
    /// The kept start of the message: the header block, or its first `headerLimit` bytes.
    public private(set) var headerBytes: [UInt8] = []
    /// Message bytes consumed, the mbox `From ` line excluded.
    public private(set) var size = 0
    /// True when the header block was longer than `headerLimit`.
    public private(set) var headerTruncated = false
    private var phase = Phase.start
    private var startBytes: [UInt8] = []
    private var lineLength = 0

    public init(headerLimit: Int = MessageReader.defaultHeaderLimit) {
        self.headerLimit = headerLimit
    }

    /// The parsed header fields of what has been consumed so far.
    public var headerBlock: HeaderBlock { parseHeaderBlock(headerBytes) }

    /// Consumes the next chunk of the message.
    public mutating func consume(_ chunk: UnsafeBufferPointer<UInt8>) {
        var index = 0
        while index < chunk.count {
            switch phase {
            case .body:
                // The common case for large messages: count, keep nothing.
                size += chunk.count - index
                return
            case .start:
                startBytes.append(chunk[index])
                index += 1
                if startBytes.count == 5 || startBytes.last == 0x0A { decideOnMboxLine() }
            case .mboxFromLine:
                if chunk[index] == 0x0A { phase = .headers }
                index += 1
            case .headers:
                consumeHeaderByte(chunk[index])
                index += 1
            }
        }
    }

    /// Consumes a chunk given as an array; a convenience for tests and small inputs.
    public mutating func consume(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { consume($0) }
    }

    /// Ends the input: bytes held while checking for a `From ` line are counted.
    public mutating func finish() {
        if phase == .start { decideOnMboxLine() }
    }

    private mutating func decideOnMboxLine() {
        let held = startBytes
        startBytes = []
        if held.starts(with: Array("From ".utf8)) {
            phase = held.last == 0x0A ? .headers : .mboxFromLine
            return
        }
        phase = .headers
        for byte in held where phase == .headers {
            consumeHeaderByte(byte)
        }
        // An input that starts with an empty line ends the header block within
        // the held bytes, so the rest of them are body and count in the size.
        if phase == .body {
            size = held.count
        }
    }

    private mutating func consumeHeaderByte(_ byte: UInt8) {
        size += 1
        guard headerBytes.count < headerLimit else {
            headerTruncated = true
            phase = .body
            return
        }
        headerBytes.append(byte)
        if byte == 0x0A {
            if lineLength == 0 { phase = .body }
            lineLength = 0
        } else if byte != 0x0D {
            lineLength += 1
        }
    }
}

/// The reason reading stdin stopped.
public enum MessageReadEnd: Equatable, Sendable {
    /// EOF reached: the size is exact.
    case endOfInput
    /// The deadline passed first: the size is unknown.
    case timedOut
    /// read(2) or poll(2) failed with this errno: the size is unknown.
    case failed(call: String, errno: Int32)
}

/// Size of the one read buffer used for the whole message.
public let messageReadBufferSize = 64 * 1024

/// Reads `fd` to EOF or until `deadline`, through one fixed 64 KiB buffer.
public func readMessage(
    fd: Int32, deadline: Deadline, headerLimit: Int = MessageReader.defaultHeaderLimit
) -> (reader: MessageReader, end: MessageReadEnd) {
    var reader = MessageReader(headerLimit: headerLimit)
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: messageReadBufferSize, alignment: 8)
    defer { buffer.deallocate() }

    while true {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, deadline.remainingMilliseconds)
        if ready < 0 {
            if errno == EINTR { continue }
            return (reader, .failed(call: "poll", errno: errno))
        }
        if ready == 0 { return (reader, .timedOut) }

        let count = read(fd, buffer.baseAddress, buffer.count)
        if count < 0 {
            if errno == EINTR || errno == EAGAIN { continue }
            return (reader, .failed(call: "read", errno: errno))
        }
        if count == 0 {
            reader.finish()
            return (reader, .endOfInput)
        }
        reader.consume(UnsafeBufferPointer(start: buffer.baseAddress!.assumingMemoryBound(to: UInt8.self), count: count))
    }
}
