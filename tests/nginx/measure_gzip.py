#!/usr/bin/env python3
"""Measure how gzip and response buffering in nginx affect the relay's event streams.

This produces the numbers in contrib/nginx/README.md ("gzip and event
streams"). It is a measurement, not a test: it prints a table and always
exits 0 unless setup fails. Each variant is contrib/nginx/notify.conf with
a few directive lines changed:

  buffering off, gzip on      "gzip off;" deleted
  header only, gzip on        "gzip off;" and "proxy_buffering off;" deleted,
                              so only the relay's X-Accel-Buffering: no applies
  header ignored, gzip on     as above, plus proxy_ignore_headers X-Accel-Buffering
  header ignored, gzip off    the same with "gzip off;" kept
  shipped                     unchanged

For each variant it reports when the stream head, the opening comment and a
mail published 1 s later arrive (nothing within STALL_SECONDS counts as
stalled), then the body bytes of 20 mail events. Last, it opens STREAMS idle
event streams with and without gzip and reports the growth of the nginx
worker's resident memory (VmRSS) per stream.

Usage: python3 tests/nginx/measure_gzip.py [--bin-dir DIR] [--streams N]
"""

import argparse
import os
import re
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nginx_test as harness  # noqa: E402

STALL_SECONDS = 6.0
HOST = harness.MOUNTS[0][1]


def variant_text(text, delete_gzip_off, delete_buffering_off, ignore_header):
    if delete_gzip_off:
        text = re.sub(r"(?m)^[ \t]*gzip off;[ \t]*\n", "", text)
    if delete_buffering_off:
        replacement = "        proxy_ignore_headers X-Accel-Buffering;\n" if ignore_header else ""
        text = re.sub(r"(?m)^[ \t]*proxy_buffering off;[ \t]*\n", replacement, text)
    return text


VARIANTS = [
    ("buffering off, gzip on", dict(delete_gzip_off=True, delete_buffering_off=False, ignore_header=False)),
    ("header only, gzip on", dict(delete_gzip_off=True, delete_buffering_off=True, ignore_header=False)),
    ("header ignored, gzip on", dict(delete_gzip_off=True, delete_buffering_off=True, ignore_header=True)),
    ("header ignored, gzip off", dict(delete_gzip_off=False, delete_buffering_off=True, ignore_header=True)),
    ("shipped", dict(delete_gzip_off=False, delete_buffering_off=False, ignore_header=False)),
]


def start_nginx(folder, name, relay, text, streams=0):
    port = harness.free_port()
    filled = harness.substitute_placeholders(text, relay.port, port, gzip_allowed=False)
    # Each stream takes two nginx connections: the client's and the relay's.
    return harness.Nginx(folder / name, filled, port, worker_connections=max(512, 3 * streams))


def elapsed_text(started, arrived):
    return f"{(arrived - started) * 1000:.1f} ms" if arrived is not None else "stalled"


def measure_stream(relay, nginx, inbox):
    """Return a row: head, opening comment, mail latency, encoding, bytes for 20 mails."""
    stream = harness.EventStream(nginx.port, HOST, "/" + inbox)
    try:
        started = time.monotonic()
        head = stream.read_head(STALL_SECONDS)
        head_at = time.monotonic() if head else None
        opening = stream.wait_for(lambda block: block["comments"], STALL_SECONDS) if head else None
        opening_at = time.monotonic() if opening else None
        row = [elapsed_text(started, head_at), elapsed_text(started, opening_at)]
        if opening is None:
            return row + ["stalled", "-", "-"]

        time.sleep(1)
        relay.publish(inbox, "latency")
        published = time.monotonic()
        mail = stream.wait_for(lambda block: block.get("event") == "mail", STALL_SECONDS)
        row.append(elapsed_text(published, time.monotonic() if mail else None))
        row.append(head.field("content-encoding") or "none")

        # Count the chunk data bytes, compressed or not, that 20 mails take.
        received = 0
        read_chunk = stream.client.read_stream_chunk

        def counting_read(deadline):
            nonlocal received
            chunk = read_chunk(deadline)
            received += len(chunk or b"")
            return chunk

        stream.client.read_stream_chunk = counting_read
        for number in range(20):
            relay.publish(inbox, f"subject number {number} from someone@example.org")
            if stream.wait_for(lambda block: block.get("event") == "mail", STALL_SECONDS) is None:
                return row + ["stalled"]
        return row + [str(received)]
    finally:
        stream.close()


def resident_kilobytes(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def measure_memory(relay, nginx, streams, label):
    workers = harness.child_pids(nginx.process.pid)
    if len(workers) != 1:
        raise RuntimeError(f"expected one nginx worker, found {workers}")
    before = resident_kilobytes(workers[0])
    opened = []
    try:
        for number in range(streams):
            stream = harness.EventStream(nginx.port, HOST, f"/memory-{label}-{number}")
            opened.append(stream)
        for stream in opened:
            if stream.read_head(harness.PROMPT_SECONDS) is None:
                raise RuntimeError("an event stream did not open; raise the open-file limit")
        time.sleep(1)
        after = resident_kilobytes(workers[0])
    finally:
        for stream in opened:
            stream.close()
    return before, after


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin-dir", default=os.environ.get("NOTIFY_BIN_DIR", str(harness.REPO / ".build" / "debug")))
    parser.add_argument("--streams", type=int, default=1000, help="idle event streams for the memory measurement")
    arguments = parser.parse_args()

    # Each stream takes a client socket here and two sockets in nginx.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, arguments.streams + 256)), hard))

    folder = Path(tempfile.mkdtemp(prefix="notify-nginx-measure-"))
    folder.chmod(0o755)
    text = harness.CONF_PATH.read_text()
    relay = harness.Relay(arguments.bin_dir, folder)
    try:
        print("variant                    | head     | comment  | mail 1 s later | encoding | 20 mails, body bytes")
        for number, (name, changes) in enumerate(VARIANTS):
            nginx = start_nginx(folder, f"variant-{number}", relay, variant_text(text, **changes))
            try:
                row = measure_stream(relay, nginx, f"measure-{number}")
            finally:
                nginx.stop()
            print(f"{name:26} | " + " | ".join(row))

        for name, changes in (("gzip on", VARIANTS[0][1]), ("gzip off", VARIANTS[4][1])):
            conf = variant_text(text, **changes)
            nginx = start_nginx(folder, f"memory-{name.replace(' ', '-')}", relay, conf, arguments.streams)
            try:
                before, after = measure_memory(relay, nginx, arguments.streams, name.replace(" ", "-"))
            finally:
                nginx.stop()
            print(f"{name}: worker VmRSS {before} kB -> {after} kB with {arguments.streams} idle streams, "
                  f"{(after - before) / arguments.streams:.1f} kB per stream")
    finally:
        relay.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
