#!/usr/bin/env python3
"""End-to-end test of the Postfix local(8) forms in contrib/postfix with a real Postfix.

A private Postfix instance (configuration, queue and log under a temporary
directory) listens on a free 127.0.0.1 port and delivers the test domain with
local(8) to a temporary system user. The user's home directory is also under
the temporary directory, and its mailbox is ~/Maildir/. The real notify-relay
runs on another free loopback port with its ingest socket in the user's
primary group, because local(8) runs commands with that group only.

Cases:
  1. notify-deliver run by hand as local(8) runs it: ORIGINAL_RECIPIENT and
     RECIPIENT in the environment, the message on stdin after a "From "
     line, --dry-run. The record names the original recipient and the
     decoded subject.
  2. ~/.forward from contrib/postfix/dot-forward (a pipe to notify-deliver
     and the user's own mailbox): a waiting long-poll client gets the event
     with the recipient from local(8)'s environment, and the mailbox gets
     the message.
  3. No .forward; mailbox_command from contrib/postfix/local-main.cf runs
     procmail, with contrib/postfix/procmailrc as the user's ~/.procmailrc:
     the same two checks.
  4. The relay is stopped: mail through both forms is still delivered,
     nothing is bounced or deferred, and the queue drains.

Usage (as root, because Postfix runs as root and the test creates a user):
    tests/e2e/postfix_local_e2e.py [BIN_DIR]
BIN_DIR holds notify-deliver and notify-relay; it defaults to $NOTIFY_BIN_DIR,
then .build/release, then .build/debug. Set NOTIFY_E2E_KEEP=1 to keep the
temporary directory for inspection.

Side effects outside the temporary directory: the system user and group
"notifylocal" are created and removed again at exit (the test stops if they
exist already). Needs procmail (/usr/bin/procmail) for case 3.
"""

import json
import os
import pwd
import shutil
import subprocess
import sys

from e2e_common import (
    finish_run, is_root_or_report, require_postfix,
    DELIVERY_TIMEOUT, QUEUE_DRAIN_TIMEOUT, REPO, STOP_TIMEOUT, PostfixInstance, Relay, Results, SetupError,
    build_message, check_long_poll_event, copy_deliver, ensure_system_user, exit_on_sigterm, find_bin_dir,
    free_loopback_port, log, maildir_has, maildir_messages, make_temp_root, postfix_queue_id,
    remove_system_user, smtp_submit, start_long_polls, wait_until)

CONTRIB = REPO / "contrib" / "postfix"
TEST_NAME = "postfix_local_e2e.py"

DOMAIN = "example.test"
USER = "notifylocal"
RECIPIENT = f"{USER}@{DOMAIN}"
SENDER = f"sender@{DOMAIN}"
SUBJECT = "Grüße aus Köln"
PROCMAIL = "/usr/bin/procmail"

# The placeholders that each contrib file documents in its header comment.
PLACEHOLDER_DELIVER = "/usr/local/bin/notify-deliver"
PLACEHOLDER_SOCKET = "/run/notify/relay.sock"
PLACEHOLDER_USER = "\\USER"
CONTRIB_PLACEHOLDERS = {
    "dot-forward": [PLACEHOLDER_DELIVER, PLACEHOLDER_SOCKET, PLACEHOLDER_USER],
    "procmailrc": [PLACEHOLDER_DELIVER, PLACEHOLDER_SOCKET],
    "local-main.cf": [],
}


def contrib_text(name, deliver_path, socket_path):
    """Read one contrib/postfix file and substitute its documented placeholders."""
    text = (CONTRIB / name).read_text()
    for placeholder in CONTRIB_PLACEHOLDERS[name]:
        if placeholder not in text:
            raise SetupError(f"contrib/postfix/{name} no longer contains the placeholder {placeholder}; "
                             f"update the substitutions in tests/e2e/{TEST_NAME}")
    text = text.replace(PLACEHOLDER_DELIVER, str(deliver_path))
    text = text.replace(PLACEHOLDER_SOCKET, str(socket_path))
    return text.replace(PLACEHOLDER_USER, f"\\{USER}")


class LocalPostfix(PostfixInstance):
    """The private Postfix instance that delivers the test domain with local(8)."""

    def __init__(self, root, smtp_port):
        super().__init__(root, smtp_port, f"mx.{DOMAIN}")

    def main_cf(self, mailbox_command_text=""):
        site = f"""\
mydomain = {DOMAIN}
mydestination = {DOMAIN}
# local(8) qualifies the bare "\\{USER}" line of .forward with myorigin,
# so it must name the user's own address to reach the mailbox.
myorigin = $mydomain
home_mailbox = Maildir/
# Local users only; the instance has no alias table.
local_recipient_maps = proxy:unix:passwd.byname
"""
        if mailbox_command_text:
            site += "\n# contrib/postfix/local-main.cf follows.\n" + mailbox_command_text
        return self.base_main_cf(TEST_NAME) + site

    def configure(self, mailbox_command_text=""):
        self.write_config(self.main_cf(mailbox_command_text), self.base_master_cf(TEST_NAME))


