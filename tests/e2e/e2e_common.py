"""Shared helpers of the end-to-end tests in tests/e2e.

Each *_e2e.py test starts real programs (notify-relay, Postfix, Exim) on
127.0.0.1 and Unix sockets under a temporary directory, and this module contains
what they share: the check counter and its summary line, bounded waits, the
relay process, long-poll subscribers, SMTP submission, Maildir reading,
temporary system users and a private Postfix instance.

Nothing here reaches beyond loopback. Processes are started and stopped by
their own PID or configuration directory, never by name.
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

# Upper bounds for every wait, in seconds.
START_TIMEOUT = 20
DELIVERY_TIMEOUT = 60
LONG_POLL_SECONDS = 60
QUEUE_DRAIN_TIMEOUT = 60
STOP_TIMEOUT = 15


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

    def summary(self):
        """Print the final "N passed, N failed" line; return the process exit status."""
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        return 0 if self.failed == 0 else 1


def log(message):
    print(f"# {message}", flush=True)


def exit_on_sigterm():
    """Turn SIGTERM (a CI time limit, for example) into SystemExit, so finally blocks still clean up."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


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


def port_accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def run(command, timeout=60, check=True, env=None, input=None):
    """Run a command with a time limit; raise SetupError with its output if it fails and check is set."""
    try:
        completed = subprocess.run([str(part) for part in command], capture_output=True, text=True,
                                   timeout=timeout, env=env, input=input)
    except subprocess.TimeoutExpired:
        raise SetupError(f"{' '.join(str(part) for part in command)} timed out after {timeout} s")
    if check and completed.returncode != 0:
        raise SetupError(
            f"{' '.join(str(part) for part in command)} failed with status {completed.returncode}:\n"
            f"{completed.stdout}{completed.stderr}")
    return completed


def find_bin_dir(argv):
    """Return the directory with notify-deliver and notify-relay: argv[1], $NOTIFY_BIN_DIR or .build."""
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


def copy_deliver(bin_dir, directory):
    """Copy notify-deliver into directory (mode 0755) and return its path.

    The MTA runs it as an unprivileged user, which may not be able to read
    the build directory (a checkout under /root).
    """
    directory.mkdir(mode=0o755, exist_ok=True)
    target = directory / "notify-deliver"
    target.write_bytes((bin_dir / "notify-deliver").read_bytes())
    target.chmod(0o755)
    return target


