#!/usr/bin/env python3
"""Run contrib/nginx/notify.conf in real nginx in front of a real notify-relay.

The test starts its own nginx (`nginx -p PREFIX -c CONF -e LOG -g 'daemon off;'`)
and its own relay, both on loopback ports, in a temporary folder. It never
touches a system nginx service. nginx runs the config twice: as shipped, and
with its `gzip off;` lines removed, so that the server-level `gzip on` then
compresses the event stream too. Each pass checks both examples in the file:
the relay at the root of its own host and under /notify/ on an existing site.
Every client sends `Accept-Encoding: gzip`.

Usage: python3 tests/nginx/nginx_test.py [--bin-dir DIR]
  DIR contains notify-relay (default $NOTIFY_BIN_DIR, else .build/debug).
  nginx comes from scripts/install-test-deps.sh.

Every wait has a bound, and a watchdog ends the whole run after
WATCHDOG_SECONDS. The last line is "N passed, N failed". The exit status is
0 only when nothing failed.
"""

import argparse
import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import zlib
from pathlib import Path

# The shared check counter lives in tests/checks.py.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from checks import CheckFailed, Results, WatchdogExpired, expect  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CONF_PATH = REPO / "contrib" / "nginx" / "notify.conf"

# Generous bounds: they catch a proxy that buffers data, not a slow machine.
PROMPT_SECONDS = 3.0
# How long a long-poll must stay unanswered before the test publishes, to
# show that nginx keeps the request waiting like the relay does.
HELD_SECONDS = 0.5
WATCHDOG_SECONDS = 300
# The relay's heartbeat interval in this test, so one ping fits in PROMPT_SECONDS.
SSE_PING_SECONDS = 1

# The two server blocks of notify.conf, selected by the Host header field.
MOUNTS = [
    ("root", "notify.example.org", "/"),
    ("prefix", "mail.example.org", "/notify/"),
]


# ---------------------------------------------------------------------------
# HTTP client


class Head:
    """Status and header fields of one HTTP response."""

    def __init__(self, status, fields):
        self.status = status
        self.fields = fields

    def field(self, name):
        return self.fields.get(name.lower())

    def is_gzip(self):
        return (self.field("content-encoding") or "").lower() == "gzip"