class LocalUser:
    """The temporary recipient: a system user whose home directory is under the test's directory."""

    def __init__(self, home):
        self.home = home
        self.maildir = home / "Maildir"

    def create(self):
        if not ensure_system_user(USER, home=self.home):
            raise SetupError(f"user {USER} exists already; remove it (userdel {USER}) and run the test again")
        entry = pwd.getpwnam(USER)
        self.home.mkdir(mode=0o755, parents=True)
        os.chown(self.home, entry.pw_uid, entry.pw_gid)

    def write_file(self, name, text):
        """Write a file in the home directory, owned by the user, as local(8) and procmail expect."""
        entry = pwd.getpwnam(USER)
        path = self.home / name
        path.write_text(text)
        path.chmod(0o644)
        os.chown(path, entry.pw_uid, entry.pw_gid)

    def remove_file(self, name):
        (self.home / name).unlink(missing_ok=True)

    def has(self, message_id):
        return maildir_has(self.maildir, message_id)


def send_mail(postfix, subject):
    message_id, raw = build_message(SENDER, [RECIPIENT], subject, DOMAIN, f"tests/e2e/{TEST_NAME}")
    reply = smtp_submit(postfix.smtp_port, SENDER, [RECIPIENT], raw)
    return message_id, postfix_queue_id(reply)


def case_dry_run(results, deliver):
    """Case 1: notify-deliver reads the recipient from local(8)'s environment and skips the "From " line."""
    log("case 1: notify-deliver --dry-run as local(8) runs it")
    message = ("From sender@x  Thu Dec  4 19:00:00 2026\n"
               "Return-Path: <sender@x>\n"
               "From: Sender <sender@x>\n"
               "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\n"
               "\n"
               "body\n")
    env = {"PATH": "/usr/bin:/bin", "ORIGINAL_RECIPIENT": f"Original@{DOMAIN}", "RECIPIENT": RECIPIENT}
    completed = subprocess.run([str(deliver), "--dry-run"], input=message.encode(), capture_output=True,
                               env=env, timeout=30)
    results.check("dry run exits 0", completed.returncode == 0,
                  f"status {completed.returncode}, stderr {completed.stderr!r}")
    try:
        record = json.loads(completed.stdout)
    except ValueError as error:
        results.check("dry run prints a JSON record", False, f"{error}: {completed.stdout!r}")
        return
    # notify-deliver sends recipients normalized, so the case of the local part is folded.
    results.check("dry run: recipient is ORIGINAL_RECIPIENT", record.get("recipients") == [f"original@{DOMAIN}"],
                  f"got {record.get('recipients')!r}")
    results.check("dry run: subject decoded", record.get("subject") == "Grüße", f"got {record.get('subject')!r}")
    results.check("dry run: From header, not the From_ line", record.get("from") == "Sender <sender@x>",
                  f"got {record.get('from')!r}")


def check_delivery(results, label, postfix, user, relay_port, command_text):
    """Send one message while a subscriber waits; check the event, the mailbox and the log."""
    pollers = start_long_polls(relay_port, [USER])
    message_id, queue_id = send_mail(postfix, SUBJECT)
    event = check_long_poll_event(results, pollers[0], message_id, SUBJECT, RECIPIENT, SENDER)
    if event is not None:
        results.check(f"{label}: event has the queue id", event.get("queueId") in (None, queue_id),
                      f"got {event.get('queueId')!r}, want {queue_id!r}")
    delivered = wait_until(lambda: user.has(message_id), DELIVERY_TIMEOUT)
    results.check(f"{label}: mailbox has the message", delivered,
                  f"no message with {message_id} in {user.maildir} after {DELIVERY_TIMEOUT} s; log:\n"
                  + "\n".join(postfix.log_lines(queue_id)))
    finished = postfix.wait_for_removal(queue_id)
    results.check(f"{label}: Postfix finished the message", finished, "\n".join(postfix.log_lines(queue_id)))
    sent = postfix.log_lines(queue_id, "status=sent", command_text)
    results.check(f"{label}: local(8) logs the delivery ({command_text})", len(sent) >= 1,
                  "\n".join(postfix.log_lines(queue_id)))


def use_forward(user, deliver, socket_path):
    user.remove_file(".procmailrc")
    user.write_file(".forward", contrib_text("dot-forward", deliver, socket_path))


