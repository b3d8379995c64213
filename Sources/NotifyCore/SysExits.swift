// Exit codes from sysexits.h, the values MTAs interpret.
//
// Postfix pipe(8) defers the message on 75 (EX_TEMPFAIL) and 71 (EX_OSERR) and
// bounces it on other non-zero statuses; an Exim pipe transport defers on 75
// and 73 (EX_CANTCREAT) by default (its temp_errors option). A bounced
// notification copy sends backscatter to the sender, which is why
// notify-deliver exits 0 on failure unless told otherwise.

/// Exit statuses from sysexits.h.
public enum SysExit: Int32, Sendable {
    case ok = 0
    case usage = 64
    case dataError = 65
    case noInput = 66
    case unavailable = 69
    case software = 70
    case osError = 71
    case cantCreate = 73
    case ioError = 74
    case tempFail = 75
    case config = 78
}
