#!/usr/bin/env python3
"""End-to-end test of contrib/exim with a real Exim from Debian and the built binaries.

Exim and Postfix conflict as Debian packages, so Exim is not installed:
scripts/install-exim-for-tests.sh unpacks Debian's exim4-daemon-light 4.96
into /opt/notify-test-exim (or $NOTIFY_TEST_EXIM_DIR), and this test runs it
when it is missing. Each Exim instance here runs that binary as root with its
own configuration file (-C), spool directory and logs under a temporary
directory. The configuration includes notify_router.conf and
notify_transport.conf from contrib/exim with only their documented
placeholders substituted (the notify-deliver path and the relay socket path),
and delivers the test domain to Maildir mailboxes through an appendfile
transport. The real notify-relay runs on a free loopback port.

Cases:
  1. Two long-poll subscribers (alice, bob) wait. One SMTP message with an
     RFC 2047 encoded subject goes to both through the Exim daemon on a free
     127.0.0.1 port. Each subscriber gets its event with the decoded subject
     and the recipient that Exim passed in the environment, and both
     mailboxes still get the message.
  2. RCPT TO an unknown local part is rejected: the notify router, which
     accepts any local part, is skipped during recipient verification.
  3. The relay is stopped with SIGTERM. Mail is still delivered, no bounce
     message is created, nothing is deferred or frozen, and the queue is
     empty after a forced queue run.
  4. A second instance runs stand-in commands in place of notify-deliver
     (the binary path is a documented placeholder): one that exits 67 and
     one that writes to stdout and stderr. Neither creates a bounce message
     or keeps the message queued, and the mailbox delivery still happens. A
     message to an unknown local part, submitted with -bm so that nothing
     verifies it, still bounces to its sender: the notify router does not
     change how the mailbox routers report failures.
  5. Debian's split and non-split configurations (exim4-config, generated
     by update-exim4.conf into the temporary directory) with the contrib
     files added as contrib/exim/README.md says: the configuration is valid
     and exim -bt routes a local address through the notify router and then
     a mailbox router.

Usage (as root, because Exim runs as root):
    tests/e2e/exim_e2e.py [BIN_DIR]
BIN_DIR holds notify-deliver and notify-relay; it defaults to $NOTIFY_BIN_DIR,
then .build/release, then .build/debug. Set NOTIFY_E2E_KEEP=1 to keep the
temporary directory (configurations, Exim logs, mailboxes) for inspection.

Side effects outside the temporary directory: a system user and group named
"notify" (the transport user in contrib/exim/notify_transport.conf) are
created when missing and removed again at exit; the first run unpacks Exim
into /opt/notify-test-exim and creates the Debian-exim system user that the
binary needs (see scripts/install-exim-for-tests.sh). The test starts and
stops only its own Exim daemon and relay, by PID.
"""

import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from e2e_common import (
    finish_run, is_root_or_report, require_postfix,
    DELIVERY_TIMEOUT, QUEUE_DRAIN_TIMEOUT, REPO, START_TIMEOUT, STOP_TIMEOUT, Relay, Results, SetupError,
    build_message, check_long_poll_event, copy_deliver, ensure_system_user, exit_on_sigterm, find_bin_dir,
    free_loopback_port, log, maildir_has, maildir_messages, make_temp_root, port_accepts, read_text,
    remove_system_user, run, smtp_rcpt_reply, smtp_submit, start_long_polls, wait_until)

CONTRIB = REPO / "contrib" / "exim"
TEST_NAME = "exim_e2e.py"
INSTALL_SCRIPT = REPO / "scripts" / "install-exim-for-tests.sh"
EXIM_DIR = Path(os.environ.get("NOTIFY_TEST_EXIM_DIR", "/opt/notify-test-exim"))
EXIM_BIN = EXIM_DIR / "usr" / "sbin" / "exim4"

DOMAIN = "example.test"
SENDER = f"sender@{DOMAIN}"
MAILBOXES = ("alice", "bob", "sender")
PIPE_USER = "notify"
SUBJECT = "Grüße aus Köln"

