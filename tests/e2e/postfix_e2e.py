#!/usr/bin/env python3
"""End-to-end test of contrib/postfix with a real Postfix and the built binaries.

A private Postfix instance (its own configuration, queue and log under a
temporary directory) listens on a free 127.0.0.1 port and delivers the test
domain to Maildir mailboxes. The main.cf, master.cf and map files from
contrib/postfix are appended to its configuration with only their documented
placeholders substituted: the configuration directory, the served domain, the
notify-deliver path and the relay socket path. The real notify-relay runs on
another free loopback port.

Cases:
  1. Two long-poll subscribers (alice, bob) wait; one SMTP message with an
     RFC 2047 encoded subject goes to both. Each subscriber gets its event
     with the decoded subject, and both mailboxes still get the message.
  2. The relay is stopped with SIGTERM. Mail is still delivered, nothing is
     bounced, and the queue drains.

Usage (as root, because Postfix runs as root):
    tests/e2e/postfix_e2e.py [BIN_DIR]
BIN_DIR holds notify-deliver and notify-relay; it defaults to $NOTIFY_BIN_DIR,
then .build/release, then .build/debug. The test builds nothing. Set
NOTIFY_E2E_KEEP=1 to keep the temporary directory (configuration, Postfix
log, mailboxes) for inspection.

Side effects outside the temporary directory: a system user and group named
"notify" (the pipe user in contrib/postfix/master.cf) are created when
missing and removed again at exit. The test starts and stops only its own
Postfix instance and relay, by their configuration directory and PID.

NOTE: the instance uses the Debian package's daemon and meta directories
(/usr/lib/postfix/sbin, /etc/postfix/postfix-files); other Postfix builds may
need different settings in PostfixInstance.base_main_cf() in e2e_common.py.
"""

import os
import pwd
import shutil
import sys
from pathlib import Path

from e2e_common import (
    finish_run, is_root_or_report, require_postfix,
    DELIVERY_TIMEOUT, QUEUE_DRAIN_TIMEOUT, REPO, STOP_TIMEOUT, PostfixInstance, Relay, Results, SetupError,
    build_message, check_long_poll_event, copy_deliver, ensure_system_user, exit_on_sigterm, find_bin_dir,
    free_loopback_port, log, maildir_has, maildir_messages, make_temp_root, postfix_queue_id,
    remove_system_user, smtp_submit, start_long_polls, wait_until)

CONTRIB = REPO / "contrib" / "postfix"
TEST_NAME = "postfix_e2e.py"

DOMAIN = "example.test"
SENDER = f"sender@{DOMAIN}"
MAILBOXES = ("alice", "bob", "sender")
PIPE_USER = "notify"
SUBJECT = "Grüße aus Köln"

# The placeholders that each contrib file documents in its header comment.
PLACEHOLDER_DOMAIN = "example.com"
PLACEHOLDER_DOMAIN_PATTERN = "example\\.com"
PLACEHOLDER_CONFIG_DIR = "/etc/postfix/"
PLACEHOLDER_DELIVER = "/usr/local/bin/notify-deliver"
PLACEHOLDER_SOCKET = "/run/notify/relay.sock"
CONTRIB_PLACEHOLDERS = {
    "main.cf": [PLACEHOLDER_CONFIG_DIR],
    "master.cf": [PLACEHOLDER_DELIVER, PLACEHOLDER_SOCKET],
    "notify_bcc.regexp": [PLACEHOLDER_DOMAIN_PATTERN],
    "notify_transport.regexp": [PLACEHOLDER_DOMAIN_PATTERN, PLACEHOLDER_DOMAIN],
}
MAP_FILES = ("notify_bcc.regexp", "notify_transport.regexp")


