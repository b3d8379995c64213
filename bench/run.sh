#!/usr/bin/env bash
# Builds the release binaries and measures notify-relay and notify-deliver on
# this machine:
#   1. relay memory per idle long-poll client (1k, 10k, 19k clients);
#   2. fan-out latency: one ingest write waking 1k, 10k, 19k clients, all on
#      one inbox or one inbox each;
#   3. notify-deliver wall time per run against a bare `nc -U` one-shot.
# Raw output, relay logs and the summary stay in the results directory that
# the script prints at the end.
#
# Every relay listens on 127.0.0.1 on a port the kernel picks and on a Unix
# socket in that directory. The script stops only the processes it started,
# bounds each step with `timeout`, and skips the remaining steps once
# NOTIFY_BENCH_BUDGET seconds (default 540) have passed.
#
# Environment:
#   NOTIFY_BENCH_SCRATCH  swift build scratch path (default /tmp/build-bench)
#   NOTIFY_BENCH_OUT      results directory (default: a new /tmp/notify-bench.* directory)
#   NOTIFY_BENCH_CLIENTS  client counts (default "1000 10000 19000")
#   NOTIFY_BENCH_ROUNDS   fan-out rounds per scenario (default 5)
#   NOTIFY_BENCH_RUNS     hyperfine runs per command (default 1000)
#   NOTIFY_BENCH_SKIP_BUILD=1  use the binaries already in the scratch path
#   NOTIFY_BENCH_PROFILE=1     also record a perf profile of the relay during
#                              each fan-out scenario (needs linux-perf)
#
# Needs: the Swift toolchain, hyperfine and netcat-openbsd (Debian packages),
# and an open-file limit above the largest client count plus about 100.

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
scratch=${NOTIFY_BENCH_SCRATCH:-/tmp/build-bench}
clients=${NOTIFY_BENCH_CLIENTS:-"1000 10000 19000"}
rounds=${NOTIFY_BENCH_ROUNDS:-5}
runs=${NOTIFY_BENCH_RUNS:-1000}
budget=${NOTIFY_BENCH_BUDGET:-540}
out=${NOTIFY_BENCH_OUT:-$(mktemp -d /tmp/notify-bench.XXXXXX)}
mkdir -p "$out"
bin=$scratch/release
results=$out/results.txt
: >"$results"

relay_pid=""
relay_port=""
loadgen_pid=""
perf_pid=""
socket_path=$out/relay.sock

log() { printf '%s\n' "$*" >&2; }

# Stops the relay this script started, if it still runs: SIGTERM, then
# SIGKILL after 5 s.
stop_relay() {
    [[ -n $relay_pid ]] || return 0
    if kill -0 "$relay_pid" 2>/dev/null; then
        kill -TERM "$relay_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$relay_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$relay_pid" 2>/dev/null || true
    fi
    wait "$relay_pid" 2>/dev/null || true
    relay_pid=""
}

cleanup() {
    if [[ -n $perf_pid ]]; then
        kill -TERM "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
    fi
    if [[ -n $loadgen_pid ]] && kill -0 "$loadgen_pid" 2>/dev/null; then
        kill -TERM "$loadgen_pid" 2>/dev/null || true
        wait "$loadgen_pid" 2>/dev/null || true
    fi
    stop_relay
    rm -f "$socket_path"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a relay with the given extra options, logging to $1, and sets
# relay_pid and relay_port from its "relay started" line.
start_relay() {
    local logfile=$1
    shift
    rm -f "$socket_path"
    "$bin/notify-relay" --listen 127.0.0.1:0 --socket "$socket_path" "$@" 2>"$logfile" &
    relay_pid=$!
    relay_port=""
    for _ in $(seq 50); do
        relay_port=$(grep -m1 -o 'msg="relay started".* http=127\.0\.0\.1:[0-9]*' "$logfile" | grep -o '[0-9]*$' || true)
        [[ -n $relay_port ]] && return 0
        kill -0 "$relay_pid" 2>/dev/null || break
        sleep 0.1
    done
    log "notify-relay did not start; its log:"
    cat "$logfile" >&2
    return 1
}

over_budget() {
    if ((SECONDS > budget)); then
        log "skipping $1: the run has used $SECONDS s of its $budget s budget"
        return 0
    fi
    return 1
}

# Sums subscribers=N over the relay's "mail notified" lines, as a relay-side
# count of the clients woken.
relay_woken_count() {
    grep 'msg="mail notified"' "$1" | grep -o 'subscribers=[0-9]*' | cut -d= -f2 | awk '{ s += $1 } END { print s + 0 }'
}

# Starts recording a call-graph profile of the relay once notify-loadgen has
# finished its connect phase, so the profile covers the fan-out rounds and the
# re-sent requests between them. Sets perf_pid; stop it with stop_profile.
start_profile() {
    local name=$1
    for _ in $(seq 1200); do
        grep -q 'kind=idle-memory' "$out/loadgen-$name.txt" 2>/dev/null && break
        [[ -e /proc/$loadgen_pid ]] && [[ $(awk '{ print $3 }' "/proc/$loadgen_pid/stat") != Z ]] || return 0
        sleep 0.1
    done
    perf record -g -p "$relay_pid" -o "$out/perf-$name.data" >/dev/null 2>&1 &
    perf_pid=$!
}

# Stops perf (SIGTERM: a background job of a script ignores SIGINT) and keeps
# the top of its report in perf-$1.txt.
stop_profile() {
    [[ -n $perf_pid ]] || return 0
    kill -TERM "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    perf_pid=""
    perf report -i "$out/perf-$1.data" --children --sort symbol -g none 2>/dev/null |
        grep '%' | head -80 >"$out/perf-$1.txt" || true
}

# --- Machine -----------------------------------------------------------------
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "cpus: $(nproc)"
    echo "cpu model: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel: $(uname -r)"
    echo "open-file limit: $(ulimit -n)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "swift: $(swift --version 2>/dev/null | head -1)"
    echo "source: commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)," \
        "$(git -C "$repo" status --short 2>/dev/null | wc -l) changed or new files in the working tree"
} >"$out/machine.txt"
cat "$out/machine.txt" >&2