# The placeholders that the contrib files document in their header comments.
PLACEHOLDER_DELIVER = "/usr/local/bin/notify-deliver"
PLACEHOLDER_SOCKET = "/run/notify/relay.sock"
CONTRIB_PLACEHOLDERS = {
    "notify_router.conf": [],
    "notify_transport.conf": [PLACEHOLDER_DELIVER, PLACEHOLDER_SOCKET],
}

# The Debian conf.d file names that contrib/exim/README.md gives.
DEBIAN_ROUTER_FILE = "350_notify"
DEBIAN_TRANSPORT_FILE = "30_notify"

# A bounce message is received with the null sender; Exim logs it as "<= <>".
BOUNCE_RECEIVED = re.compile(r" <= <> ")


def contrib_text(name, deliver_path, socket_path):
    """Read one contrib/exim file and substitute its documented placeholders."""
    text = (CONTRIB / name).read_text()
    for placeholder in CONTRIB_PLACEHOLDERS[name]:
        if placeholder not in text:
            raise SetupError(f"contrib/exim/{name} no longer contains the placeholder {placeholder}; "
                             f"update the substitutions in tests/e2e/{TEST_NAME}")
    text = text.replace(PLACEHOLDER_DELIVER, str(deliver_path))
    return text.replace(PLACEHOLDER_SOCKET, str(socket_path))


