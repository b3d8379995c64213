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
need different settings in base_main_cf().
"""

import email.policy
import grp
import json
import os
import pwd
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from email.message import EmailMessage
from http.client import HTTPConnection
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONTRIB = REPO / "contrib" / "postfix"

DOMAIN = "example.test"
SENDER = f"sender@{DOMAIN}"
MAILBOXES = ("alice", "bob", "sender")
PIPE_USER = "notify"
SUBJECT = "Grüße aus Köln"

# Upper bounds for every wait, in seconds.
START_TIMEOUT = 20
DELIVERY_TIMEOUT = 60
LONG_POLL_SECONDS = 60
QUEUE_DRAIN_TIMEOUT = 60
STOP_TIMEOUT = 15

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


class SetupError(Exception):
    """A step that the checks depend on failed, so the run stops there."""


class Results:
    """Counts and prints checks as they are made."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, condition, detail=""):
        if condition:
            self.passed += 1
            print(f"ok   {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {name}: {detail}", flush=True)
        return condition


def log(message):
    print(f"# {message}", flush=True)


def wait_until(predicate, timeout, interval=0.2):
    """Call predicate until it returns a true value or timeout seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def free_loopback_port():
    # The port is free when checked, but another process could take it
    # before the server binds. That shows up as a start failure.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(command, timeout=60, check=True):
    """Run a command with a time limit; raise SetupError with its output if it fails and check is set."""
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SetupError(f"{' '.join(command)} timed out after {timeout} s")
    if check and completed.returncode != 0:
        raise SetupError(
            f"{' '.join(command)} failed with status {completed.returncode}:\n"
            f"{completed.stdout}{completed.stderr}")
    return completed


def find_bin_dir(argv):
    candidates = []
    if len(argv) > 1:
        candidates.append(Path(argv[1]))
    elif os.environ.get("NOTIFY_BIN_DIR"):
        candidates.append(Path(os.environ["NOTIFY_BIN_DIR"]))
    else:
        candidates += [REPO / ".build" / "release", REPO / ".build" / "debug"]
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in ("notify-deliver", "notify-relay")):
            return directory.resolve()
    tried = ", ".join(str(directory) for directory in candidates)
    raise SetupError(
        f"notify-deliver and notify-relay not found in {tried}; build them with "
        "'make build' or pass the directory as the first argument or NOTIFY_BIN_DIR")


class PostfixInstance:
    """A Postfix instance whose configuration, queue, mailboxes and log live under one directory."""

    def __init__(self, root, smtp_port, deliver_path, socket_path, mail_uid, mail_gid):
        self.root = root
        self.config_dir = root / "etc"
        self.queue_dir = root / "queue"
        self.data_dir = root / "data"
        self.mail_dir = root / "mail"
        self.log_file = root / "log" / "postfix.log"
        self.smtp_port = smtp_port
        self.deliver_path = deliver_path
        self.socket_path = socket_path
        self.mail_uid = mail_uid
        self.mail_gid = mail_gid
        self.started = False

    def base_main_cf(self):
        mailbox_map = ", ".join(f"{name}@{DOMAIN}={name}/" for name in MAILBOXES)
        return f"""\
# Test instance written by tests/e2e/postfix_e2e.py.
compatibility_level = 3.6
queue_directory = {self.queue_dir}
data_directory = {self.data_dir}
maillog_file = {self.log_file}
maillog_file_prefixes = {self.root}
myhostname = mx.{DOMAIN}
mydomain = {DOMAIN}
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
biff = no
# Nothing leaves this host: mail for any other domain fails at once.
default_transport = error:mail to other domains is disabled in this test
relay_transport = error:mail to other domains is disabled in this test
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {self.mail_dir}
virtual_mailbox_maps = inline:{{ {mailbox_map} }}
virtual_uid_maps = static:{self.mail_uid}
virtual_gid_maps = static:{self.mail_gid}

