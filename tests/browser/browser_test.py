#!/usr/bin/python3
"""Browser tests of contrib/browser/ against the real notify-relay in Chromium.

Each case starts its own notify-relay on a loopback port with an ingest
socket in a temporary folder, drives headless Chromium through
chromedriver (Selenium), publishes mail with notify-deliver or over the
ingest socket, and checks what the page shows. Everything stays on
127.0.0.1. The script stops only the processes it started, and prints
`N passed, N failed` last; it exits 1 when a case failed.

Needs: scripts/install-test-deps.sh (Debian's chromium, chromium-driver
and python3-selenium, hence /usr/bin/python3) and built binaries:

    swift build && tests/browser/browser_test.py --bin-dir .build/debug

Selenium gets the chromedriver path explicitly, so Selenium Manager never
tries to download a driver.
"""

import argparse
import functools
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:
    sys.exit("browser_test: Selenium is missing: run scripts/install-test-deps.sh and use /usr/bin/python3")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# Bounds for every wait, in seconds. A relay reconnect takes up to a few
# backoff steps (1 s, 2 s, 4 s with jitter), so page waits allow 20 s.
RELAY_START_TIMEOUT = 10
PAGE_TIMEOUT = 20
QUIET_PERIOD = 2


class CaseFailure(Exception):
    """A check of a test case did not hold."""


# MARK: Processes and servers


class Relay:
    """One notify-relay process on 127.0.0.1 with its ingest socket in `workdir`."""

    def __init__(self, bin_dir, workdir, port=0, cors_origins=(), extra_args=()):
        self.socket_path = os.path.join(workdir, "relay.sock")
        self.log_path = os.path.join(workdir, "relay-%d.log" % time.monotonic_ns())
        command = [
            os.path.join(bin_dir, "notify-relay"),
            "--listen", "127.0.0.1:%d" % port,
            "--socket", self.socket_path,
        ]
        for origin in cors_origins:
            command += ["--cors-origin", origin]
        command += list(extra_args)

        self.log = open(self.log_path, "w+")
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self.log)
        try:
            self.port = self._wait_for_port()
        except CaseFailure:
            self.stop()
            raise
        self.base_url = "http://127.0.0.1:%d" % self.port

    def _wait_for_port(self):
        """Read the listening port from the `relay started` log line."""
        deadline = time.monotonic() + RELAY_START_TIMEOUT
        while time.monotonic() < deadline:
            with open(self.log_path) as handle:
                match = re.search(r'msg="relay started".* http=127\.0\.0\.1:(\d+)', handle.read())
            if match:
                return int(match.group(1))
            if self.process.poll() is not None:
                raise CaseFailure("notify-relay exited with status %d at start: %s" % (self.process.returncode, self.log_text()))
            time.sleep(0.05)
        raise CaseFailure("notify-relay did not log `relay started` within %d s: %s" % (RELAY_START_TIMEOUT, self.log_text()))

    def log_text(self):
        with open(self.log_path) as handle:
            return handle.read().strip()

    def stop(self):
        """Send SIGTERM, wait for the exit (SIGKILL after 10 s) and return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.log.close()
        return self.process.returncode

    def publish(self, inbox, subject, sender):
        """Write one JSON record to the ingest socket and return the cursor from `OK <cursor>`."""
        record = json.dumps({"recipients": [inbox], "subject": subject, "from": sender}) + "\n"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(5)
            connection.connect(self.socket_path)
            connection.sendall(record.encode())
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = connection.recv(256)
                if not chunk:
                    break
                reply += chunk
        text = reply.decode().strip()
        if not text.startswith("OK "):
            raise CaseFailure("relay rejected record for %r: got %r, want `OK <cursor>`" % (inbox, text))
        return text[3:]


def deliver(bin_dir, socket_path, inbox, subject, sender):
    """Run notify-deliver as an MTA would, with a real message on stdin."""
    message = (
        "From: %s\r\n"
        "To: %s@example.org\r\n"
        "Subject: %s\r\n"
        "Message-ID: <%d@test.example>\r\n"
        "Date: Fri, 04 Dec 2026 19:00:00 +0000\r\n"
        "\r\n"
        "Body of the test message.\r\n" % (sender, inbox, subject, time.monotonic_ns())
    )
    result = subprocess.run(
        [os.path.join(bin_dir, "notify-deliver"), "--socket", socket_path, inbox],
        input=message.encode(), capture_output=True, timeout=15,
    )
    if result.returncode != 0:
        raise CaseFailure("notify-deliver exited %d: %s" % (result.returncode, result.stderr.decode().strip()))


class StaticServer:
    """A loopback HTTP server for the files in `folder`, on a port of its own (another origin)."""

    def __init__(self, folder):
        handler = functools.partial(QuietHandler, directory=folder)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.origin = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def start_browser(workdir):
    """Start headless Chromium with a fresh profile in `workdir`."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # Chromium refuses to start as root with its sandbox on.
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--user-data-dir=" + os.path.join(workdir, "profile"),
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    driver.set_script_timeout(PAGE_TIMEOUT)
    return driver


