// Wrapper mode (--exec): notify-deliver runs the program that stores the
// message, such as dovecot-lda or procmail, and notifies the relay only after
// that program succeeded.
//
// Steps: start the program. Copy stdin to it unchanged, while `MessageReader`
// collects the header block and counts the size. Wait for the program. When it
// exited 0, send the record exactly as without --exec. The exit status is the
// program's (`ProgramTermination.exitStatus`), and nothing in the notification
// step changes it: a relay that is down, slow or rejecting is only logged.
//
// Time: --timeout bounds the notification alone, counted from the moment the
// program exited. The SIGALRM backstop is armed only then, because its
// handler `_exit`s and must never cut a delivery short.
//
// The bytes are passed on unchanged, a leading mbox `From sender date` line
// included (Postfix pipe(8) adds one with flag F, Exim with the transport's
// use_from_line). Programs that take a message on stdin expect that line when
// the MTA sends it: dovecot-lda and procmail remove it and may take the
// envelope sender from it. The size in the record excludes it, as without --exec.

import NotifyCore

/// Runs the delivery program `program` (argv, program first) on stdin, then
/// notifies the relay when it exited 0. Returns the exit status for the MTA.
func runWrapped(
    program: [String], options: DeliverOptions, environment: [String: String], stdinFD: Int32,
    interactive: Bool, stdoutFD: Int32, logger: Logger
) -> Int32 {
    let fields = [("program", program[0])]
    if options.tempfail {
        logger.warning("--tempfail is ignored with --exec: a retry would deliver the message again", fields)
    }

    // A program that cannot start stored nothing: 75 keeps the message in the MTA's queue.
    var child: DeliveryProgram
    switch DeliveryProgram.start(program, pipeInput: !interactive) {
    case .success(let started):
        child = started
    case .failure(let error):
        logger.error("cannot start the delivery program: \(error.message); exit 75 so the MTA retries", fields)
        return SysExit.tempFail.rawValue
    }

    // From a terminal the program reads stdin itself, and there is no message to parse.
    var reader = MessageReader()
    var size: Int? = nil
    if !interactive {
        let (end, programReadAll) = child.copyInput(from: stdinFD, into: &reader)
        if case .readFailed(let call, let code) = end {
            logger.error(
                "\(call) on stdin failed: \(errnoText(code)); the delivery program was killed so that it cannot "
                    + "store a cut message; exit 75 so the MTA retries", fields)
            _ = child.wait()
            return SysExit.tempFail.rawValue
        }
        size = reader.size
        if !programReadAll {
            logger.info("the delivery program closed its stdin before the end of the message", fields)
        }
    }

    let termination: ProgramTermination
    switch child.wait() {
    case .success(let ended):
        termination = ended
    case .failure(let error):
        logger.error("cannot get the delivery program's status: \(error.message); exit 75 so the MTA retries", fields)
        return SysExit.tempFail.rawValue
    }
    guard termination == .exited(0) else {
        logger.warning(
            "the delivery program failed: relay not notified",
            fields + [("result", termination.description), ("exit_status", String(termination.exitStatus))])
        return termination.exitStatus
    }

    // The delivery is done; from here on only the notification is bounded, and it cannot change the status.
    let deadline = Deadline(seconds: options.timeoutSeconds, after: Deadline.now())
    armBackstop(seconds: options.timeoutSeconds + 1, exitStatus: SysExit.ok.rawValue)
    logHeaderTruncation(reader, logger: logger)
    _ = notify(
        headers: reader.headerBlock, size: size, options: options, environment: environment, deadline: deadline,
        stdoutFD: stdoutFD, logger: logger)
    disarmBackstop()
    return SysExit.ok.rawValue
}