def make_temp_root(prefix):
    """Create a temporary directory that unprivileged users can traverse (mode 0755)."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o755)
    return root


def ensure_system_user(name, home="/nonexistent"):
    """Create a system user with a group of the same name if missing; return True if created here."""
    try:
        pwd.getpwnam(name)
        return False
    except KeyError:
        pass
    run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", str(home),
         "--shell", "/usr/sbin/nologin", name])
    return True


def remove_system_user(name):
    """Remove a user created by ensure_system_user, and its group when userdel leaves it."""
    run(["userdel", name], check=False)
    try:
        grp.getgrnam(name)
        run(["groupdel", name], check=False)
    except KeyError:
        pass


def is_root_or_report(results, test_name, reason):
    """Return True when running as root; otherwise record a failed check saying why root is needed."""
    if os.geteuid() == 0:
        return True
    print(f"{test_name}: must run as root, because it {reason}", file=sys.stderr)
    results.check("running as root", False, "run the test as root")
    return False


def add_sbin_to_path():
    """Append /usr/sbin and /sbin to PATH for this process and what it starts.

    postfix, useradd and the other administration commands live there, and a
    minimal PATH (cron, env -i, some CI runners) lacks them.
    """
    path = os.environ.get("PATH", "")
    for directory in ("/usr/sbin", "/sbin"):
        if directory not in path.split(":"):
            path = f"{path}:{directory}" if path else directory
    os.environ["PATH"] = path


add_sbin_to_path()


def require_postfix():
    """Raise SetupError unless the postfix command can be found."""
    if shutil.which("postfix") is None:
        raise SetupError("postfix is not installed; run scripts/install-test-deps.sh")


def finish_run(results, *, relay=None, root=None, remove_user=None, failure_logs=(), stops=()):
    """Print the logs that explain a failure, stop what the run started, and
    remove its temporary directory and user.

    failure_logs: (title, function returning the log text, characters kept),
    printed only when a check failed, before the relay's output.
    stops: functions that stop the mail server, called before the relay stops.
    """
    if results.failed:
        for title, text, limit in failure_logs:
            print(f"# {title} (last {limit} characters):")
            print(text()[-limit:])
        if relay is not None:
            print("# notify-relay output (last 2000 characters):")
            print(relay.output()[-2000:])
    for stop in stops:
        stop()
    if relay is not None:
        relay.stop()
    if remove_user:
        remove_system_user(remove_user)
    if root is not None and os.environ.get("NOTIFY_E2E_KEEP"):
        print(f"# NOTIFY_E2E_KEEP is set: keeping {root}")
    elif root is not None:
        shutil.rmtree(root, ignore_errors=True)


class Relay:
    """The real notify-relay, started and stopped by PID.

    extra_arguments go after the standard options, for example a second
    --domain or --subaddress-delimiter.
    """

    def __init__(self, binary, http_port, socket_path, log_path, socket_group, domain, extra_arguments=()):
        self.binary = binary
        self.http_port = http_port
        self.socket_path = socket_path
        self.log_path = log_path
        self.socket_group = socket_group
        self.domain = domain
        self.extra_arguments = [str(argument) for argument in extra_arguments]
        self.process = None

    def start(self):
        command = [
            str(self.binary),
            "--listen", f"127.0.0.1:{self.http_port}",
            "--socket", str(self.socket_path),
            "--socket-group", self.socket_group,
            "--socket-mode", "0660",
            "--domain", self.domain,
            *self.extra_arguments,
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
            return "ready" if port_accepts(self.http_port) else None

        state = wait_until(ready, START_TIMEOUT)
        if state != "ready":
            raise SetupError(f"notify-relay did not become ready within {START_TIMEOUT} s "
                             f"(state: {state or 'not listening'}); output:\n{self.output()[-3000:]}")

    def socket_group_name(self):
        return grp.getgrgid(os.stat(self.socket_path).st_gid).gr_name

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


def start_long_polls(port, inboxes):
    """Start one LongPoll per inbox and wait until each holds its starting cursor."""
    pollers = [LongPoll(port, inbox) for inbox in inboxes]
    for poller in pollers:
        poller.start()
    for poller in pollers:
        poller.waiting.wait(timeout=20)
    return pollers


def check_long_poll_event(results, poller, message_id, subject, recipient, sender):
    """Join a LongPoll and check that it got exactly one event for message_id with these fields."""
    poller.join(timeout=LONG_POLL_SECONDS + 20)
    inbox = poller.inbox
    if not results.check(f"{inbox}: long-poll returned 200", poller.status == 200,
                         poller.error or f"status {poller.status}, body {poller.body!r}"):
        return None
    messages = poller.messages()
    if not results.check(f"{inbox}: body has a messages list", isinstance(messages, list), messages):
        return None
    ours = [event for event in messages if event.get("messageId") == message_id]
    if not results.check(f"{inbox}: event for the message", len(ours) == 1,
                         f"want one event with messageId {message_id}, got {messages}"):
        return None
    event = ours[0]
    results.check(f"{inbox}: decoded subject", event.get("subject") == subject,
                  f"got {event.get('subject')!r}, want {subject!r}")
    results.check(f"{inbox}: recipient", str(event.get("recipient", "")).lower() == recipient.lower(),
                  f"got {event.get('recipient')!r}, want {recipient!r}")
    results.check(f"{inbox}: from", sender in str(event.get("from", "")), f"got {event.get('from')!r}")
    return event


def build_message(sender, recipients, subject, domain, origin):
    """Return (Message-ID, bytes) of a small test message; origin names the test in the body."""
    message = EmailMessage()
    message_id = f"<{uuid.uuid4().hex}@{domain}>"
    message["From"] = f"Sender <{sender}>"
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message.set_content(f"Test message from {origin}.\n")
    return message_id, message.as_bytes(policy=email.policy.SMTP)


def smtp_submit(port, sender, recipients, raw):
    """Send raw over SMTP to 127.0.0.1:port; return the server's reply text to DATA.

    The single SMTP commands are used, not sendmail(), because the reply to
    DATA carries the queue id ("250 2.0.0 Ok: queued as 4XyZ1" from Postfix,
    "250 OK id=1tAbCd-000123-XY" from Exim).
    """
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        code, reply = client.mail(sender)
        if code != 250:
            raise SetupError(f"MAIL FROM rejected: {code} {reply!r}")
        for recipient in recipients:
            code, reply = client.rcpt(recipient)
            if code != 250:
                raise SetupError(f"RCPT TO {recipient} rejected: {code} {reply!r}")
        code, reply = client.data(raw)
        if code != 250:
            raise SetupError(f"DATA rejected: {code} {reply!r}")
    return reply.decode(errors="replace")


def smtp_rcpt_reply(port, sender, recipient):
    """Return the (code, text) reply to RCPT TO for one recipient, then quit without sending data."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        client.mail(sender)
        code, reply = client.rcpt(recipient)
        client.rset()
    return code, reply.decode(errors="replace")


