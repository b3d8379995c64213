#!/usr/bin/env python3
"""Check `make install` and `make uninstall`, then run the installed programs.

The test installs into a temporary DESTDIR with PREFIX=/usr, so it never
writes outside its temporary folder and needs no root. It checks:

- the installed file list is exactly the binaries, the two man pages,
  README.md, docs/*.md and every file of contrib/*/, with modes 0755 and 0644
  and the same bytes as in the tree;
- the man pages document every option of `--help` and no other, with the
  same numeric defaults, and render with no groff warning (when man and groff
  are installed: Debian packages man-db and groff-base);
- neither installed binary needs a Swift library at run time, and
  notify-deliver is fully static (`ldd` and the ELF program headers);
- the installed notify-relay starts on 127.0.0.1:0 with a socket in the
  temporary folder, and the installed notify-deliver wakes a waiting
  long-poll. The admin listener serves /healthz and /metrics, and SIGTERM
  stops the relay with status 0. With the relay gone, notify-deliver exits 0
  (75 with --tempfail), as the mail server needs;
- `make uninstall` with the same DESTDIR and PREFIX leaves no file behind.

Usage: python3 tests/install/install_test.py [--keep]
  --keep leaves the temporary folder in place and prints its path.

`make install` depends on `make build`, so the first run builds the release
binaries. Every wait has a bound, and a watchdog ends the run after
WATCHDOG_SECONDS. The test stops only the relay it started, by its PID. The
last line is "N passed, N failed", and the exit status is 1 when a check failed.
"""

import argparse
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# The shared check counter lives in tests/checks.py.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from checks import CheckFailed, Results, WatchdogExpired, expect  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PREFIX = "/usr"
PROGRAMS = ["notify-deliver", "notify-relay"]
MAN_PAGES = ["notify-deliver.8", "notify-relay.8"]

# `make install` may compile the whole package first.
MAKE_SECONDS = 1800
WATCHDOG_SECONDS = MAKE_SECONDS + 300
# Bounds for the relay and the programs, generous for a loaded CI machine.
START_SECONDS = 10.0
COMMAND_SECONDS = 15.0
LONG_POLL_SECONDS = 20


def run(command, timeout=COMMAND_SECONDS, input=None, env=None):
    """Runs a command in its own process group and returns its result.

    stdin is a pipe carrying `input`, as from a mail server, or /dev/null when
    `input` is None. On timeout the whole group is killed and the check fails.
    """
    command = [str(part) for part in command]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL if input is None else subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        stdout, stderr = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise CheckFailed(f"{shlex.join(command)} did not finish within {timeout} s")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def tail(data, lines=30):
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


# ---------------------------------------------------------------------------
# The installed tree


def expected_files():
    """Maps each path the install must create (relative to DESTDIR) to its source and mode."""
    prefix = PREFIX.lstrip("/")
    files = {}
    for program in PROGRAMS:
        files[f"{prefix}/bin/{program}"] = (REPO / ".build" / "release" / program, 0o755)
    for page in MAN_PAGES:
        files[f"{prefix}/share/man/man8/{page}"] = (REPO / "man" / page, 0o644)
    documents = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
    documents += sorted(path for path in (REPO / "contrib").glob("*/*") if path.is_file())
    for path in documents:
        files[f"{prefix}/share/doc/notify/{path.relative_to(REPO)}"] = (path, 0o644)
    return files


def installed_files(destdir):
    """Every file and symbolic link under `destdir`, relative to it."""
    found = set()
    for directory, _, names in os.walk(destdir):
        for name in names:
            found.add(str((Path(directory) / name).relative_to(destdir)))
    return found


def check_file_list(destdir):
    expected = expected_files()
    # A glob that matched nothing must not make the comparison pass.
    for required in ["docs/operations.md", "docs/protocol.md", "contrib/postfix/master.cf",
                     "contrib/systemd/notify-relay.service", "contrib/nginx/notify.conf"]:
        expect(f"usr/share/doc/notify/{required}" in expected, f"{required} is missing from the tree")
    found = installed_files(destdir)
    missing = sorted(set(expected) - found)
    extra = sorted(found - set(expected))
    expect(not missing, f"not installed: {missing}")
    expect(not extra, f"installed but not expected: {extra}")