class EximInstance:
    """An Exim configuration with its own spool, logs and Maildir mailboxes under one directory."""

    def __init__(self, root, deliver_path, socket_path, smtp_port=None):
        self.root = root
        self.config = root / "exim.conf"
        self.spool_dir = root / "spool"
        self.log_dir = root / "log"
        self.mail_dir = root / "mail"
        self.deliver_path = deliver_path
        self.socket_path = socket_path
        self.smtp_port = smtp_port
        self.daemon = None

    def config_text(self):
        # The contrib files are included, not pasted, so that the test runs
        # them byte for byte apart from the placeholders.
        daemon = ""
        if self.smtp_port:
            daemon = f"daemon_smtp_ports = {self.smtp_port}\nlocal_interfaces = 127.0.0.1\n"
        mailboxes = " : ".join(MAILBOXES)
        return f"""\
# Test instance written by tests/e2e/{TEST_NAME}.
primary_hostname = mx.{DOMAIN}
qualify_domain = {DOMAIN}
domainlist local_domains = {DOMAIN}
spool_directory = {self.spool_dir}
log_file_path = {self.log_dir}/%slog
pid_file_path = {self.root}/exim.pid
exim_path = {EXIM_BIN}
{daemon}acl_smtp_rcpt = acl_check_rcpt
# No DNS, ident or TLS: everything stays on loopback.
host_lookup =
tls_advertise_hosts =
keep_environment =
never_users = root
log_selector = +received_recipients
# Messages wait in the queue until the test runs "exim -qf" as root. An
# immediate delivery would re-execute Exim from the Exim user with -C, and
# Exim drops root privilege for a -C file that is not listed in the
# TRUSTED_CONFIG_LIST compiled into Debian's build (/etc/exim4/trusted_configs).
queue_only = true

begin acl

acl_check_rcpt:
  require verify = recipient
  accept  domains = +local_domains
  deny    message = relay not permitted

begin routers

# contrib/exim/notify_router.conf follows.
.include {self.root}/notify_router.conf

local_mailbox:
  driver = accept
  domains = +local_domains
  local_parts = {mailboxes}
  transport = local_maildir

begin transports

# contrib/exim/notify_transport.conf follows.
.include {self.root}/notify_transport.conf

local_maildir:
  driver = appendfile
  # $local_part_data is the matching item of local_parts above, which is
  # not tainted, so Exim 4.96 accepts it in a path.
  directory = {self.mail_dir}/$local_part_data
  maildir_format
  create_directory
  user = nobody
  envelope_to_add
  return_path_add

begin retry

*   *   F,1h,10m
"""

    def write_config(self):
        exim_user = pwd.getpwnam("Debian-exim")
        nobody = pwd.getpwnam("nobody")
        self.root.mkdir(mode=0o755, exist_ok=True)
        for directory in (self.spool_dir, self.log_dir):
            directory.mkdir(mode=0o750)
            os.chown(directory, exim_user.pw_uid, exim_user.pw_gid)
        self.mail_dir.mkdir(mode=0o700)
        os.chown(self.mail_dir, nobody.pw_uid, nobody.pw_gid)

        for name in CONTRIB_PLACEHOLDERS:
            (self.root / name).write_text(contrib_text(name, self.deliver_path, self.socket_path))
        self.config.write_text(self.config_text())

    def command(self, *arguments):
        return [str(EXIM_BIN), "-C", str(self.config), *arguments]

    def check_config(self):
        run(self.command("-bV"), timeout=30)

    def start_daemon(self):
        """Start a foreground SMTP daemon (-bdf) without queue runners; stopped by PID."""
        log(f"exim -bdf on 127.0.0.1:{self.smtp_port}")
        self.daemon = subprocess.Popen(self.command("-bdf"), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def ready():
            if self.daemon.poll() is not None:
                return "exited"
            return "ready" if port_accepts(self.smtp_port) else None

        state = wait_until(ready, START_TIMEOUT)
        if state != "ready":
            error = self.daemon.stderr.read().decode(errors="replace") if state == "exited" else ""
            raise SetupError(f"Exim did not accept connections on 127.0.0.1:{self.smtp_port} within "
                             f"{START_TIMEOUT} s (state: {state or 'not listening'}): {error}\n"
                             f"main log:\n{self.main_log()[-2000:]}\npanic log:\n{self.panic_log()}")

    def stop_daemon(self):
        if self.daemon is None or self.daemon.poll() is not None:
            return
        self.daemon.send_signal(signal.SIGTERM)
        try:
            self.daemon.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait(timeout=STOP_TIMEOUT)

    def submit_local(self, recipients, raw):
        """Submit a message with -bm, as a local program would, and run the queue."""
        run(self.command("-f", SENDER, "-bm", "--", *recipients), timeout=DELIVERY_TIMEOUT, input=raw.decode())
        self.run_queue()

    def exim_id(self, message_id):
        """Return Exim's id of the message received with this Message-ID, from its "<=" log line."""
        for line in self.main_log().splitlines():
            fields = line.split()
            # Exim logs the Message-ID without its angle brackets.
            if len(fields) > 3 and fields[3] == "<=" and f"id={message_id.strip('<>')}" in line:
                return fields[2]
        return None

    def wait_for_completion(self, message_id):
        """Wait until Exim logs "Completed" for the message; return its Exim id or None."""
        def completed():
            exim_id = self.exim_id(message_id)
            return exim_id if exim_id and self.log_lines(exim_id, "Completed") else None
        return wait_until(completed, DELIVERY_TIMEOUT)

    def queue_listing(self):
        return run(self.command("-bp"), timeout=30).stdout.strip()

    def run_queue(self, force=False):
        """Run one delivery pass over the queue in the foreground; force includes frozen messages."""
        run(self.command("-qff" if force else "-qf"), timeout=DELIVERY_TIMEOUT, check=False)

    def main_log(self):
        return read_text(self.log_dir / "mainlog")

    def panic_log(self):
        """Return the panic log without the lines that the test set-up itself causes.

        Exim submits a bounce message by running itself again, as the Exim
        user and with -C, and then logs "exim user lost privilege for using
        -C option" before it receives the bounce normally. That is the price
        of running with a configuration file outside TRUSTED_CONFIG_LIST.
        """
        lines = read_text(self.log_dir / "paniclog").splitlines(keepends=True)
        return "".join(line for line in lines if "lost privilege for using -C option" not in line)

    def log_lines(self, exim_id, *words):
        return [line for line in self.main_log().splitlines()
                if f" {exim_id} " in line and all(word in line for word in words)]

    def mailbox_messages(self, name):
        return maildir_messages(self.mail_dir / name)

    def mailbox_has(self, name, message_id):
        return maildir_has(self.mail_dir / name, message_id)


def send_mail(exim, recipients, subject):
    """Send one message over SMTP to the daemon and run the queue; return its Message-ID and the bytes sent."""
    message_id, raw = build_message(SENDER, recipients, subject, DOMAIN, f"tests/e2e/{TEST_NAME}")
    smtp_submit(exim.smtp_port, SENDER, recipients, raw)
    exim.run_queue()
    return message_id, raw


def log_excerpt(exim, exim_id):
    return "\n".join(exim.log_lines(exim_id)) if exim_id else exim.main_log()[-3000:]


def check_no_failures(results, exim, label):
    """Check the main log for failed, deferred and frozen deliveries and for bounce messages."""
    lines = exim.main_log().splitlines()
    failed = [line for line in lines if " ** " in line]
    deferred = [line for line in lines if " == " in line]
    frozen = [line for line in lines if "frozen" in line]
    bounces = [line for line in lines if BOUNCE_RECEIVED.search(line)]
    results.check(f"{label}: no failed delivery (**) in the main log", not failed, "\n".join(failed))
    results.check(f"{label}: no deferred delivery (==) in the main log", not deferred, "\n".join(deferred))
    results.check(f"{label}: nothing frozen", not frozen, "\n".join(frozen))
    results.check(f"{label}: no bounce message created", not bounces, "\n".join(bounces))


def check_queue_empty(results, exim, label):
    """Force one queue run, then check that the queue is empty within the bound."""
    exim.run_queue(force=True)
    empty = wait_until(lambda: exim.queue_listing() == "", QUEUE_DRAIN_TIMEOUT)
    results.check(f"{label}: queue empty after exim -qff", empty,
                  f"exim -bp after {QUEUE_DRAIN_TIMEOUT} s:\n{exim.queue_listing()}")


def case_two_subscribers(results, exim, relay_port):
    """Case 1: one message to alice and bob reaches both subscribers and both mailboxes."""
    log("case 1: one message to two waiting subscribers")
    pollers = start_long_polls(relay_port, ["alice", "bob"])

    recipients = [f"alice@{DOMAIN}", f"bob@{DOMAIN}"]
    message_id, raw = send_mail(exim, recipients, SUBJECT)
    header_block = raw.split(b"\r\n\r\n")[0]
    results.check("subject sent as RFC 2047 encoded word", b"Subject: =?utf-8?" in header_block,
                  f"header block sent: {header_block!r}")

    for poller in pollers:
        check_long_poll_event(results, poller, message_id, SUBJECT, f"{poller.inbox}@{DOMAIN}", SENDER)

    for name in ("alice", "bob"):
        delivered = wait_until(lambda: exim.mailbox_has(name, message_id), DELIVERY_TIMEOUT)
        results.check(f"{name}: mailbox has the message", delivered,
                      f"no message with {message_id} in {exim.mail_dir / name} after {DELIVERY_TIMEOUT} s")

    exim_id = exim.wait_for_completion(message_id)
    results.check("Exim completed the message", exim_id is not None,
                  f"no 'Completed' line for {message_id} after {DELIVERY_TIMEOUT} s:\n{exim.main_log()[-3000:]}")
    for name in ("alice", "bob"):
        address = f"{name}@{DOMAIN}"
        notified = exim.log_lines(exim_id, "=>", address, "R=notify", "T=notify_pipe") if exim_id else []
        stored = exim.log_lines(exim_id, "=>", address, "R=local_mailbox", "T=local_maildir") if exim_id else []
        results.check(f"{name}: copy delivered by the notify_pipe transport", len(notified) == 1,
                      f"want one '=> ... R=notify T=notify_pipe' line; log:\n{log_excerpt(exim, exim_id)}")
        results.check(f"{name}: mailbox router still used after the unseen router", len(stored) == 1,
                      f"want one '=> ... R=local_mailbox' line; log:\n{log_excerpt(exim, exim_id)}")


def case_unknown_recipient_rejected(results, exim):
    """Case 2: recipient verification skips the notify router, so unknown local parts are rejected."""
    log("case 2: RCPT TO an unknown local part")
    code, reply = smtp_rcpt_reply(exim.smtp_port, SENDER, f"nobody-here@{DOMAIN}")
    results.check("unknown local part rejected at RCPT", 500 <= code < 600, f"got {code} {reply}")


def case_relay_down(results, exim, relay):
    """Case 3: with the relay stopped, mail is delivered and nothing bounces, defers or freezes."""
    log("case 3: relay stopped")
    status = relay.stop()
    results.check("relay exits on SIGTERM", status is not None,
                  f"still running {STOP_TIMEOUT} s after SIGTERM; killed")

    message_id, _ = send_mail(exim, [f"alice@{DOMAIN}"], "Sent while the relay is down")
    delivered = wait_until(lambda: exim.mailbox_has("alice", message_id), DELIVERY_TIMEOUT)
    results.check("alice: mailbox has the message sent while the relay is down", delivered,
                  f"no message with {message_id} after {DELIVERY_TIMEOUT} s")
    exim_id = exim.wait_for_completion(message_id)
    results.check("Exim completed the message sent while the relay is down", exim_id is not None,
                  f"no 'Completed' line for {message_id}:\n{exim.main_log()[-3000:]}")
    notified = exim.log_lines(exim_id, "=>", "R=notify", "T=notify_pipe") if exim_id else []
    results.check("notify copy counted as delivered while the relay is down", len(notified) == 1,
                  log_excerpt(exim, exim_id))

    check_queue_empty(results, exim, "relay down")
    check_no_failures(results, exim, "relay down")
    results.check("sender mailbox has no bounce", not exim.mailbox_messages("sender"),
                  f"{len(exim.mailbox_messages('sender'))} message(s) in {exim.mail_dir / 'sender'}")
    results.check("Exim panic log is empty", exim.panic_log() == "", exim.panic_log())


STAND_IN_FAILING = """#!/bin/sh
# Stand-in for notify-deliver: reads the message, exits with EX_DATAERR.
cat >/dev/null
exit 67
"""

STAND_IN_NOISY = """#!/bin/sh
# Stand-in for notify-deliver: reads the message, writes to stdout and stderr, exits 0.
cat >/dev/null
echo "stand-in output on stdout"
echo "stand-in output on stderr" >&2
exit 0
"""


def case_stand_ins(results, root, socket_path):
    """Case 4: a failing or noisy command never bounces or holds mail; real failures still bounce."""
    log("case 4: stand-in commands in place of notify-deliver")
    stand_in = root / "bin" / "stand-in"
    stand_in.parent.mkdir(mode=0o755, parents=True)
    exim = EximInstance(root, stand_in, socket_path)
    exim.write_config()
    exim.check_config()

    def deliver_with(script, label):
        stand_in.write_text(script)
        stand_in.chmod(0o755)
        message_id, raw = build_message(SENDER, [f"alice@{DOMAIN}"], label, DOMAIN, f"tests/e2e/{TEST_NAME}")
        exim.submit_local([f"alice@{DOMAIN}"], raw)
        exim_id = exim.wait_for_completion(message_id)
        results.check(f"{label}: Exim completed the message", exim_id is not None, exim.main_log()[-3000:])
        results.check(f"{label}: alice's mailbox has the message", exim.mailbox_has("alice", message_id),
                      log_excerpt(exim, exim_id))
        return exim_id

    exim_id = deliver_with(STAND_IN_FAILING, "command exits 67")
    notified = exim.log_lines(exim_id, "=>", "R=notify", "T=notify_pipe") if exim_id else []
    failed = exim.log_lines(exim_id, "**") if exim_id else []
    results.check("command exits 67: the copy counts as delivered", len(notified) == 1,
                  log_excerpt(exim, exim_id))
    results.check("command exits 67: no failed delivery (**)", not failed, log_excerpt(exim, exim_id))

    exim_id = deliver_with(STAND_IN_NOISY, "command writes output")
    notified = exim.log_lines(exim_id, "=>", "R=notify", "T=notify_pipe") if exim_id else []
    logged = [line for line in exim.main_log().splitlines() if "stand-in output" in line]
    results.check("command writes output: the copy counts as delivered", len(notified) == 1,
                  log_excerpt(exim, exim_id))
    results.check("command writes output: output goes to the main log", bool(logged), exim.main_log()[-3000:])

    bounces = [line for line in exim.main_log().splitlines() if BOUNCE_RECEIVED.search(line)]
    results.check("stand-ins: no bounce message created", not bounces, "\n".join(bounces))
    results.check("stand-ins: sender mailbox is empty", not exim.mailbox_messages("sender"),
                  f"{len(exim.mailbox_messages('sender'))} message(s)")
    check_queue_empty(results, exim, "stand-ins")

    # The notify router changes nothing for the mailbox routers: a message
    # to a local part without a mailbox still bounces to its sender. (An
    # errors_to setting on the unseen router would discard that bounce.)
    message_id, raw = build_message(SENDER, [f"nobody-here@{DOMAIN}"], "Unknown local part", DOMAIN,
                                    f"tests/e2e/{TEST_NAME}")
    exim.submit_local([f"nobody-here@{DOMAIN}"], raw)

    def bounce_delivered():
        # The bounce message waits in the queue like any other message.
        exim.run_queue()
        return exim.mailbox_messages("sender")

    bounced = wait_until(bounce_delivered, DELIVERY_TIMEOUT, interval=1)
    results.check("unknown local part: bounce reaches the sender", len(bounced or []) == 1,
                  f"{len(bounced or [])} message(s) in the sender's mailbox; log:\n{exim.main_log()[-3000:]}")
    if bounced:
        results.check("unknown local part: the bounce is about the mailbox, not the notification",
                      b"nobody-here@" in bounced[0] and b"stand-in" not in bounced[0], bounced[0][:2000])
    results.check("stand-ins: Exim panic log is empty", exim.panic_log() == "", exim.panic_log())


# The answers that update-exim4.conf would otherwise take from debconf: a
# host that delivers locally for the test domain.
DEBIAN_SETTINGS = f"""\
dc_eximconfig_configtype='local'
dc_other_hostnames='{DOMAIN}'
dc_local_interfaces='127.0.0.1'
dc_readhost=''
dc_relay_domains=''
dc_minimaldns='false'
dc_relay_nets=''
dc_smarthost=''
CFILEMODE='644'
dc_use_split_config='{{split}}'
dc_hide_mailname=''
dc_mailname_in_oh='true'
dc_localdelivery='maildir_home'
"""


def debian_config(root, split, deliver_path, socket_path):
    """Generate a Debian exim4-config configuration with the contrib files added; return its path.

    Split: the two files go to conf.d/router/ and conf.d/transport/. Non-split:
    the two .include lines go into exim4.conf.template, the router's before
    the first local router (real_local) and the transport's after
    "begin transports". Both as contrib/exim/README.md says.
    """
    confdir = root / "exim4"
    shutil.copytree(EXIM_DIR / "etc" / "exim4", confdir)
    (confdir / "update-exim4.conf.conf").write_text(DEBIAN_SETTINGS.replace("{split}", str(split).lower()))
    router = confdir / "notify_router.conf"
    transport = confdir / "notify_transport.conf"
    router.write_text(contrib_text("notify_router.conf", deliver_path, socket_path))
    transport.write_text(contrib_text("notify_transport.conf", deliver_path, socket_path))

    if split:
        shutil.copy(router, confdir / "conf.d" / "router" / DEBIAN_ROUTER_FILE)
        shutil.copy(transport, confdir / "conf.d" / "transport" / DEBIAN_TRANSPORT_FILE)
    else:
        template = confdir / "exim4.conf.template"
        text = template.read_text()
        if "\nreal_local:\n" not in text or "\nbegin transports\n" not in text:
            raise SetupError(f"{template} has no 'real_local:' router or 'begin transports' line; "
                             "update contrib/exim/README.md and this test")
        text = text.replace("\nreal_local:\n", f"\n.include {router}\n\nreal_local:\n", 1)
        text = text.replace("\nbegin transports\n", f"\nbegin transports\n\n.include {transport}\n", 1)
        template.write_text(text)

    output = root / "config.autogenerated"
    run([EXIM_DIR / "usr" / "sbin" / "update-exim4.conf", "--confdir", confdir, "--output", output], timeout=60)
    return output


def case_debian_configs(results, root, deliver_path, socket_path):
    """Case 5: Debian's split and non-split configurations route through the notify router."""
    log("case 5: Debian exim4-config, split and non-split")
    spool = root / "spool"
    spool.mkdir(mode=0o750, parents=True)
    exim_user = pwd.getpwnam("Debian-exim")
    os.chown(spool, exim_user.pw_uid, exim_user.pw_gid)

    for split in (True, False):
        label = "Debian split config" if split else "Debian non-split config"
        config = debian_config(root / ("split" if split else "non-split"), split, deliver_path, socket_path)
        # SPOOLDIR keeps Exim away from /var/spool/exim4.
        command = [str(EXIM_BIN), "-C", str(config), f"-DSPOOLDIR={spool}"]
        valid = run(command + ["-bV"], timeout=30, check=False)
        results.check(f"{label}: exim -bV accepts it", valid.returncode == 0, valid.stdout + valid.stderr)

        # root@ is a local user on every Debian system; -bt prints one
        # "router = ..." line for each routed copy, in routing order.
        routed = run(command + ["-bt", f"root@{DOMAIN}"], timeout=30, check=False)
        routers = re.findall(r"router = (\S+), transport = (\S+)", routed.stdout)
        results.check(f"{label}: root@{DOMAIN} routed by the notify router",
                      ("notify", "notify_pipe") in routers, routed.stdout + routed.stderr)
        results.check(f"{label}: and delivered by another router as well",
                      any(router != "notify" for router, _ in routers)
                      or "transport = address_file" in routed.stdout,
                      routed.stdout + routed.stderr)

        # The debug output names each router as it is consulted.
        traced = run(command + ["-d+route", "-bt", f"root@{DOMAIN}"], timeout=30, check=False)
        order = re.findall(r"--------> (\S+) router <--------", traced.stderr)
        before = "notify" in order and "system_aliases" in order and \
            order.index("notify") < order.index("system_aliases")
        results.check(f"{label}: notify router runs before system_aliases", before, f"router order: {order}")


def ensure_exim():
    """Unpack Exim with scripts/install-exim-for-tests.sh when it is missing."""
    if os.access(EXIM_BIN, os.X_OK):
        return
    log(f"{EXIM_BIN} missing; running {INSTALL_SCRIPT}")
    run([INSTALL_SCRIPT, EXIM_DIR], timeout=600)


def main(argv):
    exit_on_sigterm()
    results = Results()
    if not is_root_or_report(results, TEST_NAME, "starts Exim"):
        return results.summary()

    root = None
    created_user = False
    exim = None
    relay = None
    try:
        bin_dir = find_bin_dir(argv)
        ensure_exim()
        log(f"binaries from {bin_dir}, Exim from {EXIM_BIN}")

        created_user = ensure_system_user(PIPE_USER)
        root = make_temp_root("notify-exim-e2e-")
        deliver = copy_deliver(bin_dir, root / "bin")
        run_dir = root / "run"
        run_dir.mkdir(mode=0o755)
        socket_path = run_dir / "relay.sock"

        relay = Relay(bin_dir / "notify-relay", free_loopback_port(), socket_path, root / "log-relay.txt",
                      socket_group=PIPE_USER, domain=DOMAIN)
        relay.start()
        socket_group = relay.socket_group_name()
        results.check("relay socket group is the transport's group", socket_group == PIPE_USER,
                      f"socket {socket_path} has group {socket_group}")

        exim = EximInstance(root / "exim", deliver, socket_path, smtp_port=free_loopback_port())
        exim.write_config()
        exim.check_config()
        exim.start_daemon()
        log(f"Exim on 127.0.0.1:{exim.smtp_port}, relay on 127.0.0.1:{relay.http_port}")

        case_two_subscribers(results, exim, relay.http_port)
        case_unknown_recipient_rejected(results, exim)
        case_relay_down(results, exim, relay)
        case_stand_ins(results, root / "exim-stand-in", socket_path)
        case_debian_configs(results, root / "debian", deliver, socket_path)
    except SetupError as error:
        results.check("setup", False, str(error))
    except Exception as error:  # any other error still gets the summary line and cleanup
        results.check("test run", False, f"{type(error).__name__}: {error}")
    finally:
        exim_logs = []
        if exim is not None:
            exim_logs = [("Exim main log", exim.main_log, 4000), ("Exim panic log", exim.panic_log, 2000)]
        finish_run(
            results, relay=relay, root=root, remove_user=PIPE_USER if created_user else None,
            failure_logs=exim_logs,
            stops=[exim.stop_daemon] if exim is not None else [])

    return results.summary()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
