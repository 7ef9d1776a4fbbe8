#!/usr/bin/env bash
# Memory per logged-in idle TCP session: N virtual Teltonika devices (`avlgate simulate`) connect,
# log in, send one frame (acknowledged after delivery), then stay connected and silent. The
# gateway's RSS is read from /proc before any device connected (the idle gateway, broker
# connection up) and once all N are logged in and idle; the difference over N is the cost of
# one session, and its projection to 100,000 sessions is printed, with the gateway's CPU over the
# idle window (what holding idle sessions costs in housekeeping). Everything on 127.0.0.1.
# See docs/load-runs.md.
#
# Environment (defaults in brackets):
#   DEVICES [19000: what the 20,000 open-file cap of this machine allows per process]
#   PROTOCOL [teltonika8e]  TRANSPORT [tcp|udp: UDP peers instead, one socket each on the
#   simulator's side]  SETTLE_SECS [10: idle time before the measurement]
#   SOURCE_IPS [127.0.0.2-127.0.0.101] (the gateway allows 5000 connections and 200 new ones a
#   second per source address)  RUST_LOG [info: the gateway's default, spans recorded]
#   BROKER [tansu|mock]  PARTITIONS [12]  PORT [15027]  METRICS_PORT [19102]  BUILD [1]
#   GATEWAY_ARGS [""]  OUT [target/bench/idle-sessions]

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEVICES=${DEVICES:-19000}
PROTOCOL=${PROTOCOL:-teltonika8e}
TRANSPORT=${TRANSPORT:-tcp}
SETTLE_SECS=${SETTLE_SECS:-10}
SOURCE_IPS=${SOURCE_IPS:-127.0.0.2-127.0.0.101}
export RUST_LOG=${RUST_LOG:-info}
OUT=${OUT:-$ROOT/target/bench/idle-sessions}
mkdir -p "$OUT"

# Both processes (gateway, simulator) at the hard open-file limit; both also raise it themselves.
ulimit -n "$(ulimit -Hn)"
echo "open-file limit: $(ulimit -n) per process"
((DEVICES + 200 <= $(ulimit -n))) || echo "warning: $DEVICES devices is close to or over the open-file limit" >&2

build
machine
start_broker "$OUT"
echo "broker: $BROKER at $BOOTSTRAP"
start_gateway "$OUT"
sleep 2
rss0=$(rss_kib "$GW_PID")
cpu_start=$(cpu_ticks "$GW_PID")
echo "idle gateway (no session): RSS $rss0 KiB"

# One frame each, then silence: an interval far beyond the run; stopped by SIGINT below.
"$BIN" simulate --target "127.0.0.1:$PORT" --protocol "$PROTOCOL" --transport "$TRANSPORT" --devices "$DEVICES" \
    --records-per-frame 1 --interval-ms 86400000 --duration-secs 0 --source-ips "$SOURCE_IPS" \
    --quiet --json >"$OUT/simulate.json" 2>"$OUT/simulate.err" &
SIM_PID=$!
PIDS+=("$SIM_PID")

# Wait until every device is connected and the acknowledgements stopped moving (logins and
# first frames answered).
start=$(date +%s)
last=-1
while :; do
    open=$(metric avlgate_connections_open)
    acks=$(metric avlgate_acks_sent_total)
    ((${open:-0} >= DEVICES && ${acks:-0} == last)) && break
    last=${acks:-0}
    if (($(date +%s) - start > 300)); then
        echo "only ${open:-0} of $DEVICES devices connected after 300 s ($acks acknowledgements)" >&2
        break
    fi
    kill -0 "$SIM_PID" 2>/dev/null || { echo "simulate stopped" >&2; cat "$OUT/simulate.err" >&2; exit 2; }
    sleep 1
done
cpu_in=$(cpu_ticks "$GW_PID")
echo "all logged in after $(($(date +%s) - start)) s: $open sessions open, $acks acknowledgements (logins and first frames); gateway CPU $(awk -v a="$cpu_start" -v b="$cpu_in" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz }') s"
cpu0=$(cpu_ticks "$GW_PID")
sleep "$SETTLE_SECS"
cpu1=$(cpu_ticks "$GW_PID")
open=$(metric avlgate_connections_open)
rss1=$(rss_kib "$GW_PID")
grep -E '^(VmRSS|RssAnon|RssFile|VmHWM)' "/proc/$GW_PID/status" >"$OUT/gateway-status.txt"
echo "after ${SETTLE_SECS} s idle: $open sessions, RSS $rss1 KiB (high-water $(awk '/^VmHWM/ {print $2}' "/proc/$GW_PID/status") KiB)"
awk -v a="$rss0" -v b="$rss1" -v n="$open" 'BEGIN {
    per = (b - a) * 1024 / n
    printf "per idle session: %.0f bytes (%.2f KiB) above the idle gateway; projected to 100,000 sessions: %.2f GiB (+ the idle gateway, %.0f MiB)\n", per, per / 1024, per * 100000 / 2^30, a / 1024
}'
# What the idle sessions cost in CPU: the session tasks are asleep, so this is the gateway's
# housekeeping (the command ledger's ticks over the sessions, metrics, the broker client).
awk -v a="$cpu0" -v b="$cpu1" -v hz="$(getconf CLK_TCK)" -v s="$SETTLE_SECS" -v n="$open" 'BEGIN {
    pct = (b - a) / hz / s * 100
    printf "gateway CPU while idle: %.1f %% of a core over %d s (%.2f us per session per second)\n", pct, s, (b - a) / hz / s * 1e6 / n
}'
# Every device disconnects at once: the gateway's CPU until its last session is gone.
kill -INT "$SIM_PID" 2>/dev/null || true
wait "$SIM_PID" 2>/dev/null || true
if [[ "$TRANSPORT" == udp ]]; then
    echo "UDP peers end after --udp-idle-timeout-secs of silence: no disconnection to measure"
    echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    exit 0
fi
start=$(date +%s)
while o=$(metric avlgate_connections_open); ((${o:-0} > 0 && $(date +%s) - start < 120)); do sleep 0.5; done
# The sockets are closed; the sessions' ends (command dispatcher, LOGOUT claims) may still be
# working through: wait until the gateway is back to its idle CPU (under 5 % of a core).
hz=$(getconf CLK_TCK)
prev=$(cpu_ticks "$GW_PID")
while sleep 1; do
    cur=$(cpu_ticks "$GW_PID")
    (((cur - prev) * 20 < hz || $(date +%s) - start >= 120)) && break
    prev=$cur
done
echo "all disconnected and settled after $(($(date +%s) - start)) s ($(metric avlgate_connections_open) open); gateway CPU $(awk -v a="$cpu1" -v b="$cur" -v hz="$hz" 'BEGIN { printf "%.2f", (b - a) / hz }') s"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