class BccPostfix(PostfixInstance):
    """The private Postfix instance with virtual Maildir mailboxes and the contrib/postfix files."""

    def __init__(self, root, smtp_port, deliver_path, socket_path, mail_uid, mail_gid):
        super().__init__(root, smtp_port, f"mx.{DOMAIN}")
        self.mail_dir = root / "mail"
        self.deliver_path = deliver_path
        self.socket_path = socket_path
        self.mail_uid = mail_uid
        self.mail_gid = mail_gid

    def site_main_cf(self):
        mailbox_map = ", ".join(f"{name}@{DOMAIN}={name}/" for name in MAILBOXES)
        return f"""\
mydomain = {DOMAIN}
mydestination =
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {self.mail_dir}
virtual_mailbox_maps = inline:{{ {mailbox_map} }}
virtual_uid_maps = static:{self.mail_uid}
virtual_gid_maps = static:{self.mail_gid}
"""

    def contrib_text(self, name):
        """Read one contrib/postfix file and substitute its documented placeholders."""
        text = (CONTRIB / name).read_text()
        for placeholder in CONTRIB_PLACEHOLDERS[name]:
            if placeholder not in text:
                raise SetupError(f"contrib/postfix/{name} no longer contains the placeholder {placeholder}; "
                                 f"update the substitutions in tests/e2e/{TEST_NAME}")
        text = text.replace(PLACEHOLDER_DELIVER, str(self.deliver_path))
        text = text.replace(PLACEHOLDER_SOCKET, str(self.socket_path))
        text = text.replace(PLACEHOLDER_CONFIG_DIR, f"{self.config_dir}/")
        text = text.replace(PLACEHOLDER_DOMAIN_PATTERN, DOMAIN.replace(".", "\\."))
        text = text.replace(PLACEHOLDER_DOMAIN, DOMAIN)
        return text

    def configure(self):
        self.mail_dir.mkdir(mode=0o700)
        os.chown(self.mail_dir, self.mail_uid, self.mail_gid)
        main_cf = (self.base_main_cf(TEST_NAME) + self.site_main_cf()
                   + "\n# contrib/postfix/main.cf follows.\n" + self.contrib_text("main.cf"))
        master_cf = (self.base_master_cf(TEST_NAME)
                     + "\n# contrib/postfix/master.cf follows.\n" + self.contrib_text("master.cf"))
        self.write_config(main_cf, master_cf, {name: self.contrib_text(name) for name in MAP_FILES})

    def mailbox_messages(self, name):
        return maildir_messages(self.mail_dir / name)

    def mailbox_has(self, name, message_id):
        return maildir_has(self.mail_dir / name, message_id)


def send_mail(port, recipients, subject):
    """Send one message over SMTP; return its Message-ID, its Postfix queue id and the bytes sent."""
    message_id, raw = build_message(SENDER, recipients, subject, DOMAIN, f"tests/e2e/{TEST_NAME}")
    reply = smtp_submit(port, SENDER, recipients, raw)
    return message_id, postfix_queue_id(reply), raw


def case_two_subscribers(results, postfix, relay_port):
    """Case 1: one message to alice and bob reaches both subscribers and both mailboxes."""
    log("case 1: one message to two waiting subscribers")
    pollers = start_long_polls(relay_port, ["alice", "bob"])

    recipients = [f"alice@{DOMAIN}", f"bob@{DOMAIN}"]
    message_id, queue_id, raw = send_mail(postfix.smtp_port, recipients, SUBJECT)
    header_block = raw.split(b"\r\n\r\n")[0]
    results.check("subject sent as RFC 2047 encoded word", b"Subject: =?utf-8?" in header_block,
                  f"header block sent: {header_block!r}")

    for poller in pollers:
        check_long_poll_event(results, poller, message_id, SUBJECT, f"{poller.inbox}@{DOMAIN}", SENDER)

    for name in ("alice", "bob"):
        delivered = wait_until(lambda: postfix.mailbox_has(name, message_id), DELIVERY_TIMEOUT)
        results.check(f"{name}: mailbox has the message", delivered,
                      f"no message with {message_id} in {postfix.mail_dir / name} after {DELIVERY_TIMEOUT} s")

    finished = postfix.wait_for_removal(queue_id)
    results.check("Postfix finished the message", finished,
                  f"no '{queue_id}: removed' in the Postfix log after {DELIVERY_TIMEOUT} s")
    for name in ("alice", "bob"):
        sent = postfix.log_lines(queue_id, f"to=<{name}@{DOMAIN}.notify.invalid>", "relay=notify", "status=sent")
        results.check(f"{name}: notify copy delivered by the pipe transport", len(sent) == 1,
                      f"want one 'relay=notify ... status=sent' line for {name}; log for {queue_id}:\n"
                      + "\n".join(postfix.log_lines(queue_id)))