# contrib/postfix/main.cf follows.
"""

    def base_master_cf(self):
        # chroot is off for every service, so the instance needs no chroot
        # tree under its queue directory.
        services = [
            f"127.0.0.1:{self.smtp_port} inet n - n - - smtpd",
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "proxywrite unix - - n - 1 proxymap",
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "local unix - n n - - local",
            "virtual unix - n n - - virtual",
            "lmtp unix - - n - - lmtp",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        return "# Test instance written by tests/e2e/postfix_e2e.py.\n" + "\n".join(services) + \
            "\n\n# contrib/postfix/master.cf follows.\n"

    def contrib_text(self, name):
        """Read one contrib/postfix file and substitute its documented placeholders."""
        text = (CONTRIB / name).read_text()
        for placeholder in CONTRIB_PLACEHOLDERS[name]:
            if placeholder not in text:
                raise SetupError(f"contrib/postfix/{name} no longer contains the placeholder {placeholder}; "
                                 "update the substitutions in tests/e2e/postfix_e2e.py")
        text = text.replace(PLACEHOLDER_DELIVER, str(self.deliver_path))
        text = text.replace(PLACEHOLDER_SOCKET, str(self.socket_path))
        text = text.replace(PLACEHOLDER_CONFIG_DIR, f"{self.config_dir}/")
        text = text.replace(PLACEHOLDER_DOMAIN_PATTERN, DOMAIN.replace(".", "\\."))
        text = text.replace(PLACEHOLDER_DOMAIN, DOMAIN)
        return text

    def write_config(self):
        for directory in (self.config_dir, self.queue_dir, self.log_file.parent):
            directory.mkdir(mode=0o755)
        postfix_user = pwd.getpwnam("postfix")
        self.data_dir.mkdir(mode=0o700)
        os.chown(self.data_dir, postfix_user.pw_uid, postfix_user.pw_gid)
        self.mail_dir.mkdir(mode=0o700)
        os.chown(self.mail_dir, self.mail_uid, self.mail_gid)

        (self.config_dir / "main.cf").write_text(self.base_main_cf() + self.contrib_text("main.cf"))
        (self.config_dir / "master.cf").write_text(self.base_master_cf() + self.contrib_text("master.cf"))
        for name in MAP_FILES:
            (self.config_dir / name).write_text(self.contrib_text(name))

    def command(self, *arguments):
        return ["postfix", "-c", str(self.config_dir), *arguments]

    def start(self):
        self.write_config()
        run(self.command("check"))
        # Set before starting, so that a start that fails halfway is stopped too.
        self.started = True
        run(self.command("start"))

        # master(8) opens the SMTP listener after its children are forked;
        # wait until a connection succeeds.
        def smtp_ready():
            try:
                with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=1):
                    return True
            except OSError:
                return False

        if not wait_until(smtp_ready, START_TIMEOUT):
            raise SetupError(f"Postfix did not accept connections on 127.0.0.1:{self.smtp_port} "
                             f"within {START_TIMEOUT} s; log:\n{self.log_text()[-3000:]}")

    def stop(self):
        if not self.started:
            return
        completed = run(self.command("stop"), timeout=STOP_TIMEOUT + 15, check=False)
        if completed.returncode != 0:
            print(f"# warning: postfix stop failed: {completed.stdout}{completed.stderr}", file=sys.stderr)
        self.started = False

    def queue_entries(self):
        """Return the queue as postqueue -j lists it: one JSON object a message."""
        env = dict(os.environ, MAIL_CONFIG=str(self.config_dir))
        completed = subprocess.run(["postqueue", "-j"], capture_output=True, text=True, timeout=30, env=env)
        if completed.returncode != 0:
            raise SetupError(f"postqueue -j failed: {completed.stderr.strip()}")
        return [json.loads(line) for line in completed.stdout.splitlines() if line.strip()]

    def flush_queue(self):
        env = dict(os.environ, MAIL_CONFIG=str(self.config_dir))
        subprocess.run(["postqueue", "-f"], capture_output=True, timeout=30, env=env)

    def log_text(self):
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def mailbox_messages(self, name):
        """Return the raw messages in one Maildir's new/ and cur/ folders."""
        messages = []
        for folder in ("new", "cur"):
            path = self.mail_dir / name / folder
            if path.is_dir():
                messages += [entry.read_bytes() for entry in sorted(path.iterdir())]
        return messages

    def mailbox_has(self, name, message_id):
        return any(message_id.encode() in message for message in self.mailbox_messages(name))