def check_modes_and_contents(destdir):
    for relative, (source, mode) in expected_files().items():
        installed = destdir / relative
        actual = installed.stat().st_mode & 0o7777
        expect(actual == mode, f"{relative} has mode {actual:04o}, want {mode:04o}")
        expect(installed.read_bytes() == source.read_bytes(), f"{relative} differs from {source}")


# ---------------------------------------------------------------------------
# Help texts and man pages


def help_options(help_text):
    """Option names (`--name`) that the help text lists or mentions, without the bare `--`."""
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", help_text))


def help_defaults(help_text):
    """Numeric defaults by option, from option lines and their continuation lines."""
    defaults = {}
    current = None
    for line in help_text.splitlines():
        option_line = re.match(r"^  (--[a-z][a-z-]*)", line)
        if option_line:
            current = option_line.group(1)
        elif not line.startswith("    "):
            current = None
        if current:
            default = re.search(r"\(default:? ([0-9][0-9.:]*)", line)
            if default:
                defaults[current] = default.group(1).rstrip(".:")
    return defaults


def roff_arguments(text):
    """Splits the arguments of a roff macro: blanks separate them, and a double
    quote starts an argument that runs to the next lone double quote."""
    arguments = []
    index = 0
    while index < len(text):
        if text[index] == " ":
            index += 1
        elif text[index] == '"':
            index += 1
            argument = ""
            while index < len(text):
                if text.startswith('""', index):
                    argument += '"'
                    index += 2
                elif text[index] == '"':
                    index += 1
                    break
                else:
                    argument += text[index]
                    index += 1
            arguments.append(argument)
        else:
            end = text.find(" ", index)
            end = len(text) if end < 0 else end
            arguments.append(text[index:end])
            index = end
    return arguments


def roff_to_text(line):
    """Plain text of one roff line: font macros and escapes removed."""
    if line.startswith(".\\\""):
        return ""
    macro = re.match(r"^\.([A-Z]{1,2})(?:\s+(.*))?$", line)
    if macro:
        name, rest = macro.group(1), macro.group(2) or ""
        if name not in ("B", "I", "BI", "BR", "IB", "IR", "RB", "RI"):
            return ""
        separator = " " if name in ("B", "I") else ""
        line = separator.join(roff_arguments(rest))
    for escape, text in [("\\-", "-"), ("\\(dq", '"'), ("\\(aq", "'"), ("\\e", "\\"), ("\\&", ""), ("\\c", "")]:
        line = line.replace(escape, text)
    return re.sub(r"\\f[BIRP]", "", line)


def man_option_paragraphs(page_source):
    """Maps each option documented in OPTIONS to the plain text of its paragraph."""
    paragraphs = {}
    section = None
    lines = page_source.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith(".SH"):
            section = line[3:].strip().strip('"')
        if section == "OPTIONS" and line == ".TP" and index + 1 < len(lines):
            tag = roff_to_text(lines[index + 1])
            body = []
            index += 2
            while index < len(lines) and lines[index] not in (".TP",) and not lines[index].startswith(".SH"):
                body.append(roff_to_text(lines[index]))
                index += 1
            text = " ".join(" ".join(body).split())
            for option in re.findall(r"(--[a-z][a-z-]*)", tag):
                paragraphs[option] = text
            continue
        index += 1
    return paragraphs