# MARK: Page helpers


def wait_until(description, predicate, timeout=PAGE_TIMEOUT):
    """Poll `predicate` every 100 ms until it returns a true value, and fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.1)
    raise CaseFailure("timed out after %d s waiting for %s (last value: %r)" % (timeout, description, last))


def listed_mail(driver, list_selector="#mail-list"):
    """Return the entries of a mail list as dicts of their text."""
    return driver.execute_script(
        """
        return Array.from(document.querySelectorAll(arguments[0] + " > li")).map((item) => ({
          subject: (item.querySelector(".mail-subject") || {}).textContent,
          from: (item.querySelector(".mail-from") || {}).textContent,
          time: (item.querySelector(".mail-time") || {}).textContent,
        }));
        """,
        list_selector,
    )


def subjects(driver, list_selector="#mail-list"):
    return [entry["subject"] for entry in listed_mail(driver, list_selector)]


def wait_for_subject(driver, subject, list_selector="#mail-list"):
    wait_until("subject %r in %s" % (subject, list_selector), lambda: subject in subjects(driver, list_selector))


def demo_status(driver):
    element = driver.find_element(By.ID, "status")
    return {
        "state": element.get_attribute("data-state"),
        "transport": element.get_attribute("data-transport"),
        "text": element.text,
    }


def wait_for_status(driver, state, transport=None):
    def matches():
        status = demo_status(driver)
        if status["state"] == state and (transport is None or status["transport"] == transport):
            return status
        return None

    return wait_until("status %s (transport %s)" % (state, transport or "any"), matches)


def check(condition, message):
    if not condition:
        raise CaseFailure(message)


def check_exactly_once(driver, expected):
    listed = subjects(driver)
    for subject in expected:
        count = listed.count(subject)
        check(count == 1, "subject %r listed %d times, want exactly once; list: %r" % (subject, count, listed))


# MARK: Cases


def case_demo_event_stream(env):
    """The demo page shows a mail delivered by notify-deliver, over an event stream."""
    relay = env.relay()
    driver = env.browser()
    driver.get(relay.base_url + "/#inbox=alice")
    wait_for_status(driver, "open", "sse")

    deliver(env.bin_dir, relay.socket_path, "alice", "Lunch at noon", "Alice Example <alice@example.org>")
    wait_for_subject(driver, "Lunch at noon")
    entry = listed_mail(driver)[0]
    check(entry["from"] == "Alice Example <alice@example.org>", "sender shown as %r, want the From field" % entry["from"])
    check(entry["time"], "receive time is empty")

    # The page must run under its Content-Security-Policy with no violation,
    # so no inline script or style slipped into demo.html.
    severe = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    check(not severe, "browser console has errors: %r" % severe)


def case_demo_longpoll_fallback(env):
    """With window.EventSource deleted the client falls back to long-poll."""
    relay = env.relay()
    driver = env.browser()
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": "delete window.EventSource;"})
    driver.get(relay.base_url + "/#inbox=bob")
    check(driver.execute_script("return typeof window.EventSource") == "undefined", "window.EventSource still defined")
    wait_for_status(driver, "open", "longpoll")

    deliver(env.bin_dir, relay.socket_path, "bob", "Minutes of Monday", "Bob <bob@example.org>")
    wait_for_subject(driver, "Minutes of Monday")
    deliver(env.bin_dir, relay.socket_path, "bob", "Second note", "Bob <bob@example.org>")
    wait_for_subject(driver, "Second note")
    check_exactly_once(driver, ["Minutes of Monday", "Second note"])


BROKEN_EVENT_SOURCE = """
window.__streamAttempts = 0;
window.EventSource = class {
  constructor(url) {
    window.__streamAttempts += 1;
    setTimeout(() => this.onerror && this.onerror(new Event("error")), 50);
  }
  addEventListener() {}
  close() {}
};
"""


def case_broken_event_stream_fallback(env):
    """An EventSource that never opens, with the relay reachable, makes the client switch to long-poll."""
    relay = env.relay()
    driver = env.browser()
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": BROKEN_EVENT_SOURCE})
    driver.get(relay.base_url + "/#inbox=bob")
    wait_for_status(driver, "open", "longpoll")
    attempts = driver.execute_script("return window.__streamAttempts")
    check(attempts == 3, "client tried the event stream %r times before long-poll, want 3" % attempts)

    deliver(env.bin_dir, relay.socket_path, "bob", "After fallback", "Bob <bob@example.org>")
    wait_for_subject(driver, "After fallback")


CROSS_ORIGIN_PAGE = """<!doctype html>
<meta charset="utf-8">
<title>cross-origin notify test</title>
<ol id="classic"></ol>
<ol id="module"></ol>
<script src="RELAY/static/notify.js"></script>
<script>
  function show(listId) {
    return (message) => {
      const item = document.createElement("li");
      const subject = document.createElement("span");
      subject.className = "mail-subject";
      subject.textContent = message.subject;
      item.append(subject);
      document.getElementById(listId).append(item);
    };
  }
  window.classicStatus = [];
  Notify.subscribe("carol", {
    baseUrl: "RELAY",
    onMail: show("classic"),
    onStatus: (status) => window.classicStatus.push(status.state + "/" + status.transport),
  });