# --- Build -------------------------------------------------------------------
if [[ ${NOTIFY_BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "building release binaries in $scratch"
    (cd "$repo" && timeout 480 swift build -c release --static-swift-stdlib --scratch-path "$scratch") >"$out/build.log" 2>&1 || {
        tail -30 "$out/build.log" >&2
        log "build failed; full log in $out/build.log"
        exit 1
    }
fi
for program in notify-relay notify-deliver notify-loadgen; do
    [[ -x $bin/$program ]] || { log "missing $bin/$program: build first"; exit 1; }
done

# --- 1 and 2: idle memory and fan-out ----------------------------------------
descriptor_limit=$(ulimit -n)
failures=0
for mode in one distinct; do
    for count in $clients; do
        over_budget "$count clients, $mode inbox(es)" && continue
        if [[ $descriptor_limit != unlimited ]] && ((count + 100 > descriptor_limit)); then
            log "skipping $count clients: the open-file limit $descriptor_limit is too low (raise it with ulimit -n)"
            continue
        fi
        log "scenario: $count clients, inboxes=$mode, $rounds rounds"
        relay_log=$out/relay-$mode-$count.log
        start_relay "$relay_log" --max-poll-timeout 600 --poll-timeout 600 --max-connections 19500
        status=0
        timeout 200 "$bin/notify-loadgen" --port "$relay_port" --socket "$socket_path" --relay-pid "$relay_pid" \
            --clients "$count" --inboxes "$mode" --rounds "$rounds" --deadline 180 \
            >"$out/loadgen-$mode-$count.txt" 2>&1 &
        loadgen_pid=$!
        profiling=0
        if [[ ${NOTIFY_BENCH_PROFILE:-0} == 1 ]] && command -v perf >/dev/null; then
            profiling=1
            start_profile "$mode-$count"
        fi
        wait "$loadgen_pid" || status=$?
        loadgen_pid=""
        ((profiling == 0)) || stop_profile "$mode-$count"
        stop_relay
        cat "$out/loadgen-$mode-$count.txt" >>"$results"
        # The loadgen's warm-up round wakes 32 clients before the measured rounds.
        echo "result kind=relay-count clients=$count inboxes=$mode woken=$(relay_woken_count "$relay_log") expected=$((count * rounds + 32)) loadgen_status=$status" >>"$results"
        if ((status != 0)); then
            failures=$((failures + 1))
            log "notify-loadgen failed (status $status):"
            tail -5 "$out/loadgen-$mode-$count.txt" >&2
        fi
    done
done

# --- 3: notify-deliver against a bare nc one-shot ----------------------------
if ! over_budget "notify-deliver timing"; then
    if ! command -v hyperfine >/dev/null || ! nc -h 2>&1 | grep -q -- '-N'; then
        log "skipping notify-deliver timing: needs hyperfine and netcat-openbsd (apt-get install hyperfine netcat-openbsd)"
    else
        relay_log=$out/relay-deliver.log
        start_relay "$relay_log"
        printf 'test\n' >"$out/ingest-line.txt"
        printf '%s\r\n' 'From: Alice <alice@example.org>' 'To: test@example.com' 'Subject: Hello' \
            'Message-ID: <bench-1@example.org>' 'Date: Thu, 01 Jan 2026 00:00:00 +0000' '' 'Hello.' >"$out/message.eml"

        # Both clients must get their OK; notify-deliver exits 0 even when it
        # cannot reach the relay, so the relay's log is the check.
        reply=$(timeout 5 nc -U -N "$socket_path" <"$out/ingest-line.txt")
        [[ $reply == OK* ]] || { log "nc one-shot got \"$reply\" instead of OK"; exit 1; }
        before=$(grep -c 'msg="mail notified"' "$relay_log")
        warmup=50
        timeout 300 hyperfine --warmup "$warmup" --runs "$runs" --export-csv "$out/deliver.csv" \
            --export-json "$out/deliver.json" \
            -n "nc -U -N" "nc -U -N $socket_path < $out/ingest-line.txt" \
            -n "notify-deliver" "$bin/notify-deliver --socket $socket_path test < $out/message.eml" \
            >"$out/hyperfine.txt" 2>&1 || { cat "$out/hyperfine.txt" >&2; exit 1; }
        cat "$out/hyperfine.txt" >&2
        # Start-up alone, without a shell: neither command touches the socket.
        timeout 120 hyperfine -N --warmup "$warmup" --runs "$runs" --export-csv "$out/startup.csv" \
            -n "nc -h" "nc -h" -n "notify-deliver --version" "$bin/notify-deliver --version" \
            >"$out/hyperfine-startup.txt" 2>&1 || { cat "$out/hyperfine-startup.txt" >&2; exit 1; }
        notified=$(($(grep -c 'msg="mail notified"' "$relay_log") - before))
        stop_relay
        # hyperfine CSV columns: command,mean,stddev,median,user,system,min,max (seconds).
        awk -F, -v notified="$notified" -v expected=$((2 * (runs + warmup))) '
            NR == 2 { nc_mean = $2; nc_median = $4 }
            NR == 3 { nd_mean = $2; nd_median = $4; nd_stddev = $3 }
            NR == 2 || NR == 3 {
                printf "result kind=deliver command=\"%s\" mean_ms=%.3f stddev_ms=%.3f median_ms=%.3f min_ms=%.3f max_ms=%.3f\n",
                    $1, $2 * 1000, $3 * 1000, $4 * 1000, $7 * 1000, $8 * 1000
            }
            END {
                printf "result kind=deliver-ratio mean_ratio=%.2f median_ratio=%.2f relay_notified=%d expected=%d\n",
                    nd_mean / nc_mean, nd_median / nc_median, notified, expected
            }' "$out/deliver.csv" >>"$results"
        awk -F, 'NR > 1 {
                printf "result kind=startup command=\"%s\" mean_ms=%.3f median_ms=%.3f min_ms=%.3f\n", $1, $2 * 1000, $4 * 1000, $7 * 1000
            }' "$out/startup.csv" >>"$results"
    fi
fi

# --- Summary -----------------------------------------------------------------
field() { grep -o " $1=[^ ]*" <<<"$2" | cut -d= -f2; }
{
    echo
    echo "== notify benchmarks ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs) =="
    echo "idle memory per waiting client (target: at most 512 bytes at 19k)"
    grep 'kind=idle-memory' "$results" | while read -r line; do
        printf '  %6s clients  inboxes=%-8s  %4s bytes/client  (VmRSS %s -> %s KiB)\n' \
            "$(field clients "$line")" "$(field inboxes "$line")" "$(field bytes_per_client "$line")" \
            "$(field rss_before_kib "$line")" "$(field rss_after_kib "$line")"
    done
    echo "fan-out latency over $rounds rounds (target: p99 under 100 ms at 19k on one inbox)"
    grep 'kind=fanout ' "$results" | while read -r line; do
        printf '  %6s clients  inboxes=%-8s  p50 %8s ms  p99 %8s ms  max %8s ms  relay CPU %4s ms/round  got 200: %s of %s\n' \
            "$(field clients "$line")" "$(field inboxes "$line")" "$(field p50_ms "$line")" \
            "$(field p99_ms "$line")" "$(field max_ms "$line")" "$(field relay_cpu_ms_per_round "$line")" \
            "$(field samples "$line")" "$(field expected "$line")"
    done
    grep 'kind=relay-count' "$results" | sed 's/^result kind=relay-count/  relay count:/'
    echo "notify-deliver against nc -U -N (target: at most 1.5x)"
    grep -E 'kind=(deliver|startup)' "$results" | sed 's/^result kind=/  /'
    echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine inflates wall-clock latency)"
    echo "raw results: $results"
} | tee "$out/summary.txt"

if ((failures > 0)); then
    log "$failures scenario(s) failed; see $out"
    exit 1
fi