def check_man_matches_help(program, destdir):
    binary = destdir / PREFIX.lstrip("/") / "bin" / program
    result = run([binary, "--help"])
    expect(result.returncode == 0, f"{program} --help exited {result.returncode}")
    help_text = result.stdout.decode()
    page = (destdir / PREFIX.lstrip("/") / "share" / "man" / "man8" / f"{program}.8").read_text()
    documented = man_option_paragraphs(page)

    listed = {option for option in help_options(help_text) if re.search(rf"^  {re.escape(option)}\b", help_text, re.M)}
    expect(listed, f"found no option lines in {program} --help")
    missing = sorted(listed - set(documented))
    stale = sorted(set(documented) - listed)
    expect(not missing, f"options in {program} --help but not in OPTIONS of {program}.8: {missing}")
    expect(not stale, f"options in OPTIONS of {program}.8 but not in {program} --help: {stale}")
    for option, default in sorted(help_defaults(help_text).items()):
        text = documented.get(option, "")
        expect(re.search(rf"Default: {re.escape(default)}\b", text),
               f"{program}.8 {option}: help says default {default}, the man page says {text!r}")


def check_man_renders(page):
    environment = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    result = run(["man", "--warnings", "-l", page], env=environment)
    expect(result.returncode == 0, f"man -l exited {result.returncode}: {tail(result.stderr)}")
    expect(not result.stderr.strip(), f"man -l printed warnings: {tail(result.stderr)}")
    text = result.stdout.decode(errors="replace")
    for heading in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "ENVIRONMENT", "FILES", "EXIT STATUS",
                    "EXAMPLES", "SEE ALSO"]:
        expect(re.search(rf"^{heading}$", text, re.M), f"no {heading} section in the rendered page")


def check_groff_clean(page):
    result = run(["groff", "-man", "-Tutf8", "-ww", "-z", page])
    expect(result.returncode == 0 and not result.stderr.strip(), f"groff -ww: {tail(result.stderr)}")


def check_man_finds_page(destdir, program):
    manpath = destdir / PREFIX.lstrip("/") / "share" / "man"
    result = run(["man", "-M", manpath, "-w", "8", program])
    expect(result.returncode == 0, f"man -M {manpath} -w 8 {program} exited {result.returncode}")
    found = result.stdout.decode().strip()
    expect(found == str(manpath / "man8" / f"{program}.8"), f"man found {found!r}")


# ---------------------------------------------------------------------------
# Run-time dependencies


def elf_program_header_types(path):
    """Types of the ELF64 little-endian program headers of `path`."""
    data = path.read_bytes()
    expect(data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, f"{path} is not a 64-bit little-endian ELF file")
    program_offset = struct.unpack_from("<Q", data, 0x20)[0]
    entry_size, count = struct.unpack_from("<HH", data, 0x36)
    return [struct.unpack_from("<I", data, program_offset + i * entry_size)[0] for i in range(count)]


PT_DYNAMIC = 2
PT_INTERP = 3


def check_relay_libraries(binary):
    result = run(["ldd", binary])
    output = result.stdout.decode() + result.stderr.decode()
    expect(result.returncode == 0, f"ldd exited {result.returncode}: {output}")
    expect("libswift" not in output and "libFoundation" not in output and "libdispatch" not in output,
           f"notify-relay loads Swift libraries:\n{output}")
    expect("not found" not in output, f"notify-relay needs a library that is missing:\n{output}")


def check_deliver_static(binary):
    result = run(["ldd", binary])
    output = result.stdout.decode() + result.stderr.decode()
    expect("not a dynamic executable" in output or "statically linked" in output,
           f"ldd does not report a static executable:\n{output}")
    types = elf_program_header_types(binary)
    expect(PT_INTERP not in types and PT_DYNAMIC not in types,
           "notify-deliver has a dynamic loader or dynamic section")


# ---------------------------------------------------------------------------
# The installed programs at work


