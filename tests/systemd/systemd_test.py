#!/usr/bin/env python3
"""Run notify-relay the way contrib/systemd runs it, with systemd's own tools.

No service manager runs here (PID 1 need not be systemd), so the test uses
the parts of Debian's systemd package that work without one:

- systemd-socket-activate opens the listening sockets, waits for the first
  connection and then execs the relay in its own process with LISTEN_PID,
  LISTEN_FDS and LISTEN_FDNAMES set, as systemd does for a .socket unit;
- a datagram socket of the test's own serves as NOTIFY_SOCKET and
  receives the relay's sd_notify(3) lines;
- systemd-analyze verify and systemd-analyze security read the shipped units,
  and systemd-sysusers applies notify.conf to an empty root folder;
- strace records the relay's system calls, which are compared with
  SystemCallFilter= and MemoryDenyWriteExecute= of the shipped service.

Usage: python3 tests/systemd/systemd_test.py [--bin-dir DIR] [--keep] [--only TEXT]
  DIR contains notify-relay (default $NOTIFY_BIN_DIR, else .build/debug).
  --only runs the checks whose name contains TEXT.
  systemd and strace come from Debian's packages of those names. Run as
  root: the unit run switches to an unprivileged user id, as DynamicUser=
  does, and raises the open-file limit to LimitNOFILE=.

Everything listens on 127.0.0.1 or in a temporary folder. Every wait has a
bound, and a watchdog ends the whole run after WATCHDOG_SECONDS. The test
stops only the processes it started. The last line is "N passed, N failed";
the exit status is 0 only when nothing failed.
"""

import argparse
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

# The shared check counter lives in tests/checks.py.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from checks import CheckFailed, Results, WatchdogExpired, expect  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
UNIT_DIR = REPO / "contrib" / "systemd"
SERVICE = UNIT_DIR / "notify-relay.service"
HTTP_SOCKET = UNIT_DIR / "notify-relay.socket"
INGEST_SOCKET = UNIT_DIR / "notify-relay-ingest.socket"
SYSUSERS = UNIT_DIR / "notify.conf"
POSTFIX_MASTER = REPO / "contrib" / "postfix" / "master.cf"

# Bounds for things that happen at once on loopback: generous, so they catch
# a relay that never responds, not a slow machine.
PROMPT_SECONDS = 5.0
# How long a long-poll must stay unanswered before the test publishes.
HELD_SECONDS = 0.3
# The relay responds to waiting clients and exits within this time after SIGTERM
# (docs/protocol.md, "Shutdown").
SHUTDOWN_GRACE_SECONDS = 3.0
WATCHDOG_SECONDS = 240
# A user and group id from the range systemd gives dynamic users
# (61184-65519), with no name and no supplementary groups.
DYNAMIC_UID = 61184
# Highest "Overall exposure level" that systemd-analyze security may report
# for the shipped service (0 is fully sandboxed, 10 not at all).
MAX_EXPOSURE = 2.0


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, seconds, interval=0.02):
    """Poll `condition` until it is true or `seconds` pass; return its last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def clean_environment(extra=None):
    """The test's environment without the variables that steer activation and readiness.

    A test run by a service manager may itself have LISTEN_* or NOTIFY_SOCKET
    set; they must not leak into the relay or systemd-socket-activate.
    """
    blocked = {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "NOTIFY_RELAY_SOCKET"}
    environment = {name: value for name, value in os.environ.items() if name not in blocked}
    environment.update(extra or {})
    return environment


# ---------------------------------------------------------------------------
# Unit files


class UnitFile:
    """The settings of a systemd unit file, in file order, per section."""

    def __init__(self, path):
        self.path = Path(path)
        self.sections = {}
        section = None
        pending = ""
        for raw in self.path.read_text().splitlines():
            line = pending + raw.strip()
            pending = ""
            if not line or line[0] in "#;":
                continue
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                self.sections.setdefault(section, [])
                continue
            key, _, value = line.partition("=")
            self.sections.setdefault(section, []).append((key.strip(), value.strip()))

    def values(self, section, key):
        return [value for name, value in self.sections.get(section, []) if name == key]

    def value(self, section, key):
        """The last assignment of `key`, as systemd applies it, or None."""
        found = self.values(section, key)
        return found[-1] if found else None


def exec_start_arguments(service):
    """ExecStart= of the service, split into arguments, without systemd's prefix characters."""
    lines = [line for line in service.values("Service", "ExecStart") if line]
    expect(len(lines) == 1, f"{service.path.name}: {len(lines)} ExecStart= lines, expected 1")
    arguments = shlex.split(lines[0].lstrip("@-:+!"))
    expect(not any("$" in argument or "%" in argument for argument in arguments),
           f"ExecStart= uses $ or % substitution, which this test does not expand: {lines[0]}")
    return arguments


def option_value(arguments, option):
    """The value of `option` in an argument list (`--x V` or `--x=V`), or None."""
    for index, argument in enumerate(arguments):
        if argument == option and index + 1 < len(arguments):
            return arguments[index + 1]
        if argument.startswith(option + "="):
            return argument[len(option) + 1:]
    return None


