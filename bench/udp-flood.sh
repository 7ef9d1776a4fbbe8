#!/usr/bin/env bash
# UDP flood from one address over tens of thousands of source ports (issue 12, item 2):
# `avlgate serve --sink stdout` (events to /dev/null, so only the gateway's own costs count),
# then `avlgate udp-flood` sends one datagram from each of PORTS source ports of 127.0.0.1.
# Phases (PHASES):
#   garbage: 12-byte datagrams that pass detection but never identify a device;
#   valid:   whole Teltonika datagrams, a distinct IMEI per port (each peer is identified and
#            acknowledged; the per-address cap decides how many stay).
# Samples RSS and avlgate_udp_peers every SAMPLE_MS; reports per phase the peak RSS, the
# peak peer count, datagrams dropped by the caps, and RSS after the flood and after the UDP
# idle timeout. Everything on 127.0.0.1. See docs/load-runs.md.
#
# Environment (defaults in brackets):
#   PORTS [50000]  FIRST_PORT [10000]  PHASES ["garbage valid valid"]  UDP_IDLE_SECS [10]
#   SAMPLE_MS [100]  PORT [9027]  METRICS_PORT [9102]
#   GATEWAY_ARGS [""] (e.g. "--max-udp-peers-per-ip 1000")  BUILD [1]  OUT [target/bench/udp-flood]
#   BIN [target/release/avlgate] the gateway measured; FLOOD_BIN [$BIN] the one that floods
#   (to measure an older gateway without `udp-flood`)

# The gateway's ports sit below the flood's source ports.
PORT=${PORT:-9027}
METRICS_PORT=${METRICS_PORT:-9102}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORTS=${PORTS:-50000}
FIRST_PORT=${FIRST_PORT:-10000}
# A phase twice: the second run shows whether anything stayed behind from the first.
PHASES=${PHASES:-garbage valid valid}
FLOOD_BIN=${FLOOD_BIN:-$BIN}
UDP_IDLE_SECS=${UDP_IDLE_SECS:-10}
SAMPLE_MS=${SAMPLE_MS:-100}
OUT=${OUT:-$ROOT/target/bench/udp-flood}
mkdir -p "$OUT"
if ((PORT >= FIRST_PORT && PORT < FIRST_PORT + PORTS)) || ((METRICS_PORT >= FIRST_PORT && METRICS_PORT < FIRST_PORT + PORTS)); then
    echo "PORT/METRICS_PORT inside the flood's source ports; move FIRST_PORT" >&2
    exit 2
fi

build
machine
# shellcheck disable=SC2086
RUST_LOG=${RUST_LOG:-warn} "$BIN" serve --sink stdout --listen "127.0.0.1:$PORT" \
    --metrics-listen "127.0.0.1:$METRICS_PORT" --udp-idle-timeout-secs "$UDP_IDLE_SECS" \
    --gateway-name bench $GATEWAY_ARGS >/dev/null 2>"$OUT/gateway.err" &
GW_PID=$!
PIDS+=("$GW_PID")
for _ in $(seq 300); do
    [[ "$(readyz)" == 200 ]] && break
    kill -0 "$GW_PID" 2>/dev/null || { cat "$OUT/gateway.err" >&2; exit 2; }
    sleep 0.1
done
[[ "$(readyz)" == 200 ]] || { echo "gateway not ready" >&2; exit 2; }
echo "gateway pid $GW_PID ready; UDP idle timeout ${UDP_IDLE_SECS} s; extra flags: ${GATEWAY_ARGS:-none}"

# sample FILE: RSS (KiB) and UDP peers, one line per SAMPLE_MS, until the file sample.stop exists.
sample() {
    local f=$1
    : >"$f"
    rm -f "$OUT/sample.stop"
    while [[ ! -e "$OUT/sample.stop" ]]; do
        echo "$(rss_kib "$GW_PID") $(metric avlgate_udp_peers)" >>"$f"
        sleep "$(awk -v ms="$SAMPLE_MS" 'BEGIN { print ms / 1000 }')"
    done
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

printf '%-8s %8s %12s %12s %11s %10s %14s %14s\n' phase ports rss_before peak_rss peak_peers dropped rss_after_5s rss_after_idle | tee "$OUT/summary.txt"
for kind in $PHASES; do
    rss_before=$(rss_kib "$GW_PID")
    dropped_before=$(metric avlgate_udp_datagrams_dropped_total)
    sample "$OUT/samples.txt" &
    SAMPLER=$!
    PIDS+=("$SAMPLER")
    "$FLOOD_BIN" udp-flood --target "127.0.0.1:$PORT" --first-port "$FIRST_PORT" --ports "$PORTS" \
        --kind "$kind" | tee "$OUT/flood-$kind.txt" >&2
    sleep 5
    rss_5s=$(rss_kib "$GW_PID")
    # Identified peers leave after the UDP idle timeout; give the sweep a second more.
    sleep "$((UDP_IDLE_SECS + 2))"
    rss_idle=$(rss_kib "$GW_PID")
    touch "$OUT/sample.stop"
    wait "$SAMPLER" 2>/dev/null || true
    peak_rss=$(awk '$1 > m { m = $1 } END { print m + 0 }' "$OUT/samples.txt")
    peak_peers=$(awk '$2 > m { m = $2 } END { print m + 0 }' "$OUT/samples.txt")
    dropped=$(($(metric avlgate_udp_datagrams_dropped_total) - ${dropped_before:-0}))
    printf '%-8s %8s %12s %12s %11s %10s %14s %14s\n' "$kind" "$PORTS" "$(mib "$rss_before") MiB" \
        "$(mib "$peak_rss") MiB" "$peak_peers" "$dropped" "$(mib "$rss_5s") MiB" "$(mib "$rss_idle") MiB" |
        tee -a "$OUT/summary.txt"
done
echo "peers now: $(metric avlgate_udp_peers); gateway stderr: $OUT/gateway.err"
kill -TERM "$GW_PID" 2>/dev/null || true
wait "$GW_PID" 2>/dev/null || true