class Relay:
    """The real notify-relay, started and stopped by PID."""

    def __init__(self, binary, http_port, socket_path, log_path):
        self.binary = binary
        self.http_port = http_port
        self.socket_path = socket_path
        self.log_path = log_path
        self.process = None

    def start(self):
        command = [
            str(self.binary),
            "--listen", f"127.0.0.1:{self.http_port}",
            "--socket", str(self.socket_path),
            "--socket-group", PIPE_USER,
            "--socket-mode", "0660",
            "--domain", DOMAIN,
        ]
        log(" ".join(command))
        with open(self.log_path, "wb") as output:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output,
                                            stderr=subprocess.STDOUT)

        def ready():
            if self.process.poll() is not None:
                return "exited"
            if not self.socket_path.exists():
                return None
            try:
                with socket.create_connection(("127.0.0.1", self.http_port), timeout=1):
                    return "ready"
            except OSError:
                return None

        state = wait_until(ready, START_TIMEOUT)
        if state != "ready":
            raise SetupError(f"notify-relay did not become ready within {START_TIMEOUT} s "
                             f"(state: {state or 'not listening'}); output:\n{self.output()[-3000:]}")

    def stop(self):
        """Send SIGTERM and wait; return the exit status, or None if it had to be killed."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
            return None

    def output(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class LongPoll(threading.Thread):
    """One subscriber: reads the current cursor, then waits for the next event of its inbox."""

    def __init__(self, port, inbox):
        super().__init__(daemon=True)
        self.port = port
        self.inbox = inbox
        self.waiting = threading.Event()
        self.status = None
        self.body = None
        self.error = None

    def request(self, path, timeout):
        connection = HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.getheader("Notify-Cursor"), response.read()
        finally:
            connection.close()

    def run(self):
        try:
            # A first short poll returns the current cursor, so the long-poll
            # below cannot miss an event that arrives before it is registered.
            _, cursor, _ = self.request(f"/{self.inbox}?timeout=1&format=json", timeout=10)
            since = f"&since={cursor}" if cursor else ""
            self.waiting.set()
            path = f"/{self.inbox}?timeout={LONG_POLL_SECONDS}&format=json{since}"
            self.status, _, self.body = self.request(path, timeout=LONG_POLL_SECONDS + 15)
        except Exception as error:  # reported by the test case as a failed check
            self.error = f"{type(error).__name__}: {error}"
        finally:
            self.waiting.set()

    def messages(self):
        try:
            return json.loads(self.body)["messages"]
        except (TypeError, ValueError, KeyError) as error:
            return f"invalid JSON body {self.body!r}: {error}"


def send_mail(port, recipients, subject):
    """Send one message over SMTP; return its Message-ID, its Postfix queue id and the bytes sent."""
    message = EmailMessage()
    message_id = f"<{uuid.uuid4().hex}@{DOMAIN}>"
    message["From"] = f"Sender <{SENDER}>"
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message.set_content("Test message from tests/e2e/postfix_e2e.py.\n")
    raw = message.as_bytes(policy=email.policy.SMTP)

    # The single SMTP commands, not sendmail(), because the reply to DATA
    # carries the queue id ("250 2.0.0 Ok: queued as 4XyZ1").
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        code, reply = client.mail(SENDER)
        if code != 250:
            raise SetupError(f"MAIL FROM rejected: {code} {reply!r}")
        for recipient in recipients:
            code, reply = client.rcpt(recipient)
            if code != 250:
                raise SetupError(f"RCPT TO {recipient} rejected: {code} {reply!r}")
        code, reply = client.data(raw)
        if code != 250 or b"queued as " not in reply:
            raise SetupError(f"DATA rejected: {code} {reply!r}")
    queue_id = reply.split(b"queued as ")[1].split()[0].decode()
    return message_id, queue_id, raw


def wait_for_removal(postfix, queue_id):
    """Wait until qmgr(8) has finished the message; any bounce notice is queued by then."""
    return wait_until(lambda: f"{queue_id}: removed" in postfix.log_text(), DELIVERY_TIMEOUT)


def log_lines(postfix, queue_id, *words):
    return [line for line in postfix.log_text().splitlines()
            if f" {queue_id}: " in line and all(word in line for word in words)]


def case_two_subscribers(results, postfix, relay_port):
    """Case 1: one message to alice and bob reaches both subscribers and both mailboxes."""
    log("case 1: one message to two waiting subscribers")
    pollers = [LongPoll(relay_port, name) for name in ("alice", "bob")]
    for poller in pollers:
        poller.start()
    for poller in pollers:
        poller.waiting.wait(timeout=20)

    recipients = [f"alice@{DOMAIN}", f"bob@{DOMAIN}"]
    message_id, queue_id, raw = send_mail(postfix.smtp_port, recipients, SUBJECT)
    header_block = raw.split(b"\r\n\r\n")[0]
    results.check("subject sent as RFC 2047 encoded word", b"Subject: =?utf-8?" in header_block,
                  f"header block sent: {header_block!r}")

    for poller in pollers:
        poller.join(timeout=LONG_POLL_SECONDS + 20)
        inbox = poller.inbox
        if not results.check(f"{inbox}: long-poll returned 200", poller.status == 200,
                             poller.error or f"status {poller.status}, body {poller.body!r}"):
            continue
        messages = poller.messages()
        if not results.check(f"{inbox}: body has a messages list", isinstance(messages, list), messages):
            continue
        ours = [event for event in messages if event.get("messageId") == message_id]
        if not results.check(f"{inbox}: event for the message", len(ours) == 1,
                             f"want one event with messageId {message_id}, got {messages}"):
            continue
        event = ours[0]
        results.check(f"{inbox}: decoded subject", event.get("subject") == SUBJECT,
                      f"got {event.get('subject')!r}, want {SUBJECT!r}")
        results.check(f"{inbox}: recipient", str(event.get("recipient", "")).lower() == f"{inbox}@{DOMAIN}",
                      f"got {event.get('recipient')!r}")
        results.check(f"{inbox}: from", SENDER in str(event.get("from", "")), f"got {event.get('from')!r}")

    for name in ("alice", "bob"):
        delivered = wait_until(lambda: postfix.mailbox_has(name, message_id), DELIVERY_TIMEOUT)
        results.check(f"{name}: mailbox has the message", delivered,
                      f"no message with {message_id} in {postfix.mail_dir / name} after {DELIVERY_TIMEOUT} s")

    finished = wait_for_removal(postfix, queue_id)
    results.check("Postfix finished the message", finished,
                  f"no '{queue_id}: removed' in the Postfix log after {DELIVERY_TIMEOUT} s")
    for name in ("alice", "bob"):
        sent = log_lines(postfix, queue_id, f"to=<{name}@{DOMAIN}.notify.invalid>", "relay=notify", "status=sent")
        results.check(f"{name}: notify copy delivered by the pipe transport", len(sent) == 1,
                      f"want one 'relay=notify ... status=sent' line for {name}; log for {queue_id}:\n"
                      + "\n".join(log_lines(postfix, queue_id)))


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
    finished = wait_for_removal(postfix, queue_id)
    results.check("Postfix finished the message sent while the relay is down", finished,
                  f"no '{queue_id}: removed' in the Postfix log after {DELIVERY_TIMEOUT} s; log for {queue_id}:\n"
                  + "\n".join(log_lines(postfix, queue_id)))
    sent = log_lines(postfix, queue_id, f"to=<alice@{DOMAIN}.notify.invalid>", "relay=notify", "status=sent")
    results.check("notify copy counted as delivered while the relay is down", len(sent) == 1,
                  "\n".join(log_lines(postfix, queue_id)))

    # A bounce notice or a deferred copy would still be queued. Ask for one
    # early retry halfway, so a deferred copy gets a second chance in time.
    flushed = False
    deadline = time.monotonic() + QUEUE_DRAIN_TIMEOUT
    queue = postfix.queue_entries()
    while queue and time.monotonic() < deadline:
        if not flushed and time.monotonic() > deadline - QUEUE_DRAIN_TIMEOUT / 2:
            postfix.flush_queue()
            flushed = True
        time.sleep(0.5)
        queue = postfix.queue_entries()
    results.check("queue drains", not queue, f"still queued after {QUEUE_DRAIN_TIMEOUT} s: {queue}")

    text = postfix.log_text()
    bounced = [line for line in text.splitlines() if "status=bounced" in line]
    deferred = [line for line in text.splitlines() if "status=deferred" in line]
    results.check("no status=bounced in the Postfix log", not bounced, "\n".join(bounced))
    results.check("no status=deferred in the Postfix log", not deferred, "\n".join(deferred))
    results.check("sender mailbox has no bounce", not postfix.mailbox_messages("sender"),
                  f"{len(postfix.mailbox_messages('sender'))} message(s) in {postfix.mail_dir / 'sender'}")


def ensure_pipe_user():
    """Create the pipe user and group if missing; return True if this test created them."""
    try:
        pwd.getpwnam(PIPE_USER)
        return False
    except KeyError:
        pass
    run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", PIPE_USER])
    return True


def main(argv):
    # SIGTERM (a CI time limit, for example) raises SystemExit, so the
    # cleanup below still stops Postfix and the relay.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    if os.geteuid() != 0:
        print("postfix_e2e: must run as root, because it starts a Postfix instance", file=sys.stderr)
        print("0 passed, 1 failed")
        return 1

    results = Results()
    root = None
    created_user = False
    postfix = None
    relay = None
    try:
        bin_dir = find_bin_dir(argv)
        if shutil.which("postfix") is None:
            raise SetupError("postfix is not installed; run scripts/install-test-deps.sh")
        log(f"binaries from {bin_dir}")

        created_user = ensure_pipe_user()
        root = Path(tempfile.mkdtemp(prefix="notify-e2e-", dir="/tmp"))
        root.chmod(0o755)  # the pipe user must reach the binary and the socket below

        # notify-deliver runs as the pipe user, which may not be able to read
        # the build directory (a checkout under /root), so it gets a copy.
        bin_copy = root / "bin"
        bin_copy.mkdir(mode=0o755)
        deliver = bin_copy / "notify-deliver"
        shutil.copy2(bin_dir / "notify-deliver", deliver)
        deliver.chmod(0o755)

        run_dir = root / "run"
        run_dir.mkdir(mode=0o755)
        socket_path = run_dir / "relay.sock"
        nobody = pwd.getpwnam("nobody")

        relay = Relay(bin_dir / "notify-relay", free_loopback_port(), socket_path, root / "log-relay.txt")
        postfix = PostfixInstance(root, free_loopback_port(), deliver, socket_path,
                                  nobody.pw_uid, nobody.pw_gid)
        relay.start()
        socket_group = grp.getgrgid(os.stat(socket_path).st_gid).gr_name
        results.check("relay socket group is the pipe user's group", socket_group == PIPE_USER,
                      f"socket {socket_path} has group {socket_group}")
        postfix.start()
        log(f"Postfix on 127.0.0.1:{postfix.smtp_port}, relay on 127.0.0.1:{relay.http_port}")

        case_two_subscribers(results, postfix, relay.http_port)
        case_relay_down(results, postfix, relay)
    except SetupError as error:
        results.check("setup", False, str(error))
    except Exception as error:  # any other error still gets the summary line and cleanup
        results.check("test run", False, f"{type(error).__name__}: {error}")
    finally:
        if results.failed and postfix is not None:
            print("# Postfix log (last 4000 characters):")
            print(postfix.log_text()[-4000:])
        if results.failed and relay is not None:
            print("# notify-relay output (last 2000 characters):")
            print(relay.output()[-2000:])
        if postfix is not None:
            postfix.stop()
        if relay is not None:
            relay.stop()
        if root is not None and os.environ.get("NOTIFY_E2E_KEEP"):
            print(f"# NOTIFY_E2E_KEEP is set: keeping {root}")
        elif root is not None:
            shutil.rmtree(root, ignore_errors=True)
        if created_user:
            run(["userdel", PIPE_USER], check=False)

    print(f"{results.passed} passed, {results.failed} failed")
    return 0 if results.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
