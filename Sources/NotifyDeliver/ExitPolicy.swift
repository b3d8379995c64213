// The exit status of notify-deliver, decided in one place.
//
// Postfix pipe(8) and local(8) bounce the message on any status but 0, 71 and
// 75; an Exim pipe transport on any but 0, 73 and 75 (its temp_errors). A
// bounced notification copy sends backscatter to the original sender, so when
// the MTA runs us (stdin is not a terminal) every failure exits 0, except
// that --tempfail turns "relay not reachable in time" into 75 so the MTA
// retries later. Run by hand from a terminal, the process exits with a
// sysexits.h status that names the kind of failure.

import NotifyCore

/// The result of a run, as far as the exit status depends on it.
public enum RunOutcome: Equatable, Sendable, CaseIterable {
    /// The relay acknowledged the record, or a dry run printed it.
    case delivered
    /// Bad options or no usable socket path.
    case usageError
    /// No valid recipient in any source.
    case noRecipient
    /// The relay could not be reached in time: missing socket, connect refused
    /// or failed, a timeout, a send or receive error, or the connection closed
    /// before a reply.
    case relayUnreachable
    /// The relay replied `ERR` or something that is not a reply line.
    case relayRejected
}

/// The exit status for `outcome`.
///
/// - Parameters:
///   - interactive: stdin is a terminal, so a person ran the command.
///   - tempfail: --tempfail was given.
public func exitStatus(for outcome: RunOutcome, interactive: Bool, tempfail: Bool) -> Int32 {
    switch outcome {
    case .delivered:
        return SysExit.ok.rawValue
    case .relayUnreachable where tempfail:
        return SysExit.tempFail.rawValue
    case _ where !interactive:
        return SysExit.ok.rawValue
    case .usageError, .noRecipient:
        return SysExit.usage.rawValue
    case .relayUnreachable:
        return SysExit.unavailable.rawValue
    case .relayRejected:
        return SysExit.dataError.rawValue
    }
}