</script>
<script type="module">
  import { subscribe } from "RELAY/static/notify.mjs";
  window.moduleStatus = [];
  subscribe(["carol", "someone-else"], {
    baseUrl: "RELAY",
    transport: "longpoll",
    onMail: show("module"),
    onStatus: (status) => window.moduleStatus.push(status.state + "/" + status.transport),
  });
</script>
"""


def case_cross_origin(env):
    """A page on another origin subscribes through CORS: classic script over SSE, module over long-poll."""
    folder = env.folder("site")
    server = StaticServer(folder)
    env.cleanups.append(server.stop)
    relay = env.relay(cors_origins=[server.origin])
    with open(os.path.join(folder, "index.html"), "w") as handle:
        handle.write(CROSS_ORIGIN_PAGE.replace("RELAY", relay.base_url))

    driver = env.browser()
    driver.get(server.origin + "/index.html")
    wait_until("classic subscription open over sse", lambda: "open/sse" in driver.execute_script("return window.classicStatus || []"))
    wait_until(
        "module subscription open over long-poll",
        lambda: "open/longpoll" in driver.execute_script("return window.moduleStatus || []"),
    )

    deliver(env.bin_dir, relay.socket_path, "carol", "Across origins", "Carol <carol@example.org>")
    wait_for_subject(driver, "Across origins", "#classic")
    wait_for_subject(driver, "Across origins", "#module")


def restart_case(env, transport):
    """Restart the relay on the same port and socket under a watching page."""
    relay = env.relay()
    port = relay.port
    driver = env.browser()
    options = "&transport=longpoll" if transport == "longpoll" else ""
    driver.get(relay.base_url + "/#inbox=dave" + options)
    wait_for_status(driver, "open", transport)

    relay.publish("dave", "before restart", "Dave <dave@example.org>")
    wait_for_subject(driver, "before restart")
    check(driver.find_element(By.ID, "gap").get_attribute("hidden") is not None, "gap notice shown before any restart")

    # The old relay's cursors are unknown to the new one, so the page must get
    # the gap notice plus what the new relay holds. Publishing right after the
    # start, before the page has reconnected, puts the mail in that backlog.
    exit_status = relay.stop()
    check(exit_status == 0, "relay exited with status %r on SIGTERM, want 0" % exit_status)
    relay = env.relay(port=port)
    relay.publish("dave", "while reconnecting", "Dave <dave@example.org>")

    wait_for_subject(driver, "while reconnecting")
    wait_until("gap notice shown", lambda: driver.find_element(By.ID, "gap").is_displayed())
    wait_for_status(driver, "open", transport)

    relay.publish("dave", "after restart", "Dave <dave@example.org>")
    wait_for_subject(driver, "after restart")
    time.sleep(QUIET_PERIOD)  # Room for a duplicate to show up.
    check_exactly_once(driver, ["before restart", "while reconnecting", "after restart"])


def case_restart_event_stream(env):
    """Relay restart under an event stream: no event lost, gap shown, live again."""
    restart_case(env, "sse")


def case_restart_longpoll(env):
    """Relay restart under long-poll: no event lost, gap shown, live again."""
    restart_case(env, "longpoll")


def case_markup_in_subject(env):
    """Markup in subject and sender shows as literal text and runs nothing."""
    relay = env.relay()
    driver = env.browser()
    driver.get(relay.base_url + "/#inbox=erin")
    wait_for_status(driver, "open", "sse")

    subject = "<img src=x onerror=window.__xss=1>"
    sender = '"<script>window.__xss2=1</script>" <mallory@example.org>'
    deliver(env.bin_dir, relay.socket_path, "erin", subject, sender)
    wait_until("one entry in the mail list", lambda: len(listed_mail(driver)) == 1)

    entry = listed_mail(driver)[0]
    check(entry["subject"] == subject, "subject shown as %r, want the literal %r" % (entry["subject"], subject))
    check(entry["from"] == sender, "sender shown as %r, want the literal %r" % (entry["from"], sender))
    images = driver.execute_script("return document.querySelectorAll('#mail-list img, #mail-list script').length")
    check(images == 0, "mail list contains %d img or script elements, want 0" % images)
    flags = driver.execute_script("return [typeof window.__xss, typeof window.__xss2]")
    check(flags == ["undefined", "undefined"], "page script ran: typeof window.__xss, __xss2 = %r" % flags)


def case_hidden_page_pauses(env):
    """Hiding the page closes the connection, and showing it again delivers what arrived meanwhile."""
    relay = env.relay()
    driver = env.browser()
    # The test overrides document.hidden and fires visibilitychange itself, as the browser does when a tab is hidden.
    driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {
            "source": """
            window.__hidden = false;
            Object.defineProperty(document, "hidden", { configurable: true, get: () => window.__hidden });
            """
        },
    )
    driver.get(relay.base_url + "/#inbox=frank")
    wait_for_status(driver, "open", "sse")

    driver.execute_script("window.__hidden = true; document.dispatchEvent(new Event('visibilitychange'));")
    wait_for_status(driver, "paused")
    relay.publish("frank", "sent while hidden", "Frank <frank@example.org>")
    time.sleep(QUIET_PERIOD)
    check("sent while hidden" not in subjects(driver), "mail shown while the page was hidden: connection not paused")

    driver.execute_script("window.__hidden = false; document.dispatchEvent(new Event('visibilitychange'));")
    wait_for_subject(driver, "sent while hidden")
    wait_for_status(driver, "open", "sse")
    check_exactly_once(driver, ["sent while hidden"])


def case_stream_rotation(env):
    """Event streams that end (--sse-max-age) and reopen lose and repeat no event."""
    relay = env.relay(extra_args=["--sse-max-age", "4"])
    driver = env.browser()
    driver.get(relay.base_url + "/#inbox=grace")
    wait_for_status(driver, "open", "sse")

    expected = []
    for number in range(12):  # 12 × 0.75 s spans two stream ends.
        subject = "rotation %d" % number
        relay.publish("grace", subject, "Grace <grace@example.org>")
        expected.append(subject)
        time.sleep(0.75)
    for subject in expected:
        wait_for_subject(driver, subject)
    time.sleep(QUIET_PERIOD)
    check_exactly_once(driver, expected)
    check(demo_status(driver)["transport"] == "sse", "client fell back to long-poll after normal stream ends")


CASES = [
    case_demo_event_stream,
    case_demo_longpoll_fallback,
    case_broken_event_stream_fallback,
    case_cross_origin,
    case_restart_event_stream,
    case_restart_longpoll,
    case_markup_in_subject,
    case_hidden_page_pauses,
    case_stream_rotation,
]


# MARK: Runner


class CaseEnvironment:
    """Temporary folder, relays, browsers and servers of one case, all stopped by `close()`."""

    def __init__(self, bin_dir):
        self.bin_dir = bin_dir
        self.workdir = tempfile.mkdtemp(prefix="notify-browser-")
        self.relays = []
        self.drivers = []
        self.cleanups = []

    def folder(self, name):
        path = os.path.join(self.workdir, name)
        os.makedirs(path, exist_ok=True)
        return path

    def relay(self, **arguments):
        relay = Relay(self.bin_dir, self.workdir, **arguments)
        self.relays.append(relay)
        return relay

    def browser(self):
        driver = start_browser(self.workdir)
        self.drivers.append(driver)
        return driver

    def diagnostics(self):
        """Relay logs and browser console of a failed case."""
        lines = []
        for relay in self.relays:
            lines.append("--- relay log %s" % relay.log_path)
            lines.append(relay.log_text())
        for driver in self.drivers:
            try:
                lines.append("--- browser console")
                lines += ["%s %s" % (entry["level"], entry["message"]) for entry in driver.get_log("browser")]
                lines.append("--- page status: %r" % demo_status(driver))
            except WebDriverException:
                pass
        return "\n".join(lines)

    def close(self):
        for driver in self.drivers:
            try:
                driver.quit()
            except WebDriverException as error:
                print("warning: closing Chromium failed: %s" % error, file=sys.stderr)
        for cleanup in self.cleanups:
            cleanup()
        for relay in self.relays:
            relay.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bin-dir",
        default=os.environ.get("NOTIFY_BIN_DIR", os.path.join(REPO, ".build", "debug")),
        help="folder with the built notify-relay and notify-deliver (default: $NOTIFY_BIN_DIR, else .build/debug)",
    )
    parser.add_argument("-k", dest="pattern", help="run only the cases whose name contains this text")
    arguments = parser.parse_args()

    for path in (CHROMIUM, CHROMEDRIVER, os.path.join(arguments.bin_dir, "notify-relay"), os.path.join(arguments.bin_dir, "notify-deliver")):
        if not os.access(path, os.X_OK):
            sys.exit("browser_test: %s not found or not executable: run scripts/install-test-deps.sh, swift build, or pass --bin-dir" % path)

    passed = failed = 0
    for case in CASES:
        if arguments.pattern and arguments.pattern not in case.__name__:
            continue
        started = time.monotonic()
        env = CaseEnvironment(arguments.bin_dir)
        try:
            case(env)
        except Exception as error:
            failed += 1
            print("FAIL %s (%.1f s): %s" % (case.__name__, time.monotonic() - started, error))
            if not isinstance(error, CaseFailure):
                traceback.print_exc()
            print(env.diagnostics())
        else:
            passed += 1
            print("PASS %s (%.1f s)" % (case.__name__, time.monotonic() - started))
        finally:
            env.close()
        sys.stdout.flush()

    print("%d passed, %d failed" % (passed, failed))
    if passed + failed == 0:
        print("browser_test: no case name contains %r" % arguments.pattern, file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