def seconds_of(text):
    """A systemd time span such as 10s, 1min 30s or 500ms, in seconds."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        expect(unit in units or unit == "", f"time span {text!r}: unit {unit!r} not handled by this test")
        total += float(number) * units.get(unit, 1)
    return total


def unit_activation(folder, port):
    """The shipped .socket units as systemd-socket-activate sockets.

    Returns (listens, names, ingest path): each ListenStream= in unit order,
    TCP addresses moved to 127.0.0.1:`port` and Unix paths into `folder`,
    and the FileDescriptorName= of its unit.
    """
    listens, names, ingest_path = [], [], None
    for path in (HTTP_SOCKET, INGEST_SOCKET):
        unit = UnitFile(path)
        name = unit.value("Socket", "FileDescriptorName")
        expect(name is not None, f"{path.name}: no FileDescriptorName=")
        for address in unit.values("Socket", "ListenStream"):
            if address.startswith("/"):
                ingest_path = str(folder / Path(address).name)
                listens.append(ingest_path)
            else:
                listens.append(f"127.0.0.1:{port}")
            names.append(name)
    return listens, names, ingest_path


# ---------------------------------------------------------------------------
# Processes, clients and the notification socket


class Process:
    """A process this test started, with its output in a log file."""

    def __init__(self, name, arguments, folder, environment):
        self.name = name
        self.log_path = folder / f"{name}.log"
        self.log_file = open(self.log_path, "wb")
        self.popen = subprocess.Popen(arguments, stdin=subprocess.DEVNULL, stdout=self.log_file,
                                      stderr=subprocess.STDOUT, env=environment)
        self.pid = self.popen.pid

    def executable(self):
        """Path of the program the process runs now, or None once it has exited."""
        try:
            return os.readlink(f"/proc/{self.pid}/exe")
        except OSError:
            return None

    def send_signal(self, signum):
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def wait_exit(self, seconds):
        """Exit status, or None when the process is still running after `seconds`."""
        try:
            return self.popen.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None

    def log(self):
        return self.log_path.read_text(errors="replace")

    def log_field(self, message, field):
        """The value of `field` in the first log line with msg=`message`, or None."""
        for line in self.log().splitlines():
            if re.search(rf'msg="?{re.escape(message)}"?(\s|$)', line):
                match = re.search(rf'(?:^|\s){re.escape(field)}=("[^"]*"|\S+)', line)
                return match.group(1).strip('"') if match else None
        return None

    def stop(self):
        """Stop the process if it still runs: SIGTERM, then SIGKILL."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            if self.wait_exit(PROMPT_SECONDS) is None:
                self.popen.kill()
                self.popen.wait(timeout=PROMPT_SECONDS)
        self.log_file.close()


class Response:
    def __init__(self, status, fields, body):
        self.status = status
        self.fields = fields
        self.body = body

    def json(self):
        return json.loads(self.body)


class HTTPRequest:
    """One GET with `Connection: close`; the response is read up to the end of the connection."""

    def __init__(self, port, target):
        self.target = target
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=PROMPT_SECONDS)
        request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        self.sock.sendall(request.encode())

    def answered_within(self, seconds):
        self.sock.settimeout(seconds)
        try:
            return len(self.sock.recv(1, socket.MSG_PEEK)) > 0
        except socket.timeout:
            return False

    def response(self, seconds):
        """The whole response, or None when the connection is not closed within `seconds`."""
        deadline = time.monotonic() + seconds
        data = b""
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.sock.settimeout(remaining)
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            return None
        finally:
            self.sock.close()
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        expect(lines and lines[0].startswith("HTTP/1.1 "), f"GET {self.target}: malformed response {data[:200]!r}")
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        return Response(int(lines[0].split(" ")[1]), fields, body)

    def close(self):
        self.sock.close()


def get(port, target, seconds=PROMPT_SECONDS):
    response = HTTPRequest(port, target).response(seconds)
    expect(response is not None, f"GET {target} on port {port}: no complete response within {seconds} s")
    return response


