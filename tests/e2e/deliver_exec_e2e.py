#!/usr/bin/env python3
"""End-to-end test of notify-deliver --exec with Debian's real dovecot-lda.

notify-deliver wraps /usr/lib/dovecot/dovecot-lda (package dovecot-core),
which stores the message in a Maildir under a temporary directory, using a
minimal dovecot.conf written there. The real notify-relay runs on a free
127.0.0.1 port with its ingest socket in the same directory, and a long-poll
subscriber waits for the event.

dovecot-lda refuses to deliver as root without -d, and -d needs a running
Dovecot auth service, so both programs run as the user "nobody", which then
owns the Maildir. Without -d, dovecot-lda delivers to the user it runs as.

Cases:
  1. A 2 MiB message with an mbox From line goes through notify-deliver to
     dovecot-lda: exit 0, the Maildir contains the message byte for byte (less
     the From line, which dovecot-lda removes, and any header lines it puts on
     top), and the subscriber gets the event with the normalized recipient.
  2. dovecot-lda given an unknown option: notify-deliver exits with the same
     status as dovecot-lda run alone (64, EX_USAGE), and no event is sent.
  3. dovecot-lda -d for a user it cannot look up (no auth service): the
     temporary failure 75 is passed through, and no event is sent.
  4. A delivery program that does not exist: exit 75, and no event is sent.

Usage (as root): tests/e2e/deliver_exec_e2e.py [BIN_DIR]
BIN_DIR holds notify-deliver and notify-relay; it defaults to $NOTIFY_BIN_DIR,
then .build/release, then .build/debug. Set NOTIFY_E2E_KEEP=1 to keep the
temporary directory (configuration, logs, Maildir).

Side effects outside the temporary directory: none. The test starts and
stops only its own relay, by PID; dovecot-lda runs once per case and exits.
"""

import os
import pwd
import grp
import shutil
import subprocess
import sys
import uuid
from http.client import HTTPConnection
from pathlib import Path

from e2e_common import (Relay, Results, SetupError, check_long_poll_event, copy_deliver,
                        exit_on_sigterm, find_bin_dir, free_loopback_port, log, maildir_messages, make_temp_root,
                        start_long_polls)

TEST_NAME = "deliver_exec_e2e.py"
LDA = Path("/usr/lib/dovecot/dovecot-lda")
DOMAIN = "example.test"
SENDER = f"alice@{DOMAIN}"
RUN_USER = "nobody"
SUBJECT = "Wrapped delivery"

# Upper bound for one notify-deliver or dovecot-lda run, in seconds.
RUN_TIMEOUT = 60
# How long a subscriber waits to show that no event arrived, in seconds.
QUIET_SECONDS = 2


def dovecot_conf(root, mail_dir):
    """Return a dovecot.conf with only what dovecot-lda needs to store into mail_dir."""
    return f"""\
# Written by tests/e2e/{TEST_NAME}.
mail_location = maildir:{mail_dir}
log_path = {root}/log/dovecot.log
info_log_path = {root}/log/dovecot.log
base_dir = {root}/dovecot-run
state_dir = {root}/dovecot-state
"""


def build_message(body_bytes):
    """Return (Message-ID, the whole input with an mbox From line, the message after that line)."""
    message_id = f"<{uuid.uuid4().hex}@{DOMAIN}>"
    headers = (
        f"From: Alice <{SENDER}>\n"
        f"To: bob@{DOMAIN}\n"
        f"Subject: {SUBJECT}\n"
        f"Message-ID: {message_id}\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: 8bit\n"
        "\n"
    ).encode()
    line = "Grüße, line {:07d} of the body, to make a large message.\n"
    body = bytearray()
    number = 0
    while len(body) < body_bytes:
        body += line.format(number).encode()
        number += 1
    message = headers + bytes(body)
    from_line = f"From {SENDER} Tue Jan  1 00:00:00 2026\n".encode()
    return message_id, from_line + message, message