def case_relay_down(results, postfix, relay):
    """Case 2: with the relay stopped, mail is delivered and nothing bounces or stays queued."""
    log("case 2: relay stopped")
    status = relay.stop()
    results.check("relay exits on SIGTERM", status is not None,
                  f"still running {STOP_TIMEOUT} s after SIGTERM; killed")

    message_id, queue_id, _ = send_mail(postfix.smtp_port, [f"alice@{DOMAIN}"], "Sent while the relay is down")
    delivered = wait_until(lambda: postfix.mailbox_has("alice", message_id), DELIVERY_TIMEOUT)
    results.check("alice: mailbox has the message sent while the relay is down", delivered,
                  f"no message with {message_id} after {DELIVERY_TIMEOUT} s")
    finished = postfix.wait_for_removal(queue_id)
    results.check("Postfix finished the message sent while the relay is down", finished,
                  f"no '{queue_id}: removed' in the Postfix log after {DELIVERY_TIMEOUT} s; log for {queue_id}:\n"
                  + "\n".join(postfix.log_lines(queue_id)))
    sent = postfix.log_lines(queue_id, f"to=<alice@{DOMAIN}.notify.invalid>", "relay=notify", "status=sent")
    results.check("notify copy counted as delivered while the relay is down", len(sent) == 1,
                  "\n".join(postfix.log_lines(queue_id)))

    # A bounce notice or a deferred copy would still be queued.
    queue = postfix.wait_for_empty_queue()
    results.check("queue drains", not queue, f"still queued after {QUEUE_DRAIN_TIMEOUT} s: {queue}")

    text = postfix.log_text()
    bounced = [line for line in text.splitlines() if "status=bounced" in line]
    deferred = [line for line in text.splitlines() if "status=deferred" in line]
    results.check("no status=bounced in the Postfix log", not bounced, "\n".join(bounced))
    results.check("no status=deferred in the Postfix log", not deferred, "\n".join(deferred))
    results.check("sender mailbox has no bounce", not postfix.mailbox_messages("sender"),
                  f"{len(postfix.mailbox_messages('sender'))} message(s) in {postfix.mail_dir / 'sender'}")


def main(argv):
    exit_on_sigterm()
    results = Results()
    if not is_root_or_report(results, TEST_NAME, "starts a Postfix instance"):
        return results.summary()

    root = None
    created_user = False
    postfix = None
    relay = None
    try:
        bin_dir = find_bin_dir(argv)
        require_postfix()
        log(f"binaries from {bin_dir}")

        created_user = ensure_system_user(PIPE_USER)
        root = make_temp_root("notify-e2e-")
        deliver = copy_deliver(bin_dir, root / "bin")

        run_dir = root / "run"
        run_dir.mkdir(mode=0o755)
        socket_path = run_dir / "relay.sock"
        nobody = pwd.getpwnam("nobody")

        relay = Relay(bin_dir / "notify-relay", free_loopback_port(), socket_path, root / "log-relay.txt",
                      socket_group=PIPE_USER, domain=DOMAIN)
        postfix = BccPostfix(root, free_loopback_port(), deliver, socket_path, nobody.pw_uid, nobody.pw_gid)
        relay.start()
        socket_group = relay.socket_group_name()
        results.check("relay socket group is the pipe user's group", socket_group == PIPE_USER,
                      f"socket {socket_path} has group {socket_group}")
        postfix.configure()
        postfix.start()
        log(f"Postfix on 127.0.0.1:{postfix.smtp_port}, relay on 127.0.0.1:{relay.http_port}")

        case_two_subscribers(results, postfix, relay.http_port)
        case_relay_down(results, postfix, relay)
    except SetupError as error:
        results.check("setup", False, str(error))
    except Exception as error:  # any other error still gets the summary line and cleanup
        results.check("test run", False, f"{type(error).__name__}: {error}")
    finally:
        finish_run(
            results, relay=relay, root=root, remove_user=PIPE_USER if created_user else None,
            failure_logs=[("Postfix log", postfix.log_text, 4000)] if postfix is not None else [],
            stops=[postfix.stop] if postfix is not None else [])

    return results.summary()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
