// The delivery program of --exec: starts it, copies the message to its stdin
// while the message is parsed, and waits for its exit status.
//
// The program is started with posix_spawnp(3), without a shell, and a name
// with no `/` is looked up in PATH. The program inherits this process's
// environment (`environ`, so unusual entries pass through unchanged), stdout,
// stderr, signal mask and every descriptor not marked close-on-exec. Its stdin
// is a new pipe. Descriptors of our own stay out of it: both pipe ends are
// close-on-exec (stdin is a dup2 copy), and the relay socket is opened only after the
// program has exited, also close-on-exec.
//
// SIGPIPE is ignored while copying, so a program that exits before reading the
// whole message turns our write into EPIPE instead of killing us. The program
// gets SIGPIPE's default action back, unless it was already ignored when
// notify-deliver started, in which case it stays ignored, as it would be
// without the wrapper. SIGCHLD is set to its default action in both, so that
// waitpid(2) reports the program's status even when the MTA left it ignored.
//
// Trust boundary: stdin is a stranger's message, which is only counted and
// parsed here, never interpreted; memory stays at one 64 KiB buffer plus the
// header cap of `MessageReader`. The program and its arguments come from the
// MTA configuration.
//
// Known limits: no wait here has a bound. Reading stdin ends when the MTA
// closes it, and the program runs as long as it takes, because killing a
// delivery half way could lose or duplicate mail. The MTA's own limit
// (Postfix command_time_limit, Exim's transport timeout) bounds the whole run.

import Glibc
import NotifyCore

/// The end of the delivery program: an exit status or a signal.
public enum ProgramTermination: Equatable, Sendable {
    /// It called exit with this status (0-255).
    case exited(Int32)
    /// A signal killed it.
    case signaled(Int32)

    /// Decodes a wait(2) status word. Swift does not import the WIFEXITED
    /// family of macros, so the Linux layout is decoded here: the low 7 bits
    /// are the terminating signal (0 for a normal exit), bits 8-15 the exit status.
    public init(waitStatus: Int32) {
        let signal = waitStatus & 0x7F
        self = signal == 0 ? .exited((waitStatus >> 8) & 0xFF) : .signaled(signal)
    }

    /// The status notify-deliver exits with: the program's own exit status, or
    /// 75 (EX_TEMPFAIL) after a signal. A signal means the delivery was cut off
    /// (OOM killer, a crash, an admin's kill), so the message may be stored
    /// partly or not at all. Postfix pipe(8) and Exim defer on 75 and retry,
    /// whereas the shell's 128+N would be a bounce.
    public var exitStatus: Int32 {
        switch self {
        case .exited(let status): return status
        case .signaled: return SysExit.tempFail.rawValue
        }
    }

    /// A short description for the log, such as `exit status 64` or `signal 9`.
    public var description: String {
        switch self {
        case .exited(let status): return "exit status \(status)"
        case .signaled(let signal): return "signal \(signal)"
        }
    }
}

/// The end of copying stdin to the program.
public enum InputCopyEnd: Equatable, Sendable {
    /// stdin reached EOF; every byte was read and counted.
    case endOfInput
    /// read(2) or poll(2) on stdin failed with this errno before EOF.
    case readFailed(call: String, errno: Int32)
}

/// A started delivery program: its process id and the write end of its stdin pipe.
public struct DeliveryProgram: Sendable {
    /// The program's process id.
    public let pid: pid_t
    /// Write end of the program's stdin, or nil when it inherited our stdin.
    public private(set) var inputFD: Int32?