def maildir_messages(directory):
    """Return the raw messages in a Maildir's new/ and cur/ folders, oldest name first."""
    messages = []
    for folder in ("new", "cur"):
        path = Path(directory) / folder
        if path.is_dir():
            messages += [entry.read_bytes() for entry in sorted(path.iterdir())]
    return messages


def maildir_has(directory, message_id):
    return any(message_id.encode() in message for message in maildir_messages(directory))


def read_text(path):
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""


class PostfixInstance:
    """A Postfix instance whose configuration, queue and log live under one directory.

    The caller supplies everything after the common part of main.cf (the
    served domain, its delivery and the contrib files) and the extra
    master.cf lines.

    NOTE: the instance uses the Debian package's daemon and meta directories
    (/usr/lib/postfix/sbin, /etc/postfix/postfix-files); other Postfix builds
    may need different settings in base_main_cf().
    """

    def __init__(self, root, smtp_port, hostname):
        self.root = root
        self.config_dir = root / "etc"
        self.queue_dir = root / "queue"
        self.data_dir = root / "data"
        self.log_file = root / "log" / "postfix.log"
        self.smtp_port = smtp_port
        self.hostname = hostname
        self.started = False

    def base_main_cf(self, test_name):
        return f"""\
# Test instance written by tests/e2e/{test_name}.
compatibility_level = 3.6
queue_directory = {self.queue_dir}
data_directory = {self.data_dir}
maillog_file = {self.log_file}
maillog_file_prefixes = {self.root}
myhostname = {self.hostname}
myorigin = $myhostname
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
"""

    def base_master_cf(self, test_name):
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
        return f"# Test instance written by tests/e2e/{test_name}.\n" + "\n".join(services) + "\n"

    def write_config(self, main_cf, master_cf, files=None):
        """Create the instance's directories and write main.cf, master.cf and extra files into etc/."""
        for directory in (self.config_dir, self.queue_dir, self.log_file.parent):
            directory.mkdir(mode=0o755, exist_ok=True)
        postfix_user = pwd.getpwnam("postfix")
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        os.chown(self.data_dir, postfix_user.pw_uid, postfix_user.pw_gid)

        (self.config_dir / "main.cf").write_text(main_cf)
        (self.config_dir / "master.cf").write_text(master_cf)
        for name, text in (files or {}).items():
            (self.config_dir / name).write_text(text)

    def command(self, *arguments):
        return ["postfix", "-c", str(self.config_dir), *arguments]

    def start(self):
        run(self.command("check"))
        # Set before starting, so that a start that fails halfway is stopped too.
        self.started = True
        run(self.command("start"))

        # master(8) opens the SMTP listener after its children are forked;
        # wait until a connection succeeds.
        if not wait_until(lambda: port_accepts(self.smtp_port), START_TIMEOUT):
            raise SetupError(f"Postfix did not accept connections on 127.0.0.1:{self.smtp_port} "
                             f"within {START_TIMEOUT} s; log:\n{self.log_text()[-3000:]}")

    def reload(self):
        """Make the running instance read main.cf and master.cf again."""
        run(self.command("check"))
        run(self.command("reload"))

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

    def wait_for_empty_queue(self, timeout=QUEUE_DRAIN_TIMEOUT):
        """Wait until the queue is empty, asking for one early retry halfway; return what is left."""
        flushed = False
        deadline = time.monotonic() + timeout
        queue = self.queue_entries()
        while queue and time.monotonic() < deadline:
            if not flushed and time.monotonic() > deadline - timeout / 2:
                self.flush_queue()
                flushed = True
            time.sleep(0.5)
            queue = self.queue_entries()
        return queue

    def log_text(self):
        return read_text(self.log_file)

    def log_lines(self, queue_id, *words):
        return [line for line in self.log_text().splitlines()
                if f" {queue_id}: " in line and all(word in line for word in words)]

    def wait_for_removal(self, queue_id):
        """Wait until qmgr(8) has finished the message; any bounce notice is queued by then."""
        return wait_until(lambda: f"{queue_id}: removed" in self.log_text(), DELIVERY_TIMEOUT)


def postfix_queue_id(reply):
    """Return the queue id from Postfix's reply to DATA ("250 2.0.0 Ok: queued as 4XyZ1")."""
    if "queued as " not in reply:
        raise SetupError(f"no queue id in the reply to DATA: {reply!r}")
    return reply.split("queued as ")[1].split()[0]