def use_procmail(postfix, user, deliver, socket_path):
    user.remove_file(".forward")
    # The test files procmail's default delivery in the user's Maildir; the
    # contrib recipe follows unchanged.
    user.write_file(".procmailrc", "DEFAULT=$HOME/Maildir/\n\n" + contrib_text("procmailrc", deliver, socket_path))
    postfix.configure(contrib_text("local-main.cf", deliver, socket_path))
    postfix.reload()


def case_relay_down(results, postfix, user, relay, deliver, socket_path):
    """Case 4: with the relay stopped, both forms still deliver and nothing bounces or stays queued."""
    log("case 4: relay stopped")
    status = relay.stop()
    results.check("relay exits on SIGTERM", status is not None,
                  f"still running {STOP_TIMEOUT} s after SIGTERM; killed")

    for label in ("procmail", ".forward"):
        if label == ".forward":
            postfix.configure()
            postfix.reload()
            use_forward(user, deliver, socket_path)
        message_id, queue_id = send_mail(postfix, f"Sent through {label} while the relay is down")
        delivered = wait_until(lambda: user.has(message_id), DELIVERY_TIMEOUT)
        results.check(f"relay down, {label}: mailbox has the message", delivered,
                      "\n".join(postfix.log_lines(queue_id)))
        finished = postfix.wait_for_removal(queue_id)
        results.check(f"relay down, {label}: Postfix finished the message", finished,
                      "\n".join(postfix.log_lines(queue_id)))

    queue = postfix.wait_for_empty_queue()
    results.check("queue drains", not queue, f"still queued after {QUEUE_DRAIN_TIMEOUT} s: {queue}")
    text = postfix.log_text()
    bounced = [line for line in text.splitlines() if "status=bounced" in line]
    deferred = [line for line in text.splitlines() if "status=deferred" in line]
    notices = [line for line in text.splitlines() if "non-delivery notification" in line]
    results.check("no status=bounced in the Postfix log", not bounced, "\n".join(bounced))
    results.check("no status=deferred in the Postfix log", not deferred, "\n".join(deferred))
    results.check("no non-delivery notification sent", not notices, "\n".join(notices))
    bounce_copies = [message for message in maildir_messages(user.maildir) if b"MAILER-DAEMON" in message]
    results.check("mailbox has no bounce", not bounce_copies, f"{len(bounce_copies)} bounce(s)")


def main(argv):
    exit_on_sigterm()
    results = Results()
    if not is_root_or_report(results, TEST_NAME, "starts Postfix and creates a user"):
        return results.summary()

    root = None
    user_created = False
    postfix = None
    relay = None
    try:
        bin_dir = find_bin_dir(argv)
        require_postfix()
        if not os.access(PROCMAIL, os.X_OK):
            raise SetupError(f"{PROCMAIL} is missing; install the Debian package procmail")
        log(f"binaries from {bin_dir}")

        root = make_temp_root("notify-local-e2e-")
        deliver = copy_deliver(bin_dir, root / "bin")
        case_dry_run(results, deliver)

        user = LocalUser(root / "home" / USER)
        user.create()
        user_created = True

        run_dir = root / "run"
        run_dir.mkdir(mode=0o755)
        socket_path = run_dir / "relay.sock"
        relay = Relay(bin_dir / "notify-relay", free_loopback_port(), socket_path, root / "log-relay.txt",
                      socket_group=USER, domain=DOMAIN)
        relay.start()

        postfix = LocalPostfix(root, free_loopback_port())
        postfix.configure()
        postfix.start()
        log(f"Postfix on 127.0.0.1:{postfix.smtp_port}, relay on 127.0.0.1:{relay.http_port}")

        log("case 2: ~/.forward with a pipe and the user's mailbox")
        use_forward(user, deliver, socket_path)
        check_delivery(results, ".forward", postfix, user, relay.http_port, "delivered to command")

        log("case 3: mailbox_command with procmail and the notify recipe")
        use_procmail(postfix, user, deliver, socket_path)
        check_delivery(results, "procmail", postfix, user, relay.http_port, "delivered to command: /usr/bin/procmail")

        case_relay_down(results, postfix, user, relay, deliver, socket_path)
    except SetupError as error:
        results.check("setup", False, str(error))
    except Exception as error:  # any other error still gets the summary line and cleanup
        results.check("test run", False, f"{type(error).__name__}: {error}")
    finally:
        finish_run(
            results, relay=relay, root=root, remove_user=USER if user_created else None,
            failure_logs=[("Postfix log", postfix.log_text, 4000)] if postfix is not None else [],
            stops=[postfix.stop] if postfix is not None else [])

    return results.summary()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