    /// Starts `arguments[0]` with `arguments` as its argv.
    ///
    /// - Parameter pipeInput: true gives the program a new pipe as stdin, to be
    ///   fed by `copyInput`; false lets it inherit our stdin (a terminal).
    /// - Returns: the program, or the errno of the failed pipe or spawn call
    ///   (ENOENT when the program is not found, EACCES when it is not executable).
    public static func start(_ arguments: [String], pipeInput: Bool) -> Result<DeliveryProgram, SpawnError> {
        precondition(!arguments.isEmpty, "the delivery program's argv needs at least the program")
        let sigpipeWasIgnored = ignoreSIGPIPE()
        // An MTA that left SIGCHLD ignored would make the kernel reap the
        // program at once, and waitpid could not report its status.
        signal(SIGCHLD, SIG_DFL)

        // Glibc's pipe2 is not imported into Swift, so close-on-exec is set
        // right after pipe(2). notify-deliver starts no other process meanwhile.
        var pipeEnds: [Int32] = [-1, -1]
        if pipeInput {
            guard pipe(&pipeEnds) == 0 else { return .failure(SpawnError(call: "pipe", errno: errno)) }
            _ = fcntl(pipeEnds[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(pipeEnds[1], F_SETFD, FD_CLOEXEC)
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if pipeInput {
            // dup2 onto 0 clears close-on-exec there; both original ends close at exec.
            posix_spawn_file_actions_adddup2(&actions, pipeEnds[0], 0)
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaultSignals = sigset_t()
        sigemptyset(&defaultSignals)
        if !sigpipeWasIgnored { sigaddset(&defaultSignals, SIGPIPE) }
        posix_spawnattr_setsigdefault(&attributes, &defaultSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF))

        // argv as C strings; posix_spawnp copies nothing it keeps, so they are freed right after.
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let result = argv.withUnsafeBufferPointer { buffer in
            posix_spawnp(&pid, argv[0]!, &actions, &attributes, buffer.baseAddress!, environ)
        }

        if pipeInput { close(pipeEnds[0]) }
        guard result == 0 else {
            if pipeInput { close(pipeEnds[1]) }
            return .failure(SpawnError(call: "posix_spawnp", errno: result))
        }
        return .success(DeliveryProgram(pid: pid, inputFD: pipeInput ? pipeEnds[1] : nil))
    }

    /// Reads `fd` to EOF, passes every byte to `reader` and to the program's
    /// stdin, then closes the program's stdin.
    ///
    /// When the program stops reading (EPIPE, or another write error), copying
    /// stops but reading goes on to EOF, so the MTA's write succeeds and the
    /// size is still counted. When reading fails, the program is killed before
    /// its stdin is closed, so it can never take a cut message for a whole one.
    ///
    /// - Returns: how reading ended, and whether every byte reached the program.
    public mutating func copyInput(from fd: Int32, into reader: inout MessageReader) -> (
        end: InputCopyEnd, programReadAll: Bool
    ) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: messageReadBufferSize, alignment: 8)
        defer { buffer.deallocate() }
        var programReadAll = true

        while true {
            let count = read(fd, buffer.baseAddress, buffer.count)
            if count < 0 {
                var failure = InputCopyEnd.readFailed(call: "read", errno: errno)
                if errno == EINTR { continue }
                if errno == EAGAIN {
                    if waitReadable(fd) { continue }
                    failure = .readFailed(call: "poll", errno: errno)
                }
                kill(pid, SIGKILL)
                closeInput()
                return (failure, false)
            }
            if count == 0 {
                reader.finish()
                closeInput()
                return (.endOfInput, programReadAll)
            }

            let chunk = UnsafeBufferPointer(start: buffer.baseAddress!.assumingMemoryBound(to: UInt8.self), count: count)
            reader.consume(chunk)
            if let inputFD, !writeAll(inputFD, UnsafeRawBufferPointer(chunk)) {
                programReadAll = false
                closeInput()
            }
        }
    }

    /// Closes the program's stdin, so that its next read returns EOF. Does nothing when already closed.
    public mutating func closeInput() {
        if let inputFD { close(inputFD) }
        inputFD = nil
    }

    /// Waits for the program to exit, without a time bound (see the file header).
    public func wait() -> Result<ProgramTermination, SpawnError> {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return .failure(SpawnError(call: "waitpid", errno: errno)) }
        }
        return .success(ProgramTermination(waitStatus: status))
    }
}

/// A failed system call while starting or waiting for the delivery program.
public struct SpawnError: Error, Equatable, Sendable {
    public var call: String
    public var errno: Int32

    /// `call` and the errno text, such as `posix_spawnp failed: No such file or directory (errno 2)`.
    public var message: String { "\(call) failed: \(errnoText(errno))" }
}

/// Sets SIGPIPE to be ignored and returns whether it already was.
private func ignoreSIGPIPE() -> Bool {
    // SIG_DFL is the null handler, which Swift imports as nil.
    guard let previous = signal(SIGPIPE, SIG_IGN) else { return false }
    return unsafeBitCast(previous, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self)
}

/// Writes all of `bytes` to a blocking descriptor; false on any error but EINTR (EPIPE among them).
private func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
    var offset = 0
    while offset < bytes.count {
        let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
        if written < 0 {
            if errno == EINTR { continue }
            return false
        }
        offset += written
    }
    return true
}

/// Waits until `fd` is readable, for a stdin the MTA left non-blocking; false when poll fails.
private func waitReadable(_ fd: Int32) -> Bool {
    while true {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        if poll(&descriptor, 1, -1) >= 0 { return true }
        if errno != EINTR { return false }
    }
}