class Relay:
    """The installed notify-relay, started on loopback with a socket in `folder`."""

    def __init__(self, binary, folder):
        self.socket_path = folder / "relay.sock"
        self.log_path = folder / "relay.log"
        self.log_file = open(self.log_path, "wb")
        environment = {key: value for key, value in os.environ.items() if key != "NOTIFY_RELAY_SOCKET"}
        self.process = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--socket", self.socket_path],
            stdin=subprocess.DEVNULL, stdout=self.log_file, stderr=subprocess.STDOUT, env=environment)
        self.http_port = None
        self.admin_port = None

    def log(self):
        return self.log_path.read_text(errors="replace")

    def wait_started(self):
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            started = re.search(r'msg="relay started".* http=127\.0\.0\.1:(\d+).* admin=127\.0\.0\.1:(\d+)', self.log())
            if started:
                self.http_port, self.admin_port = int(started.group(1)), int(started.group(2))
                return
            expect(self.process.poll() is None, f"the relay exited with {self.process.returncode}:\n{self.log()}")
            time.sleep(0.05)
        raise CheckFailed(f"no 'relay started' line within {START_SECONDS} s:\n{self.log()}")

    def stop(self):
        """Sends SIGTERM and returns the exit status, or None when the relay had to be killed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=START_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return None
        self.log_file.close()
        return self.process.returncode


def http_get(port, path, timeout):
    """Returns (status, header fields, body) of one GET on loopback."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def check_versions(destdir):
    for program in PROGRAMS:
        result = run([destdir / PREFIX.lstrip("/") / "bin" / program, "--version"])
        expect(result.returncode == 0, f"{program} --version exited {result.returncode}")
        output = result.stdout.decode()
        expect(re.fullmatch(rf"{program} \d+\.\d+\.\d+\n", output), f"{program} --version printed {output!r}")


def check_deliver_wakes_long_poll(relay, deliver):
    status, fields, _ = http_get(relay.http_port, "/test?timeout=0&format=json", COMMAND_SECONDS)
    expect(status == 204, f"GET /test?timeout=0 answered {status}, want 204")
    cursor = fields.get("Notify-Cursor")
    expect(cursor, "no Notify-Cursor in the 204 answer")

    # Waiting from the cursor on, the poll gets the event even if it is published first.
    answer = {}

    def poll():
        try:
            answer["response"] = http_get(
                relay.http_port, f"/test?since={cursor}&timeout={LONG_POLL_SECONDS}&format=json", LONG_POLL_SECONDS + 5)
        except Exception as error:
            answer["error"] = error

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    time.sleep(0.2)
    message = b"From: Alice <alice@example.org>\nSubject: installed\nMessage-ID: <install@example.org>\n\nbody\n"
    result = run([deliver, "--verbose", "--socket", relay.socket_path, "test@example.com"], input=message)
    expect(result.returncode == 0, f"notify-deliver exited {result.returncode}: {tail(result.stderr)}")
    expect(b'msg="relay notified"' in result.stderr, f"no 'relay notified' line: {tail(result.stderr)}")

    poller.join(LONG_POLL_SECONDS + 10)
    expect(not poller.is_alive(), "the long-poll did not return")
    expect("error" not in answer, f"the long-poll failed: {answer.get('error')}")
    status, _, body = answer["response"]
    expect(status == 200, f"the long-poll answered {status}, want 200")
    event = json.loads(body)
    expect(event.get("inbox") == "test", f"inbox {event.get('inbox')!r}, want 'test'")
    subjects = [item.get("subject") for item in event.get("messages", [])]
    expect(subjects == ["installed"], f"subjects {subjects}, want ['installed']")


def check_admin_listener(relay):
    status, _, body = http_get(relay.admin_port, "/healthz", COMMAND_SECONDS)
    expect(status == 200 and body.strip() == b"ok", f"/healthz answered {status} {body!r}")
    status, _, body = http_get(relay.admin_port, "/metrics", COMMAND_SECONDS)
    expect(status == 200, f"/metrics answered {status}")
    metrics = body.decode()
    expect(re.search(r"^notify_events_received_total 1$", metrics, re.M),
           f"notify_events_received_total is not 1:\n{metrics}")


def check_relay_stops(relay):
    status = relay.stop()
    expect(status == 0, f"the relay exited with {status} after SIGTERM, want 0:\n{relay.log()}")
    expect('msg="shutting down"' in relay.log(), "no 'shutting down' line")
    expect(not relay.socket_path.exists(), "the ingest socket file is still there")