def ingest(path, line, seconds=PROMPT_SECONDS):
    """Send one ingest line to the Unix socket at `path`; return the relay's reply line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(seconds)
        client.connect(str(path))
        client.sendall(line.encode() + b"\n")
        reply = b""
        try:
            while not reply.endswith(b"\n"):
                chunk = client.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except socket.timeout:
            raise CheckFailed(f"ingest {line!r} on {path}: no reply within {seconds} s") from None
    return reply.decode(errors="replace").strip()


def published_cursor(path, line):
    reply = ingest(path, line)
    expect(reply.startswith("OK "), f"ingest {line!r}: reply {reply!r}, expected OK <cursor>")
    return reply[3:]


def connection_refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


class NotifySocket:
    """A datagram socket in place of systemd's NOTIFY_SOCKET.

    `address` is a path or `@name` for an abstract socket. SO_PASSCRED makes
    the kernel attach the sender's pid to each datagram, which is how
    systemd decides whether a message comes from the service's main process.
    """

    def __init__(self, address):
        self.address = str(address)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if self.address.startswith("@"):
            self.sock.bind("\0" + self.address[1:])
        else:
            self.sock.bind(self.address)
            os.chmod(self.address, 0o666)
        self.messages = []

    def receive(self, seconds):
        """The next datagram as (lines, sender pid), or None after `seconds`."""
        self.sock.settimeout(max(seconds, 0.001))
        try:
            data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("iII")))
        except socket.timeout:
            return None
        sender = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                sender = struct.unpack("iII", payload[: struct.calcsize("iII")])[0]
        message = (data.decode(errors="replace").split("\n"), sender)
        self.messages.append(message)
        return message

    def wait_for(self, line, seconds):
        """The first datagram that contains `line`, or None after `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            message = self.receive(deadline - time.monotonic())
            if message is None:
                return None
            if line in message[0]:
                return message

    def close(self):
        self.sock.close()
        if not self.address.startswith("@"):
            Path(self.address).unlink(missing_ok=True)


def state_value(lines, key):
    """The value of `KEY=value` in a notification, or None."""
    for line in lines:
        if line.startswith(key + "="):
            return line[len(key) + 1:]
    return None


def activate_arguments(listens, names, setenv, program):
    """A systemd-socket-activate command line; `names` None passes no --fdname."""
    arguments = ["systemd-socket-activate"]
    for address in listens:
        arguments += ["--listen", address]
    if names is not None:
        arguments.append("--fdname=" + ":".join(names))
    for name, value in setenv.items():
        arguments += ["--setenv", f"{name}={value}"]
    return arguments + program


class Context:
    """What every check gets: the relay binary and a fresh folder per check."""

    def __init__(self, binary, root):
        self.binary = str(binary)
        self.root = root
        self.processes = []

    def folder(self, name):
        path = self.root / name
        path.mkdir(mode=0o755)
        return path

    def start(self, name, folder, arguments, environment=None):
        process = Process(name, arguments, folder, environment or clean_environment())
        self.processes.append(process)
        return process

    def stop_all(self):
        for process in self.processes:
            process.stop()
        self.processes = []


# ---------------------------------------------------------------------------
# Socket activation


def expect_exec_in_place(process, binary):
    """systemd-socket-activate must have replaced itself with the relay, keeping its pid."""
    executable = wait_until(lambda: (process.executable() or "").endswith("/notify-relay"), PROMPT_SECONDS)
    expect(executable, f"pid {process.pid} runs {process.executable()!r}, not {binary}; log:\n{process.log()}")


def expect_clean_exit(process, description):
    process.send_signal(signal.SIGTERM)
    status = process.wait_exit(SHUTDOWN_GRACE_SECONDS + 2)
    expect(status == 0, f"{description}: exit status {status} after SIGTERM, expected 0; log:\n{process.log()}")


def long_poll_wakes(port, ingest_path, inbox):
    """Wait on `inbox`, publish to it over `ingest_path`, and check the long-poll response."""
    poll = HTTPRequest(port, f"/{inbox}?format=json&timeout=20")
    try:
        expect(not poll.answered_within(HELD_SECONDS), f"long-poll on {inbox} answered before any mail")
        cursor = published_cursor(ingest_path, inbox)
        response = poll.response(PROMPT_SECONDS)
    finally:
        poll.close()
    expect(response is not None, f"long-poll on {inbox} not answered within {PROMPT_SECONDS} s of the mail")
    expect(response.status == 200, f"long-poll status {response.status}, expected 200; body {response.body!r}")
    document = response.json()
    expect(document.get("cursor") == cursor, f"long-poll cursor {document.get('cursor')!r}, expected {cursor!r}")
    expect(len(document.get("messages", [])) == 1, f"long-poll messages {document.get('messages')!r}, expected 1")
    return cursor


def check_activated_http(ctx):
    folder = ctx.folder("activated-http")
    port, unused_port = free_port(), free_port()
    socket_path = folder / "relay.sock"
    relay = ctx.start("relay", folder, activate_arguments(
        [f"127.0.0.1:{port}"], ["http"], {},
        [ctx.binary, "--socket", str(socket_path), "--listen", f"127.0.0.1:{unused_port}"]))

    # systemd-socket-activate listens and waits; the first connection starts the relay.
    expect(wait_until(lambda: not connection_refused(port), PROMPT_SECONDS), f"nothing listens on {port}")
    expect((relay.executable() or "").endswith("systemd-socket-activate"),
           f"relay started before any connection: pid {relay.pid} runs {relay.executable()!r}")
    poll = HTTPRequest(port, "/activated?format=json&timeout=20")
    try:
        expect_exec_in_place(relay, ctx.binary)
        expect(wait_until(socket_path.exists, PROMPT_SECONDS),
               f"no ingest socket {socket_path}: the relay must create it when none is activated")
        cursor = published_cursor(socket_path, "activated")
        response = poll.response(PROMPT_SECONDS)
    finally:
        poll.close()

    # The connection that started the relay waited in the backlog and is answered.
    expect(response is not None and response.status == 200,
           f"first connection, which started the relay: {response and response.status}, expected 200")
    expect(response.json().get("cursor") == cursor, f"cursor {response.json().get('cursor')!r}, expected {cursor!r}")
    expect(connection_refused(unused_port), f"port {unused_port} from --listen is open, but the activated listener replaces it")
    expect("activated" in (relay.log_field("relay started", "activated") or ""),
           f"start-up log line names no activated listener:\n{relay.log()}")
    expect_clean_exit(relay, "activated relay")
    expect(not socket_path.exists(), f"{socket_path}, created by the relay, is still there after it stopped")
    return None


def check_activated_http_and_ingest(ctx):
    folder = ctx.folder("activated-both")
    port = free_port()
    activated_path, unused_path = folder / "ingest.sock", folder / "relay.sock"
    relay = ctx.start("relay", folder, activate_arguments(
        [f"127.0.0.1:{port}", str(activated_path)], ["http", "ingest"], {},
        [ctx.binary, "--socket", str(unused_path)]))

    expect(wait_until(activated_path.exists, PROMPT_SECONDS), f"systemd-socket-activate made no {activated_path}")
    get(port, "/both?format=json&timeout=0.1")
    expect_exec_in_place(relay, ctx.binary)
    long_poll_wakes(port, activated_path, "both")
    expect(not unused_path.exists(), f"the relay created {unused_path} although an ingest socket was activated")
    expect_clean_exit(relay, "relay with activated ingest")
    expect(activated_path.exists(), f"the relay removed {activated_path}, which the service manager owns")
    return None


def check_ingest_waits_in_backlog(ctx):
    # A delivery that arrives before the relay runs (at boot, or during a
    # restart) is taken from the backlog once it starts, not refused.
    folder = ctx.folder("backlog")
    port = free_port()
    ingest_path = folder / "ingest.sock"
    relay = ctx.start("relay", folder, activate_arguments(
        [f"127.0.0.1:{port}", str(ingest_path)], ["http", "ingest"], {},
        [ctx.binary, "--socket", str(folder / "relay.sock")]))

    expect(wait_until(ingest_path.exists, PROMPT_SECONDS), f"systemd-socket-activate made no {ingest_path}")
    cursor = published_cursor(ingest_path, "early")
    expect_exec_in_place(relay, ctx.binary)

    # A cursor the relay never issued gets every held event at once.
    response = get(port, "/early?format=json&since=unknown")
    expect(response.status == 200, f"GET /early: status {response.status}, expected 200 with the held event")
    document = response.json()
    expect(document.get("gap") is True, f"unknown cursor: gap {document.get('gap')!r}, expected true")
    expect(document.get("cursor") == cursor, f"cursor {document.get('cursor')!r}, expected {cursor!r}")
    expect(len(document.get("messages", [])) == 1, f"messages {document.get('messages')!r}, expected the early one")
    expect_clean_exit(relay, "relay started by a delivery")
    return None


def check_unnamed_sockets(ctx):
    # With no names, the relay distinguishes the sockets by their type.
    folder = ctx.folder("unnamed")
    port = free_port()
    ingest_path = folder / "ingest.sock"
    relay = ctx.start("relay", folder, activate_arguments(
        [str(ingest_path), f"127.0.0.1:{port}"], None, {},
        [ctx.binary, "--socket", str(folder / "relay.sock")]))

    expect(wait_until(ingest_path.exists, PROMPT_SECONDS), f"systemd-socket-activate made no {ingest_path}")
    get(port, "/unnamed?format=json&timeout=0.1")
    expect_exec_in_place(relay, ctx.binary)
    long_poll_wakes(port, ingest_path, "unnamed")
    expect(not (folder / "relay.sock").exists(), "the relay created --socket although a Unix socket was activated")
    expect_clean_exit(relay, "relay with unnamed sockets")
    return None


def check_activated_admin(ctx):
    folder = ctx.folder("activated-admin")
    port, admin_port = free_port(), free_port()
    relay = ctx.start("relay", folder, activate_arguments(
        [f"127.0.0.1:{port}", f"127.0.0.1:{admin_port}"], ["http", "admin"], {},
        [ctx.binary, "--socket", str(folder / "relay.sock")]))

    expect(wait_until(lambda: not connection_refused(admin_port), PROMPT_SECONDS), f"nothing listens on {admin_port}")
    response = get(port, "/admin-check?format=json&timeout=0.1")
    expect(response.status == 204, f"inbox on the HTTP listener: status {response.status}, expected 204")
    expect_exec_in_place(relay, ctx.binary)
    health = get(admin_port, "/healthz")
    expect(health.status == 200, f"GET /healthz on the activated admin listener: status {health.status}, expected 200")
    metrics = get(admin_port, "/metrics")
    expect(metrics.status == 200 and b"notify_" in metrics.body,
           f"GET /metrics on the admin listener: status {metrics.status}, body {metrics.body[:200]!r}")
    inbox = get(admin_port, "/admin-check?format=json&timeout=0.1")
    expect(inbox.status == 404, f"inbox on the admin listener: status {inbox.status}, expected 404 (not an HTTP listener)")
    expect_clean_exit(relay, "relay with an activated admin listener")
    return None


def check_foreign_listen_pid(ctx):
    # LISTEN_FDS meant for another process (the variables leak to a child
    # that does not exec in place) must be ignored, and no descriptor taken.
    folder = ctx.folder("foreign-pid")
    port = free_port()
    socket_path = folder / "relay.sock"
    environment = clean_environment({"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "http"})
    relay = ctx.start("relay", folder, [ctx.binary, "--listen", f"127.0.0.1:{port}", "--socket", str(socket_path)],
                      environment)
    expect(wait_until(socket_path.exists, PROMPT_SECONDS), f"relay did not start:\n{relay.log()}")
    response = get(port, "/foreign?format=json&timeout=0.1")
    expect(response.status == 204, f"GET on --listen port: status {response.status}, expected 204")
    expect(relay.log_field("relay started", "activated") is None, f"relay used activated sockets:\n{relay.log()}")
    expect_clean_exit(relay, "relay with a foreign LISTEN_PID")
    return None


# ---------------------------------------------------------------------------
# Readiness


def check_readiness(ctx, address_kind):
    folder = ctx.folder(f"ready-{address_kind}")
    if address_kind == "path":
        notify_address = str(folder / "notify.sock")
    else:
        notify_address = f"@notify-test-{uuid.uuid4().hex}"
    notifications = NotifySocket(notify_address)
    port = free_port()
    socket_path = folder / "relay.sock"
    try:
        relay = ctx.start("relay", folder, [ctx.binary, "--listen", f"127.0.0.1:{port}", "--socket", str(socket_path)],
                          clean_environment({"NOTIFY_SOCKET": notify_address}))

        # READY=1 must mean "serving": both listeners answer the moment it arrives.
        ready = notifications.wait_for("READY=1", PROMPT_SECONDS)
        expect(ready is not None, f"no READY=1 on {notify_address} within {PROMPT_SECONDS} s; "
                                  f"received {notifications.messages}; log:\n{relay.log()}")
        lines, sender = ready
        response = get(port, "/ready?format=json&timeout=0.1")
        expect(response.status == 204, f"GET right after READY=1: status {response.status}, expected 204")
        published_cursor(socket_path, "ready")
        expect(state_value(lines, "MAINPID") == str(relay.pid),
               f"MAINPID {state_value(lines, 'MAINPID')!r}, expected the relay's pid {relay.pid}")
        expect(sender == relay.pid, f"READY=1 sent by pid {sender}, expected the main process {relay.pid}")
        expect(state_value(lines, "STATUS"), f"READY=1 datagram has no STATUS= line: {lines}")

        relay.send_signal(signal.SIGTERM)
        stopping = notifications.wait_for("STOPPING=1", PROMPT_SECONDS)
        expect(stopping is not None, f"no STOPPING=1 within {PROMPT_SECONDS} s of SIGTERM; "
                                     f"received {notifications.messages}")
        expect(stopping[1] == relay.pid, f"STOPPING=1 sent by pid {stopping[1]}, expected {relay.pid}")
        status = relay.wait_exit(SHUTDOWN_GRACE_SECONDS + 2)
        expect(status == 0, f"exit status {status} after SIGTERM, expected 0")
        ready_count = sum("READY=1" in message[0] for message in notifications.messages)
        expect(ready_count == 1, f"READY=1 sent {ready_count} times, expected once: {notifications.messages}")
        return f"{notify_address}: {' '.join(lines)}" if address_kind == "abstract" else None
    finally:
        notifications.close()


def check_no_ready_when_start_fails(ctx):
    # Type=notify counts a start as failed unless READY=1 arrives, so a relay
    # that cannot open its listeners must exit without sending it.
    folder = ctx.folder("ready-failure")
    notifications = NotifySocket(folder / "notify.sock")
    not_a_socket = folder / "relay.sock"
    not_a_socket.write_text("a regular file where the ingest socket should be\n")
    try:
        relay = ctx.start("relay", folder,
                          [ctx.binary, "--listen", f"127.0.0.1:{free_port()}", "--socket", str(not_a_socket)],
                          clean_environment({"NOTIFY_SOCKET": str(folder / "notify.sock")}))
        status = relay.wait_exit(PROMPT_SECONDS)
        expect(status not in (None, 0), f"relay with a regular file at --socket: exit status {status}, expected an error")
        notifications.receive(0.2)
        ready = [message for message in notifications.messages if "READY=1" in message[0]]
        expect(not ready, f"relay sent READY=1 although it failed to start: {ready}")
        return f"exit status {status}"
    finally:
        notifications.close()


def check_readiness_under_activation(ctx):
    folder = ctx.folder("ready-activated")
    notify_address = str(folder / "notify.sock")
    notifications = NotifySocket(notify_address)
    port = free_port()
    ingest_path = folder / "ingest.sock"
    try:
        relay = ctx.start("relay", folder, activate_arguments(
            [f"127.0.0.1:{port}", str(ingest_path)], ["http", "ingest"], {"NOTIFY_SOCKET": notify_address},
            [ctx.binary, "--socket", str(ingest_path)]))
        expect(wait_until(ingest_path.exists, PROMPT_SECONDS), f"systemd-socket-activate made no {ingest_path}")
        expect(notifications.receive(HELD_SECONDS) is None, "a notification arrived before the relay was started")
        poll = HTTPRequest(port, "/ready-activated?format=json&timeout=0.1")
        ready = notifications.wait_for("READY=1", PROMPT_SECONDS)
        poll.close()
        expect(ready is not None, f"no READY=1 within {PROMPT_SECONDS} s; log:\n{relay.log()}")
        expect(state_value(ready[0], "MAINPID") == str(relay.pid),
               f"MAINPID {state_value(ready[0], 'MAINPID')!r}, expected {relay.pid} (exec in place keeps the pid)")
        relay.send_signal(signal.SIGTERM)
        expect(notifications.wait_for("STOPPING=1", PROMPT_SECONDS) is not None, "no STOPPING=1 after SIGTERM")
        expect(relay.wait_exit(SHUTDOWN_GRACE_SECONDS + 2) == 0, "activated relay did not exit 0 after SIGTERM")
        return None
    finally:
        notifications.close()


# ---------------------------------------------------------------------------
# The shipped units


def check_unit_settings():
    service, http, ingest_unit = UnitFile(SERVICE), UnitFile(HTTP_SOCKET), UnitFile(INGEST_SOCKET)
    arguments = exec_start_arguments(service)
    socket_option = option_value(arguments, "--socket")

    expect(service.value("Service", "Type") == "notify", "notify-relay.service: Type= is not notify")
    expect(http.value("Socket", "FileDescriptorName") == "http", "notify-relay.socket: FileDescriptorName= is not http")
    expect(ingest_unit.value("Socket", "FileDescriptorName") == "ingest",
           "notify-relay-ingest.socket: FileDescriptorName= is not ingest")
    expect(ingest_unit.value("Socket", "Service") == SERVICE.name,
           f"notify-relay-ingest.socket: Service= is {ingest_unit.value('Socket', 'Service')!r}, expected {SERVICE.name}")
    sockets = " ".join(service.values("Service", "Sockets")).split()
    expect(sorted(sockets) == sorted([HTTP_SOCKET.name, INGEST_SOCKET.name]),
           f"notify-relay.service: Sockets= lists {sockets}, expected both socket units")
    expect(ingest_unit.values("Socket", "ListenStream") == [socket_option],
           f"ingest ListenStream= {ingest_unit.values('Socket', 'ListenStream')} differs from ExecStart --socket "
           f"{socket_option!r}")

    # The MTA's pipe user reaches the socket through its group.
    expect(ingest_unit.value("Socket", "SocketMode") == "0660", "ingest SocketMode= is not 0660")
    group = ingest_unit.value("Socket", "SocketGroup")
    pipe_user = re.search(r"\buser=([a-z_][a-z0-9_-]*)", POSTFIX_MASTER.read_text())
    expect(pipe_user is not None, f"no user= in {POSTFIX_MASTER}")
    expect(group == pipe_user.group(1),
           f"ingest SocketGroup={group}, but Postfix runs notify-deliver as user={pipe_user.group(1)}")

    # RuntimeDirectory= would chown /run/notify and the socket in it to the
    # relay's user at every start, and delete both at every stop.
    expect(not service.values("Service", "RuntimeDirectory"),
           "notify-relay.service sets RuntimeDirectory=, which takes over the socket unit's /run/notify")
    expect(service.value("Service", "User") in (None, "notify-relay"),
           f"User={service.value('Service', 'User')}: with DynamicUser=yes a static user of that name is reused")

    stop_seconds = seconds_of(service.value("Service", "TimeoutStopSec") or "90s")
    expect(stop_seconds > SHUTDOWN_GRACE_SECONDS,
           f"TimeoutStopSec= {stop_seconds} s does not exceed the relay's {SHUTDOWN_GRACE_SECONDS} s shutdown grace")
    return f"ExecStart: {' '.join(arguments)}"


def check_exec_start_runs(ctx):
    """Run ExecStart= with the units' sockets, limit and an unprivileged user id, as systemd would."""
    folder = ctx.folder("unit")
    service = UnitFile(SERVICE)
    arguments = exec_start_arguments(service)
    port = free_port()
    listens, names, ingest_path = unit_activation(folder, port)
    arguments[0] = ctx.binary
    arguments[arguments.index(option_value(arguments, "--socket"))] = ingest_path
    notify_address = str(folder / "notify.sock")
    notifications = NotifySocket(notify_address)

    # prlimit and setpriv exec in place, as systemd-socket-activate does,
    # so the pid stays the relay's. Raising the hard limit needs
    # CAP_SYS_RESOURCE, which containers often drop. Without it the limit is
    # capped at the current hard limit, and the relay's derived
    # --max-connections is checked against that.
    unit_limit = int(service.value("Service", "LimitNOFILE"))
    hard_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limit = unit_limit if hard_limit == resource.RLIM_INFINITY else min(unit_limit, hard_limit)
    wrapper = ["prlimit", f"--nofile={limit}:{limit}"]
    as_root = os.geteuid() == 0
    if as_root:
        os.chown(folder, DYNAMIC_UID, DYNAMIC_UID)
        wrapper += ["setpriv", f"--reuid={DYNAMIC_UID}", f"--regid={DYNAMIC_UID}", "--clear-groups",
                    "--no-new-privs", "--"]
    try:
        relay = ctx.start("relay", folder, wrapper + activate_arguments(
            listens, names, {"NOTIFY_SOCKET": notify_address}, arguments))
        expect(wait_until(lambda: Path(ingest_path).exists(), PROMPT_SECONDS),
               f"{ingest_path} not created; log:\n{relay.log()}")
        get(port, "/unit?format=json&timeout=0.1")
        ready = notifications.wait_for("READY=1", PROMPT_SECONDS)
        expect(ready is not None, f"no READY=1 from the ExecStart command line; log:\n{relay.log()}")
        expect(ready[1] == relay.pid, f"READY=1 from pid {ready[1]}, expected {relay.pid}")
        if as_root:
            status_text = Path(f"/proc/{relay.pid}/status").read_text()
            uids = re.search(r"^Uid:\s+(\d+)", status_text, re.MULTILINE).group(1)
            groups = re.search(r"^Groups:(.*)$", status_text, re.MULTILINE).group(1).split()
            expect(uids == str(DYNAMIC_UID), f"relay runs as uid {uids}, expected {DYNAMIC_UID}")
            expect(not groups, f"relay has supplementary groups {groups}, expected none")

        max_connections = relay.log_field("relay started", "max_connections")
        expect(max_connections == str(limit - 64),
               f"max_connections={max_connections} with LimitNOFILE={limit}, expected {limit - 64}")
        domain = option_value(arguments, "--domain")
        cursor = long_poll_wakes(port, ingest_path, f"unit@{domain}" if domain else "unit")

        relay.send_signal(signal.SIGTERM)
        expect(notifications.wait_for("STOPPING=1", PROMPT_SECONDS) is not None, "no STOPPING=1 after SIGTERM")
        stop_seconds = seconds_of(service.value("Service", "TimeoutStopSec"))
        status = relay.wait_exit(stop_seconds)
        expect(status == 0, f"exit status {status} within TimeoutStopSec={stop_seconds} s, expected 0")
        account = f"uid {DYNAMIC_UID}" if as_root else "the test's own user (not root)"
        capped = "" if limit == unit_limit else f" (LimitNOFILE={unit_limit} capped at the hard limit)"
        return f"as {account}, open-file limit {limit}{capped}, cursor {cursor}"
    finally:
        notifications.close()


def system_unit_root(ctx, units):
    """A root folder for systemd-analyze: Debian's system units, `units`, and the relay at ExecStart's path."""
    root = ctx.folder(f"analyze-root-{uuid.uuid4().hex[:8]}")
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in units:
        shutil.copy(unit, root / "etc/systemd/system" / Path(unit).name)
    binary_path = root / exec_start_arguments(UnitFile(SERVICE))[0].lstrip("/")
    binary_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ctx.binary, binary_path)
    return root


def analyze(arguments):
    result = subprocess.run(["systemd-analyze"] + arguments, capture_output=True, text=True, timeout=60)
    return result.returncode, (result.stdout + result.stderr).strip()


def check_units_verify(ctx):
    units = [SERVICE, HTTP_SOCKET, INGEST_SOCKET]
    root = system_unit_root(ctx, units)
    status, output = analyze(["verify", f"--root={root}", "--man=no"] + [unit.name for unit in units])
    # verify exits 0 for warnings such as an unknown key, so any output is a failure.
    expect(status == 0 and not output, f"systemd-analyze verify: exit status {status}, output:\n{output}")

    # A control: the same check must catch a misspelt setting.
    broken = root / "etc/systemd/system" / SERVICE.name
    broken.write_text(SERVICE.read_text().replace("ProtectSystem=", "ProtectSytem="))
    status, output = analyze(["verify", f"--root={root}", "--man=no", SERVICE.name])
    expect("ProtectSytem" in output, f"systemd-analyze verify did not report a misspelt key: {output!r}")
    return None


def check_security_exposure(ctx):
    root = system_unit_root(ctx, [SERVICE, HTTP_SOCKET, INGEST_SOCKET])
    status, output = analyze(["security", "--offline=yes", f"--root={root}", "--no-pager", SERVICE.name])
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", output)
    expect(match is not None, f"systemd-analyze security: exit status {status}, no exposure level in:\n{output}")
    exposure = float(match.group(1))
    expect(exposure <= MAX_EXPOSURE, f"exposure level {exposure} is above {MAX_EXPOSURE}:\n{output}")
    return f"exposure level {exposure}"


def check_sysusers(ctx):
    root = ctx.folder("sysusers")
    (root / "etc").mkdir()
    result = subprocess.run(["systemd-sysusers", f"--root={root}", str(SYSUSERS)],
                            capture_output=True, text=True, timeout=30)
    expect(result.returncode == 0, f"systemd-sysusers: exit status {result.returncode}: {result.stderr.strip()}")
    users = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    groups = {line.split(":")[0]: line.split(":") for line in (root / "etc/group").read_text().splitlines()}
    group = UnitFile(INGEST_SOCKET).value("Socket", "SocketGroup")
    expect("notify" in users, f"no user notify in the created passwd: {sorted(users)}")
    expect(group in groups, f"no group {group} (SocketGroup= of the ingest socket) in the created group file")
    expect(users["notify"][3] == groups[group][2],
           f"user notify has primary gid {users['notify'][3]}, group {group} is {groups[group][2]}")
    expect(users["notify"][6] == "/usr/sbin/nologin", f"user notify has shell {users['notify'][6]!r}")
    expect(int(users["notify"][2]) < 1000, f"user notify has uid {users['notify'][2]}, expected a system uid")
    return None


# ---------------------------------------------------------------------------
# System calls under strace


def expanded_syscall_set(group):
    """The system calls in a SystemCallFilter= group, nested groups included."""
    output = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager", group],
                            capture_output=True, text=True, timeout=30).stdout
    names = set()
    for line in output.splitlines()[1:]:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        names |= expanded_syscall_set(entry) if entry.startswith("@") else {entry}
    return names


def allowed_syscalls(service):
    """What the service's SystemCallFilter= lines allow, applied in order as systemd does."""
    filters = service.values("Service", "SystemCallFilter")
    expect(filters and not filters[0].startswith("~"), f"SystemCallFilter= does not start with an allow list: {filters}")
    allowed = set()
    for entry in filters:
        deny = entry.startswith("~")
        names = set()
        for word in entry.lstrip("~").split():
            names |= expanded_syscall_set(word) if word.startswith("@") else {word}
        allowed = allowed - names if deny else allowed | names
    return allowed


def traced_relay_calls(trace_path, binary):
    """(system call name, argument text) for each call the relay made after its execve."""
    calls = []
    relay_pids = set()
    line_pattern = re.compile(r"^(\d+)\s+(?:<\.\.\. )?([a-z0-9_]+)(?:\(| resumed>)(.*)$")
    for line in Path(trace_path).read_text(errors="replace").splitlines():
        match = line_pattern.match(line)
        if not match:
            continue
        pid, name, rest = match.groups()
        if name == "execve" and binary in rest and rest.rstrip().endswith("= 0"):
            relay_pids.add(pid)
            continue
        if pid in relay_pids:
            calls.append((name, rest))
    return relay_pids, calls


def check_syscalls_fit_sandbox(ctx):
    """The relay, run from the units as under systemd, stays inside SystemCallFilter= and MemoryDenyWriteExecute=."""
    folder = ctx.folder("strace")
    service = UnitFile(SERVICE)
    arguments = exec_start_arguments(service)
    port = free_port()
    listens, names, ingest_path = unit_activation(folder, port)
    arguments[0] = ctx.binary
    arguments[arguments.index(option_value(arguments, "--socket"))] = ingest_path
    trace_path = folder / "strace.txt"
    notifications = NotifySocket(folder / "notify.sock")
    try:
        tracer = ctx.start("strace", folder, ["strace", "--follow-forks", "--quiet=all", "--output", str(trace_path)]
                           + activate_arguments(listens, names, {"NOTIFY_SOCKET": notifications.address}, arguments))
        expect(wait_until(lambda: Path(ingest_path).exists(), PROMPT_SECONDS * 2),
               f"{ingest_path} not created under strace; log:\n{tracer.log()}")
        get(port, "/traced?format=json&timeout=0.1", seconds=PROMPT_SECONDS * 2)
        ready = notifications.wait_for("READY=1", PROMPT_SECONDS * 2)
        expect(ready is not None, f"no READY=1 under strace; log:\n{tracer.log()}")
        domain = option_value(arguments, "--domain")
        long_poll_wakes(port, ingest_path, f"traced@{domain}" if domain else "traced")
        os.kill(int(state_value(ready[0], "MAINPID")), signal.SIGTERM)
        expect(tracer.wait_exit(SHUTDOWN_GRACE_SECONDS + PROMPT_SECONDS) is not None, "relay under strace did not exit")
    finally:
        notifications.close()

    relay_pids, calls = traced_relay_calls(trace_path, ctx.binary)
    expect(relay_pids and calls, f"no execve of {ctx.binary} found in {trace_path}")
    used = {name for name, _ in calls}
    outside = sorted(used - allowed_syscalls(service))
    expect(not outside, f"system calls outside SystemCallFilter= (systemd would kill the relay): {outside}")

    # MemoryDenyWriteExecute= rejects writable executable mappings and any
    # mprotect() that adds PROT_EXEC.
    for name, rest in calls:
        if name in ("mmap", "mprotect", "pkey_mprotect") and "PROT_EXEC" in rest:
            expect(name == "mmap" and "PROT_WRITE" not in rest,
                   f"{name}({rest.strip()} is denied by MemoryDenyWriteExecute=")

    executable_maps = sum(1 for name, rest in calls if name == "mmap" and "PROT_EXEC" in rest)

    # ProtectHome=, ProtectProc=invisible with ProcSubset=pid, and
    # PrivateDevices= hide these paths; the relay must not need them.
    binary_folder = str(Path(ctx.binary).parent) + "/"
    devices = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"}
    hidden = []
    for name, rest in calls:
        for path in re.findall(r'"(/[^"]*)"', rest):
            if path.startswith(binary_folder):
                continue
            if (path.startswith(("/home/", "/root/", "/run/user/"))
                    or (path.startswith("/proc/") and not path.startswith("/proc/self/"))
                    or path.startswith("/sys/")
                    or (path.startswith("/dev/") and path not in devices)):
                hidden.append(f"{name}: {path}")
    expect(not hidden, f"paths that the sandbox hides: {hidden}")

    # ProtectSystem=strict leaves nothing writable, which holds only while the
    # relay creates no file: every socket it listens on is activated.
    writes = [f"{name}({rest.strip()}" for name, rest in calls
              if name in ("bind", "unlink", "unlinkat", "mkdir", "mkdirat", "chmod", "fchmodat", "chown",
                          "fchownat", "rename", "renameat", "renameat2")
              or (name in ("open", "openat") and re.search(r"O_WRONLY|O_RDWR|O_CREAT", rest))]
    expect(not writes, f"file changes that ProtectSystem=strict would refuse: {writes}")
    return f"{len(calls)} calls, {len(used)} distinct, {executable_maps} executable mappings, none writable"


# ---------------------------------------------------------------------------
# Runner


CHECKS = [
    ("activated HTTP listener", check_activated_http),
    ("activated HTTP and ingest", check_activated_http_and_ingest),
    ("ingest waits in backlog", check_ingest_waits_in_backlog),
    ("unnamed sockets by type", check_unnamed_sockets),
    ("activated admin listener", check_activated_admin),
    ("foreign LISTEN_PID ignored", check_foreign_listen_pid),
    ("READY and STOPPING, path", lambda ctx: check_readiness(ctx, "path")),
    ("READY and STOPPING, abstract", lambda ctx: check_readiness(ctx, "abstract")),
    ("no READY on failed start", check_no_ready_when_start_fails),
    ("READY under activation", check_readiness_under_activation),
    ("unit settings agree", lambda ctx: check_unit_settings()),
    ("ExecStart runs as a unit", check_exec_start_runs),
    ("systemd-analyze verify", check_units_verify),
    ("systemd-analyze security", check_security_exposure),
    ("sysusers creates notify", check_sysusers),
    ("system calls fit the sandbox", check_syscalls_fit_sandbox),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin-dir", default=os.environ.get("NOTIFY_BIN_DIR", str(REPO / ".build" / "debug")),
                        help="folder with the notify-relay binary (default $NOTIFY_BIN_DIR, else .build/debug)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder with the logs")
    parser.add_argument("--only", metavar="TEXT", help="run only the checks whose name contains TEXT")
    arguments = parser.parse_args()

    results = Results()
    binary = (Path(arguments.bin_dir) / "notify-relay").resolve()
    if not binary.is_file():
        print(f"FAIL setup: {binary} not found: run swift build, or pass --bin-dir", flush=True)
        results.failed += 1
    for tool, package in [("systemd-socket-activate", "systemd"), ("systemd-analyze", "systemd"),
                          ("systemd-sysusers", "systemd"), ("strace", "strace"), ("setpriv", "util-linux"),
                          ("prlimit", "util-linux")]:
        if shutil.which(tool) is None:
            print(f"FAIL setup: {tool} not found: install the Debian package {package} "
                  "(scripts/install-test-deps.sh)", flush=True)
            results.failed += 1
    if results.failed:
        print(f"{results.passed} passed, {results.failed} failed")
        return 1

    def watchdog(signum, frame):
        raise WatchdogExpired(f"the whole test ran longer than {WATCHDOG_SECONDS} s")

    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(WATCHDOG_SECONDS)

    root = Path(tempfile.mkdtemp(prefix="notify-systemd-test-"))
    root.chmod(0o755)
    ctx = Context(binary, root)
    try:
        for name, function in CHECKS:
            if arguments.only and arguments.only not in name:
                continue
            try:
                results.run(name, function, ctx)
            finally:
                ctx.stop_all()
    except WatchdogExpired as error:
        results.failed += 1
        print(f"FAIL watchdog: {error}", flush=True)
    finally:
        signal.alarm(0)
        ctx.stop_all()
        if arguments.keep or results.failed:
            print(f"logs kept in {root}", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)

    print(f"{results.passed} passed, {results.failed} failed")
    return 0 if results.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