class HTTPClient:
    """One HTTP/1.1 connection over raw sockets.

    Bytes read and not yet parsed stay in self.buffer, so a read that times
    out loses nothing and the next read goes on from the same place.
    """

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=PROMPT_SECONDS)
        self.buffer = b""
        self.closed = False

    def close(self):
        self.sock.close()

    def send_get(self, target, host, fields=()):
        lines = [f"GET {target} HTTP/1.1", f"Host: {host}", "Accept-Encoding: gzip"]
        lines += [f"{name}: {value}" for name, value in fields]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def has_data_within(self, seconds):
        """Return True when a response byte arrives within `seconds`."""
        if self.buffer:
            return True
        self.sock.settimeout(seconds)
        try:
            return len(self.sock.recv(1, socket.MSG_PEEK)) > 0
        except socket.timeout:
            return False

    def _fill(self, deadline):
        """Read more bytes. Return False at the deadline or at end of stream."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self.closed:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        if not data:
            self.closed = True
            return False
        self.buffer += data
        return True

    def read_head(self, seconds):
        """Return the response head, or None when it is not complete in time."""
        deadline = time.monotonic() + seconds
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill(deadline):
                return None
        raw, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        return Head(status, fields)

    def _take_chunk(self):
        """Remove one complete chunk from the buffer: its data, or None if incomplete."""
        line_end = self.buffer.find(b"\r\n")
        if line_end < 0:
            return None
        size = int(self.buffer[:line_end].split(b";")[0], 16)
        start = line_end + 2
        if len(self.buffer) < start + size + 2:
            return None
        data = self.buffer[start : start + size]
        self.buffer = self.buffer[start + size + 2 :]
        return data

    def read_body(self, head, seconds):
        """Return the whole body, gunzipped, or None when it is not complete in time."""
        deadline = time.monotonic() + seconds
        if head.status in (204, 304):
            return b""
        length = head.field("content-length")
        if length is not None:
            while len(self.buffer) < int(length):
                if not self._fill(deadline):
                    return None
            body, self.buffer = self.buffer[: int(length)], self.buffer[int(length) :]
        elif (head.field("transfer-encoding") or "").lower() == "chunked":
            body = b""
            while True:
                chunk = self._take_chunk()
                if chunk is None:
                    if not self._fill(deadline):
                        return None
                    continue
                if not chunk:
                    break
                body += chunk
        else:
            while self._fill(deadline):
                pass
            if not self.closed:
                return None
            body, self.buffer = self.buffer, b""
        return gzip.decompress(body) if head.is_gzip() and body else body

    def read_stream_chunk(self, deadline):
        """Return the data of the next chunk of a chunked stream, or None at the deadline."""
        while True:
            chunk = self._take_chunk()
            if chunk is not None:
                return chunk
            if not self._fill(deadline):
                return None


def get(port, host, target, fields=(), seconds=PROMPT_SECONDS):
    """Send one GET on a new connection; return (head, body, elapsed seconds)."""
    client = HTTPClient(port)
    try:
        started = time.monotonic()
        client.send_get(target, host, fields)
        head = client.read_head(seconds)
        expect(head is not None, f"GET {target} (Host {host}): no response head within {seconds} s")
        body = client.read_body(head, seconds)
        expect(body is not None, f"GET {target} (Host {host}): body incomplete after {seconds} s")
        return head, body, time.monotonic() - started
    finally:
        client.close()


class EventStream:
    """An open text/event-stream response, parsed into blocks.

    A block is the text between blank lines, as a dict: "comments" lists the
    comment lines; other keys are field names (id, event, data, retry).
    """

    def __init__(self, port, host, target, fields=()):
        self.client = HTTPClient(port)
        self.client.send_get(target, host, [("Accept", "text/event-stream")] + list(fields))
        self.head = None
        self.decoder = None
        self.text = ""
        self.blocks = []

    def close(self):
        self.client.close()

    def read_head(self, seconds):
        self.head = self.client.read_head(seconds)
        if self.head is not None and self.head.is_gzip():
            # wbits 31: a gzip member, header and trailer included.
            self.decoder = zlib.decompressobj(31)
        return self.head

    def wait_for(self, predicate, seconds):
        """Return the first new block for which predicate holds, or None after `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            while "\n\n" in self.text:
                raw, self.text = self.text.split("\n\n", 1)
                block = parse_block(raw)
                self.blocks.append(block)
                if predicate(block):
                    return block
            chunk = self.client.read_stream_chunk(deadline)
            if chunk is None:
                return None
            if self.decoder is not None:
                chunk = self.decoder.decompress(chunk)
            self.text += chunk.decode()


def parse_block(raw):
    block = {"comments": []}
    for line in raw.split("\n"):
        if line.startswith(":"):
            block["comments"].append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        block[name] = block[name] + "\n" + value if name in block else value
    return block


# ---------------------------------------------------------------------------
# Processes: the relay and nginx


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, seconds, interval=0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def child_pids(pid):
    try:
        return [int(text) for text in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def stop_process(process, name, sig=signal.SIGTERM, seconds=10):
    """Stop a process this test started, by its PID, then its children if it hung."""
    if process is None or process.poll() is not None:
        return
    children = child_pids(process.pid)
    process.send_signal(sig)
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        print(f"warning: {name} (pid {process.pid}) still running {seconds} s after "
              f"signal {int(sig)}; sending SIGKILL", file=sys.stderr)
        process.kill()
        process.wait(5)
    for child in children:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Relay:
    """A notify-relay on a loopback port with its ingest socket in `folder`."""

    def __init__(self, bin_dir, folder):
        self.binary = Path(bin_dir) / "notify-relay"
        self.socket_path = str(folder / "relay.sock")
        self.log_path = folder / "relay.log"
        self.last_cursor = None
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "--listen", "127.0.0.1:0", "--socket", self.socket_path,
                 "--sse-ping", str(SSE_PING_SECONDS)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        self.port = None

        def started():
            match = re.search(r"http=127\.0\.0\.1:(\d+)", self.log_path.read_text())
            if match:
                self.port = int(match.group(1))
            return self.port is not None or self.process.poll() is not None

        wait_until(started, 10)
        if self.port is None:
            raise RuntimeError(f"notify-relay did not start within 10 s; its log:\n{self.log_path.read_text()}")

    def publish(self, recipient, subject):
        """Send one ingest record; return the cursor from the relay's "OK <cursor>"."""
        with socket.socket(socket.AF_UNIX) as connection:
            connection.settimeout(PROMPT_SECONDS)
            connection.connect(self.socket_path)
            record = json.dumps({"recipients": [recipient], "subject": subject}) + "\n"
            connection.sendall(record.encode())
            reply = b""
            while not reply.endswith(b"\n"):
                data = connection.recv(4096)
                if not data:
                    break
                reply += data
        text = reply.decode().strip()
        expect(text.startswith("OK "), f"publish to {recipient!r}: relay replied {text!r}, expected OK <cursor>")
        self.last_cursor = text[3:]
        return self.last_cursor

    def established_connections(self):
        """Count TCP connections in state ESTABLISHED whose local port is the relay's."""
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                columns = line.split()
                local_port = int(columns[1].rsplit(":", 1)[1], 16)
                if local_port == self.port and columns[3] == "01":
                    count += 1
        return count

    def stop(self):
        stop_process(self.process, "notify-relay")


def relay_defaults(binary):
    """Read hold-time defaults from `notify-relay --help`, so the rules follow the relay."""
    text = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=10).stdout
    defaults = {}
    for option in ("max-poll-timeout", "sse-ping", "idle-timeout"):
        match = re.search(r"--" + option + r" SECONDS.*?\(default (\d+)\)", text, re.S)
        expect(match is not None, f"notify-relay --help no longer shows a default for --{option}")
        defaults[option] = int(match.group(1))
    return defaults


def substitute_placeholders(text, relay_port, listen_port, gzip_allowed):
    """Fill the placeholders that contrib/nginx/README.md documents."""
    # Directive lines only: the comments quote the same text.
    replacements = [
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{relay_port};", 1),
        ("listen 80;", f"listen 127.0.0.1:{listen_port};", len(MOUNTS)),
    ]
    for old, new, count in replacements:
        pattern = r"(?m)^([ \t]*)" + re.escape(old) + r"[ \t]*$"
        text, found = re.subn(pattern, lambda match: match.group(1) + new, text)
        expect(found == count, f"notify.conf has {found} directive lines {old!r}, expected {count}: "
                               "update the test and contrib/nginx/README.md with it")
    if gzip_allowed:
        text, found = re.subn(r"(?m)^[ \t]*gzip off;[ \t]*\n", "", text)
        expect(found == len(MOUNTS), f"notify.conf has {found} 'gzip off;' lines, expected {len(MOUNTS)}")
    return text


class Nginx:
    """An nginx master process started by this test, with its own prefix folder."""

    def __init__(self, folder, notify_conf_text, listen_port, worker_connections=512):
        self.folder = folder
        self.port = listen_port
        self.process = None
        folder.mkdir(parents=True)
        # Workers run as an unprivileged user when the test runs as root.
        folder.chmod(0o755)
        (folder / "notify.conf").write_text(notify_conf_text)
        self.conf_path = folder / "nginx.conf"
        self.error_log = folder / "error.log"
        temp_paths = "\n".join(
            f"    {kind}_temp_path {folder}/temp-{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        self.conf_path.write_text(
            f"worker_processes 1;\n"
            f"pid {folder}/nginx.pid;\n"
            f"error_log {self.error_log} info;\n"
            f"worker_rlimit_nofile {worker_connections * 2};\n"
            f"events {{ worker_connections {worker_connections}; }}\n"
            f"http {{\n"
            f"    access_log {folder}/access.log;\n"
            f"{temp_paths}\n"
            f"    include {folder}/notify.conf;\n"
            f"}}\n")
        self.command = ["nginx", "-p", str(folder), "-e", str(self.error_log), "-c", str(self.conf_path)]

        # nginx -t names the line of any error in the config.
        tested = subprocess.run(self.command + ["-t"], capture_output=True, text=True, timeout=20)
        if tested.returncode != 0:
            raise RuntimeError(f"nginx -t rejected the config:\n{tested.stderr}")

        self.process = subprocess.Popen(self.command + ["-g", "daemon off;"],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

        def accepting():
            if self.process.poll() is not None:
                return True
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False

        wait_until(accepting, 10)
        if self.process.poll() is not None:
            raise RuntimeError(f"nginx exited with status {self.process.returncode}; "
                               f"error log:\n{self.error_log.read_text()}")

    def stop(self):
        # SIGTERM is nginx's fast shutdown: it does not wait for open event streams.
        stop_process(self.process, "nginx")


# ---------------------------------------------------------------------------
# Checks


class Context:
    """What the checks of one pass share: the processes and the mount."""

    def __init__(self, relay, nginx, variant, mount):
        self.relay = relay
        self.nginx = nginx
        self.variant = variant
        self.mount_name, self.host, self.base = mount
        self.counter = 0

    def inbox(self, label):
        """Return an inbox name used by no other check."""
        self.counter += 1
        return f"{self.variant}-{self.mount_name}-{label}-{self.counter}"

    def url(self, path_and_query):
        return self.base + path_and_query

    def expect_encoding(self, head, label):
        """Shipped config: never compressed. gzip pass: the event stream is compressed."""
        if self.variant == "shipped":
            expect(not head.is_gzip(), f"{label}: Content-Encoding {head.field('content-encoding')!r}, "
                                       "expected none because the location sets gzip off")
        elif label == "event stream":
            expect(head.is_gzip(), "event stream: no Content-Encoding: gzip although gzip applies; "
                                   "this pass would not test compression")


def check_event_stream_flows(ctx):
    inbox = ctx.inbox("sse")
    stream = EventStream(ctx.nginx.port, ctx.host, ctx.url(inbox))
    try:
        head = stream.read_head(PROMPT_SECONDS)
        expect(head is not None, f"event stream head did not arrive within {PROMPT_SECONDS} s")
        expect(head.status == 200, f"event stream status {head.status}, expected 200")
        content_type = head.field("content-type") or ""
        expect(content_type.startswith("text/event-stream"), f"event stream Content-Type {content_type!r}")
        ctx.expect_encoding(head, "event stream")

        opening = stream.wait_for(lambda block: block["comments"], PROMPT_SECONDS)
        expect(opening is not None, f"opening comment did not arrive within {PROMPT_SECONDS} s; "
                                    f"received {stream.blocks!r}")
        expect("retry" in opening, f"opening block has no retry field: {opening!r}")

        cursor = ctx.relay.publish(inbox, "through nginx")
        published = time.monotonic()
        mail = stream.wait_for(lambda block: block.get("event") == "mail", PROMPT_SECONDS)
        expect(mail is not None, f"mail event did not arrive within {PROMPT_SECONDS} s of publishing")
        latency = time.monotonic() - published
        expect(mail.get("id") == cursor, f"mail event id {mail.get('id')!r}, expected the ingest cursor {cursor!r}")
        expect(json.loads(mail["data"]).get("subject") == "through nginx", f"mail event data {mail['data']!r}")

        ping = stream.wait_for(lambda block: "ping" in block["comments"], PROMPT_SECONDS)
        expect(ping is not None, f"no heartbeat comment within {PROMPT_SECONDS} s (relay --sse-ping {SSE_PING_SECONDS})")
        return f"mail {latency * 1000:.0f} ms after publishing"
    finally:
        stream.close()


def long_poll_after_publish(ctx, inbox, since, subject, path=None):
    """Start a long-poll on `path` (default: `inbox`) and check that no response
    arrives before publishing. Then publish to `inbox` and return
    (head, JSON document, ingest cursor)."""
    query = {"format": "json", "timeout": "20"}
    if since:
        query["since"] = since
    client = HTTPClient(ctx.nginx.port)
    try:
        client.send_get(ctx.url(path or inbox) + "?" + urllib.parse.urlencode(query), ctx.host)
        expect(not client.has_data_within(HELD_SECONDS),
               f"long-poll answered before anything was published (within {HELD_SECONDS} s)")
        cursor = ctx.relay.publish(inbox, subject)
        head = client.read_head(PROMPT_SECONDS)
        expect(head is not None, f"long-poll answer did not arrive within {PROMPT_SECONDS} s of publishing")
        body = client.read_body(head, PROMPT_SECONDS)
        expect(body is not None, "long-poll body incomplete")
        expect(head.status == 200, f"long-poll status {head.status}, expected 200; body {body!r}")
        ctx.expect_encoding(head, "long-poll answer")
        return head, json.loads(body), cursor
    finally:
        client.close()


def check_long_poll_cursor(ctx):
    inbox = ctx.inbox("poll")

    head, document, first_cursor = long_poll_after_publish(ctx, inbox, None, "first")
    subjects = [message.get("subject") for message in document["messages"]]
    expect(subjects == ["first"], f"first answer subjects {subjects}, expected ['first']")
    expect(document["cursor"] == first_cursor, f"first answer cursor {document['cursor']!r}, expected {first_cursor!r}")
    expect(head.field("notify-cursor") == document["cursor"],
           f"Notify-Cursor {head.field('notify-cursor')!r} differs from the JSON cursor {document['cursor']!r}")

    head, document, second_cursor = long_poll_after_publish(ctx, inbox, first_cursor, "second")
    subjects = [message.get("subject") for message in document["messages"]]
    expect(subjects == ["second"], f"answer after ?since= has subjects {subjects}, expected only ['second']")
    expect(document["cursor"] == second_cursor, f"second cursor {document['cursor']!r}, expected {second_cursor!r}")
    expect(second_cursor != first_cursor, "cursor did not advance")
    return None


def check_long_poll_timeout(ctx):
    inbox = ctx.inbox("timeout")
    since = ctx.relay.publish(inbox, "before the wait")
    head, body, elapsed = get(ctx.nginx.port, ctx.host, ctx.url(inbox) + f"?format=json&timeout=1&since={since}",
                              seconds=PROMPT_SECONDS + 1)
    expect(head.status == 204, f"status {head.status}, expected 204 after the 1 s timeout; body {body!r}")
    expect(0.8 <= elapsed <= 1 + PROMPT_SECONDS, f"204 after {elapsed:.2f} s, expected about 1 s")
    expect(head.field("notify-cursor") == ctx.relay.last_cursor,
           f"204 Notify-Cursor {head.field('notify-cursor')!r}, expected the current cursor {ctx.relay.last_cursor!r}")
    return f"204 after {elapsed:.2f} s"


def check_last_event_id_resume(ctx):
    inbox = ctx.inbox("resume")
    seen = ctx.relay.publish(inbox, "seen")
    missed = [ctx.relay.publish(inbox, subject) for subject in ("missed 1", "missed 2")]

    stream = EventStream(ctx.nginx.port, ctx.host, ctx.url(inbox), [("Last-Event-ID", seen)])
    try:
        head = stream.read_head(PROMPT_SECONDS)
        expect(head is not None and head.status == 200, "resumed event stream did not open with 200")
        for cursor in missed:
            block = stream.wait_for(lambda block: block.get("event") in ("mail", "gap"), PROMPT_SECONDS)
            expect(block is not None, f"missed event {cursor} not replayed within {PROMPT_SECONDS} s")
            expect(block.get("event") == "mail", f"got a {block.get('event')} event, expected mail: {block!r}")
            expect(block.get("id") == cursor, f"replayed id {block.get('id')!r}, expected {cursor!r} "
                                              f"(the event with id {seen!r} must not repeat)")
        return None
    finally:
        stream.close()


def check_escaped_inbox_names(ctx):
    # Under a prefix, nginx decodes the path and encodes it again before it
    # passes the request on. The relay must still see the published inbox.
    address_local = ctx.inbox("address")
    utf8_local = "zoë-" + ctx.inbox("utf8")
    cases = [
        (address_local + "@example.org", urllib.parse.quote(address_local) + "%40example.org"),
        (utf8_local, urllib.parse.quote(utf8_local)),
    ]
    for recipient, path in cases:
        head, document, cursor = long_poll_after_publish(ctx, recipient, None, f"for {recipient}", path=path)
        expect(document["cursor"] == cursor, f"{path}: cursor {document['cursor']!r}, expected {cursor!r}")
        subjects = [message.get("subject") for message in document["messages"]]
        expect(subjects == [f"for {recipient}"], f"{path}: subjects {subjects}, expected one for {recipient!r}")
    return None


def check_demo_page(ctx):
    head, body, _ = get(ctx.nginx.port, ctx.host, ctx.url(""))
    expect(head.status == 200, f"GET {ctx.url('')}: status {head.status}, expected 200")
    expect((head.field("content-type") or "").startswith("text/html"), f"Content-Type {head.field('content-type')!r}")
    return None


def check_prefix_redirect(ctx):
    head, _, _ = get(ctx.nginx.port, ctx.host, ctx.base.rstrip("/"))
    location = head.field("location") or ""
    expect(head.status == 301, f"GET {ctx.base.rstrip('/')}: status {head.status}, expected 301")
    expect(location.endswith(ctx.base), f"redirect Location {location!r}, expected it to end in {ctx.base!r}")
    return None


def check_static_asset(ctx):
    head, body, _ = get(ctx.nginx.port, ctx.host, ctx.url("static/notify.js"))
    expect(head.status == 200, f"GET {ctx.url('static/notify.js')}: status {head.status}, expected 200")
    expect("javascript" in (head.field("content-type") or ""), f"Content-Type {head.field('content-type')!r}")
    return None


def check_multi_inbox(ctx):
    first, second = ctx.inbox("multi"), ctx.inbox("multi")
    query = urllib.parse.urlencode([("inbox", first), ("inbox", second), ("format", "json"), ("timeout", "20")])
    client = HTTPClient(ctx.nginx.port)
    try:
        client.send_get(ctx.url("?" + query), ctx.host)
        expect(not client.has_data_within(HELD_SECONDS), "multi-inbox long-poll answered before publishing")
        cursor = ctx.relay.publish(second, "to the second inbox")
        head = client.read_head(PROMPT_SECONDS)
        expect(head is not None and head.status == 200, f"multi-inbox answer: {head and head.status}")
        document = json.loads(client.read_body(head, PROMPT_SECONDS))
        expect(document.get("inboxes") == [first, second], f"inboxes {document.get('inboxes')!r}")
        expect(document["cursor"] == cursor, f"cursor {document['cursor']!r}, expected {cursor!r}")
        return None
    finally:
        client.close()


def check_upstream_keepalive(relay, nginx, host):
    """Five sequential long-polls from five clients must share one upstream connection."""
    expect(wait_until(lambda: relay.established_connections() == 0, 5),
           f"{relay.established_connections()} relay connections still open before the check")
    for _ in range(5):
        head, _, _ = get(nginx.port, host, "/keepalive-check?format=json&timeout=0")
        expect(head.status == 204, f"timeout=0 long-poll status {head.status}, expected 204")
    count = relay.established_connections()
    # Both ends of each loopback connection are on this host, but only the
    # relay's end has the relay's port as its local port.
    expect(count == 1, f"{count} open connections to the relay after 5 sequential requests, expected 1 "
                       "(upstream keepalive not in effect)")
    return None


def check_timeouts_cover_hold_times(conf_text, defaults):
    read_timeouts = [int(value) for value in re.findall(r"proxy_read_timeout\s+(\d+)s;", conf_text)]
    expect(len(read_timeouts) == len(MOUNTS), f"found {len(read_timeouts)} proxy_read_timeout lines, expected {len(MOUNTS)}")
    longest_hold = max(defaults["max-poll-timeout"], defaults["sse-ping"])
    for value in read_timeouts:
        expect(value > longest_hold, f"proxy_read_timeout {value}s is not longer than the relay's longest "
                                     f"hold of {longest_hold} s (--max-poll-timeout, --sse-ping)")
    match = re.search(r"keepalive_timeout\s+(\d+)s;", conf_text)
    expect(match is not None, "upstream keepalive_timeout not found")
    expect(int(match.group(1)) < defaults["idle-timeout"],
           f"upstream keepalive_timeout {match.group(1)}s is not shorter than the relay's "
           f"--idle-timeout default {defaults['idle-timeout']} s")
    return f"proxy_read_timeout {read_timeouts[0]}s > {longest_hold} s"


MOUNT_CHECKS = [
    ("event stream flows", check_event_stream_flows),
    ("long-poll cursor advances", check_long_poll_cursor),
    ("long-poll 204 timeout", check_long_poll_timeout),
    ("Last-Event-ID resume", check_last_event_id_resume),
    ("escaped inbox names", check_escaped_inbox_names),
    ("demo page", check_demo_page),
]
PREFIX_CHECKS = [
    ("prefix redirect", check_prefix_redirect),
    ("static asset", check_static_asset),
    ("multi-inbox long-poll", check_multi_inbox),
]


# ---------------------------------------------------------------------------
# Runner


def run_pass(results, relay, folder, conf_text, variant):
    """Start nginx with one variant of the config and run every check through it."""
    nginx = None
    try:
        def start():
            nonlocal nginx
            port = free_port()
            text = substitute_placeholders(conf_text, relay.port, port, gzip_allowed=(variant == "gzip"))
            nginx = Nginx(folder / f"nginx-{variant}", text, port)

        if not results.run(f"{variant}: nginx starts with notify.conf", start):
            return
        results.run(f"{variant}: upstream keepalive reuse", check_upstream_keepalive, relay, nginx, MOUNTS[0][1])
        for mount in MOUNTS:
            ctx = Context(relay, nginx, variant, mount)
            checks = MOUNT_CHECKS + (PREFIX_CHECKS if mount[0] == "prefix" else [])
            for name, function in checks:
                results.run(f"{variant} {mount[0]}: {name}", function, ctx)
    finally:
        if nginx is not None:
            nginx.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin-dir", default=os.environ.get("NOTIFY_BIN_DIR", str(REPO / ".build" / "debug")),
                        help="folder with the notify-relay binary (default $NOTIFY_BIN_DIR, else .build/debug)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder with the logs")
    arguments = parser.parse_args()

    results = Results()
    binary = Path(arguments.bin_dir) / "notify-relay"
    nginx_binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if not binary.is_file():
        print(f"FAIL setup: {binary} not found: run swift build, or pass --bin-dir", flush=True)
        results.failed += 1
    if nginx_binary is None:
        print("FAIL setup: nginx not found: run scripts/install-test-deps.sh", flush=True)
        results.failed += 1
    if results.failed:
        print(f"{results.passed} passed, {results.failed} failed")
        return 1
    os.environ["PATH"] = str(Path(nginx_binary).parent) + os.pathsep + os.environ.get("PATH", "")

    def watchdog(signum, frame):
        raise WatchdogExpired(f"the whole test ran longer than {WATCHDOG_SECONDS} s")

    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(WATCHDOG_SECONDS)

    folder = Path(tempfile.mkdtemp(prefix="notify-nginx-test-"))
    folder.chmod(0o755)
    relay = None
    try:
        conf_text = CONF_PATH.read_text()
        defaults = {}

        def read_defaults():
            defaults.update(relay_defaults(binary))

        if results.run("relay --help shows hold-time defaults", read_defaults):
            results.run("timeouts cover relay hold times", check_timeouts_cover_hold_times, conf_text, defaults)

        def start_relay():
            nonlocal relay
            relay = Relay(arguments.bin_dir, folder)

        if results.run("relay starts", start_relay):
            for variant in ("shipped", "gzip"):
                run_pass(results, relay, folder, conf_text, variant)
    except WatchdogExpired as error:
        results.failed += 1
        print(f"FAIL watchdog: {error}", flush=True)
    finally:
        signal.alarm(0)
        if relay is not None:
            relay.stop()
        if arguments.keep or results.failed:
            print(f"logs kept in {folder}", flush=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)

    print(f"{results.passed} passed, {results.failed} failed")
    return 0 if results.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