def check_deliver_without_relay(deliver, socket_path):
    message = b"Subject: nobody listens\n\nbody\n"
    result = run([deliver, "--timeout", "2", "--socket", socket_path, "test"], input=message)
    expect(result.returncode == 0, f"without a relay notify-deliver exited {result.returncode}, want 0")
    result = run([deliver, "--tempfail", "--timeout", "2", "--socket", socket_path, "test"], input=message)
    expect(result.returncode == 75, f"with --tempfail and no relay it exited {result.returncode}, want 75")
    expect(result.stdout == b"", f"notify-deliver wrote to stdout: {result.stdout!r}")


# ---------------------------------------------------------------------------


def make(target, destdir, timeout):
    result = run(["make", "-C", REPO, target, f"DESTDIR={destdir}", f"PREFIX={PREFIX}"], timeout=timeout)
    expect(result.returncode == 0, f"make {target} exited {result.returncode}:\n{tail(result.stdout)}\n{tail(result.stderr)}")


def check_uninstall(destdir):
    make("uninstall", destdir, COMMAND_SECONDS * 4)
    left = sorted(installed_files(destdir))
    expect(not left, f"files left after make uninstall: {left}")
    docdir = destdir / PREFIX.lstrip("/") / "share" / "doc" / "notify"
    expect(not docdir.exists(), f"{docdir} is still there")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    arguments = parser.parse_args()

    def watchdog(signum, frame):
        raise WatchdogExpired()

    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(WATCHDOG_SECONDS)
    results = Results()
    folder = Path(tempfile.mkdtemp(prefix="notify-install-"))
    destdir = folder / "destdir"
    relay = None
    try:
        if not results.run("make install", make, "install", destdir, MAKE_SECONDS):
            return results
        bindir = destdir / PREFIX.lstrip("/") / "bin"
        man8dir = destdir / PREFIX.lstrip("/") / "share" / "man" / "man8"
        results.run("installed file list", check_file_list, destdir)
        results.run("installed modes and contents", check_modes_and_contents, destdir)
        results.run("installed --version", check_versions, destdir)
        for program in PROGRAMS:
            results.run(f"{program}.8 matches --help", check_man_matches_help, program, destdir)
        if shutil.which("groff"):
            for page in MAN_PAGES:
                results.run(f"{page} has no groff warning", check_groff_clean, man8dir / page)
        else:
            results.skip("groff warnings", "groff is not installed (Debian package groff-base)")
        if shutil.which("man"):
            for page in MAN_PAGES:
                results.run(f"man -l renders {page}", check_man_renders, man8dir / page)
            for program in PROGRAMS:
                results.run(f"man -M finds {program}", check_man_finds_page, destdir, program)
        else:
            results.skip("man pages render", "man is not installed (Debian package man-db)")
        results.run("notify-relay loads no Swift library", check_relay_libraries, bindir / "notify-relay")
        results.run("notify-deliver is fully static", check_deliver_static, bindir / "notify-deliver")

        relay = Relay(bindir / "notify-relay", folder)
        if results.run("installed relay starts", relay.wait_started):
            results.run("installed deliver wakes a long-poll", check_deliver_wakes_long_poll, relay,
                          bindir / "notify-deliver")
            results.run("admin /healthz and /metrics", check_admin_listener, relay)
        results.run("relay stops on SIGTERM", check_relay_stops, relay)
        results.run("deliver exits 0 or 75 without relay", check_deliver_without_relay, bindir / "notify-deliver",
                      relay.socket_path)
        results.run("make uninstall removes everything", check_uninstall, destdir)
    except WatchdogExpired:
        results.failed += 1
        print(f"FAIL watchdog: the run took longer than {WATCHDOG_SECONDS} s", flush=True)
    finally:
        signal.alarm(0)
        if relay is not None and relay.process.poll() is None:
            relay.process.kill()
            relay.process.wait()
        if arguments.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return results


if __name__ == "__main__":
    outcome = main()
    print(f"{outcome.passed} passed, {outcome.failed} failed")
    sys.exit(1 if outcome.failed else 0)