class Runner:
    """Runs commands as RUN_USER with a small fixed environment and a time limit."""

    def __init__(self):
        user = pwd.getpwnam(RUN_USER)
        self.uid = user.pw_uid
        self.gid = user.pw_gid
        self.env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "USER": RUN_USER, "LOGNAME": RUN_USER}

    def run(self, command, stdin_bytes):
        try:
            return subprocess.run([str(part) for part in command], input=stdin_bytes, capture_output=True,
                                  user=self.uid, group=self.gid, extra_groups=[], env=self.env,
                                  timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise SetupError(f"{command[0]} did not finish within {RUN_TIMEOUT} s")


def current_cursor(port, inbox):
    """Return the inbox's current cursor from a short poll that gets no event."""
    connection = HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", f"/{inbox}?timeout=1&format=json")
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Notify-Cursor")
    finally:
        connection.close()


def events_since(port, inbox, cursor):
    """Poll once for up to QUIET_SECONDS; return the response's status and body."""
    connection = HTTPConnection("127.0.0.1", port, timeout=QUIET_SECONDS + 10)
    try:
        connection.request("GET", f"/{inbox}?timeout={QUIET_SECONDS}&format=json&since={cursor}")
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def check_no_event(results, label, relay_port, cursor):
    status, body = events_since(relay_port, "bob", cursor)
    results.check(f"{label}: no event for bob", status == 204, f"status {status}, body {body!r}")


def case_delivered(results, runner, deliver, socket_path, conf, mail_dir, relay_port):
    """Case 1: dovecot-lda stores the message, and the subscriber gets the event."""
    log("case 1: dovecot-lda delivers a 2 MiB message")
    message_id, raw, message = build_message(2 * 1024 * 1024)
    pollers = start_long_polls(relay_port, ["bob"])

    command = [deliver, "--socket", socket_path, "--timeout", "5", "--subaddress-delimiter", "+",
               f"Bob+lists@{DOMAIN}", "--exec", LDA, "-c", conf, "-f", SENDER]
    log(" ".join(str(part) for part in command))
    completed = runner.run(command, raw)
    results.check("delivered: exit status 0", completed.returncode == 0,
                  f"status {completed.returncode}, stderr {completed.stderr.decode(errors='replace')!r}")
    results.check("delivered: nothing on stdout", completed.stdout == b"", f"stdout {completed.stdout[:200]!r}")

    stored = maildir_messages(mail_dir)
    if results.check("delivered: Maildir has one message", len(stored) == 1, f"{len(stored)} messages"):
        saved = stored[0]
        added = saved[:len(saved) - len(message)] if saved.endswith(message) else None
        results.check("delivered: Maildir file ends with the message, byte for byte", added is not None,
                      f"stored {len(saved)} bytes, sent {len(message)} bytes after the From line")
        if added is not None:
            added_lines = added.decode(errors="replace").splitlines()
            results.check("delivered: only header fields added on top",
                          all(":" in line and not line.startswith((" ", "\t")) for line in added_lines),
                          f"added {added!r}")
            results.check("delivered: mbox From line not stored", not saved.startswith(b"From "),
                          f"stored file starts with {saved[:60]!r}")

    event = check_long_poll_event(results, pollers[0], message_id, SUBJECT, f"bob@{DOMAIN}", SENDER)
    if event is not None:
        results.check("delivered: event size is the message without the From line", event.get("size") == len(message),
                      f"got {event.get('size')}, want {len(message)}")


def case_failure_passed_through(results, runner, deliver, socket_path, mail_dir, relay_port, label,
                                program_arguments, want_status):
    """Cases 2 to 4: the delivery program's failure status comes back unchanged, with no event."""
    log(f"{label}: {' '.join(str(part) for part in program_arguments)}")
    _, raw, _ = build_message(4096)
    status, cursor = current_cursor(relay_port, "bob")
    if not results.check(f"{label}: cursor before the run", status == 204 and cursor, f"status {status}"):
        return
    before = len(maildir_messages(mail_dir))

    if program_arguments[0] == LDA:
        alone = runner.run(program_arguments, raw)
        results.check(f"{label}: dovecot-lda alone exits {want_status}", alone.returncode == want_status,
                      f"status {alone.returncode}, stderr {alone.stderr.decode(errors='replace')!r}")

    command = [deliver, "--socket", socket_path, "--timeout", "5", f"bob@{DOMAIN}", "--exec", *program_arguments]
    completed = runner.run(command, raw)
    results.check(f"{label}: notify-deliver exits {want_status}", completed.returncode == want_status,
                  f"status {completed.returncode}, stderr {completed.stderr.decode(errors='replace')!r}")
    results.check(f"{label}: Maildir unchanged", len(maildir_messages(mail_dir)) == before,
                  f"{before} messages before, {len(maildir_messages(mail_dir))} after")
    check_no_event(results, label, relay_port, cursor)


def main(argv):
    exit_on_sigterm()
    results = Results()
    if os.geteuid() != 0:
        results.check("running as root", False, "run the test as root: it runs dovecot-lda as the user nobody")
        return results.summary()

    root = None
    relay = None
    try:
        bin_dir = find_bin_dir(argv)
        if not os.access(LDA, os.X_OK):
            raise SetupError(f"{LDA} not found: install the Debian package dovecot-core")
        log(f"binaries from {bin_dir}")

        root = make_temp_root("notify-exec-e2e-")
        deliver = copy_deliver(bin_dir, root / "bin")
        runner = Runner()
        nobody_group = grp.getgrgid(runner.gid).gr_name
        for name in ("log", "mail", "dovecot-run", "dovecot-state"):
            (root / name).mkdir(mode=0o755)
            os.chown(root / name, runner.uid, runner.gid)
        mail_dir = root / "mail" / "Maildir"
        conf = root / "dovecot.conf"
        conf.write_text(dovecot_conf(root, mail_dir))
        conf.chmod(0o644)

        run_dir = root / "run"
        run_dir.mkdir(mode=0o755)
        socket_path = run_dir / "relay.sock"
        relay = Relay(bin_dir / "notify-relay", free_loopback_port(), socket_path, root / "log-relay.txt",
                      socket_group=nobody_group, domain=DOMAIN)
        relay.start()
        log(f"relay on 127.0.0.1:{relay.http_port}, ingest socket {socket_path}")

        case_delivered(results, runner, deliver, socket_path, conf, mail_dir, relay.http_port)
        case_failure_passed_through(results, runner, deliver, socket_path, mail_dir, relay.http_port,
                                    "case 2: unknown dovecot-lda option",
                                    [LDA, "-c", conf, "--no-such-option"], 64)
        case_failure_passed_through(results, runner, deliver, socket_path, mail_dir, relay.http_port,
                                    "case 3: dovecot-lda temporary failure",
                                    [LDA, "-c", conf, "-d", "no-such-user"], 75)
        case_failure_passed_through(results, runner, deliver, socket_path, mail_dir, relay.http_port,
                                    "case 4: delivery program missing",
                                    [root / "bin" / "no-such-lda"], 75)
    except SetupError as error:
        results.check("setup", False, str(error))
    except Exception as error:  # any other error still gets the summary line and cleanup
        results.check("test run", False, f"{type(error).__name__}: {error}")
    finally:
        if results.failed and root is not None:
            print("# dovecot log (last 3000 characters):")
            print((root / "log" / "dovecot.log").read_text(errors="replace")[-3000:]
                  if (root / "log" / "dovecot.log").exists() else "(none)")
        if results.failed and relay is not None:
            print("# notify-relay output (last 2000 characters):")
            print(relay.output()[-2000:])
        if relay is not None:
            relay.stop()
        if root is not None and os.environ.get("NOTIFY_E2E_KEEP"):
            print(f"# NOTIFY_E2E_KEEP is set: keeping {root}")
        elif root is not None:
            shutil.rmtree(root, ignore_errors=True)

    return results.summary()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
