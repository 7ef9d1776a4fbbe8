# Shared by the bench/ scripts: build, start a Kafka endpoint and the gateway against it,
# everything on 127.0.0.1, and clean up on exit. The endpoint is `BROKER`:
# - `tansu` (default for the load runs): a real Kafka-compatible broker process, tansu 0.6.0
#   with memory storage, as the test suite runs it (tests/common/tansu.rs); records are counted
#   on it by reading them back (`avlgate kafka-topics --count`);
# - `mock`: `avlgate kafka-mock`, librdkafka's in-memory mock cluster (a development tool, not
#   a broker), for the runs that inject faults (bench/outage-kafka.sh). It numbers offsets per
#   batch, so nothing is counted by offsets on it.
# shellcheck shell=bash

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/avlgate}
# The gateway under test (`avlgate serve`); the tools (simulate, kafka-topics,
# kafka-produce-bench) are always BIN. GW_BIN=/path/to/older/avlgate compares versions.
GW_BIN=${GW_BIN:-$BIN}
BROKERS=${BROKERS:-3}
PARTITIONS=${PARTITIONS:-12}
PORT=${PORT:-15027}
METRICS_PORT=${METRICS_PORT:-19102}
BUILD=${BUILD:-1}
BROKER=${BROKER:-tansu}
TANSU=${AVLGATE_TANSU:-${XDG_CACHE_HOME:-$HOME/.cache}/avlgate-tansu/bin/tansu}
TANSU_PORT=${TANSU_PORT:-19092}
TOPICS=(avlgate.events avlgate.commands avlgate.command-results avlgate.sessions avlgate.baseline)
# Extra `avlgate serve` flags, e.g. "--max-in-flight-records 5000".
GATEWAY_ARGS=${GATEWAY_ARGS:-}

PIDS=()
cleanup() {
    # Only what this script started, by pid.
    if [[ -n "${MOCK_FD_OPEN:-}" ]]; then
        echo quit >&3 2>/dev/null || true
        exec 3>&- || true
    fi
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

build() {
    if [[ "$BUILD" == 1 ]]; then
        (cd "$ROOT" && cargo build --release --quiet)
    fi
    [[ -x "$BIN" ]] || { echo "no binary at $BIN" >&2; exit 2; }
}

machine() {
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# start_broker OUTDIR: the endpoint named by BROKER; sets BOOTSTRAP and BROKER_PID.
start_broker() {
    case "$BROKER" in
        tansu) start_tansu "$1" ;;
        mock)
            start_mock "$1"
            BROKER_PID=$MOCK_PID
            ;;
        *)
            echo "BROKER must be tansu or mock, not $BROKER" >&2
            exit 2
            ;;
    esac
}

# start_tansu OUTDIR: tansu on 127.0.0.1:TANSU_PORT, memory storage, the topics created with
# PARTITIONS partitions each (the same command line as tests/common/tansu.rs).
start_tansu() {
    local out=$1 url="tcp://127.0.0.1:$TANSU_PORT" t args=()
    [[ -x "$TANSU" ]] || { echo "no tansu at $TANSU (.ci/run installs it; or set AVLGATE_TANSU)" >&2; exit 2; }
    env -u OTEL_EXPORTER_OTLP_ENDPOINT "$TANSU" broker --listener-url "$url" --advertised-listener-url "$url" \
        --storage-engine memory://tansu/ </dev/null >"$out/tansu.log" 2>&1 &
    BROKER_PID=$!
    PIDS+=("$BROKER_PID")
    for _ in $(seq 200); do
        (exec 9<>"/dev/tcp/127.0.0.1/$TANSU_PORT") 2>/dev/null && break
        kill -0 "$BROKER_PID" 2>/dev/null || { cat "$out/tansu.log" >&2; exit 2; }
        sleep 0.05
    done
    BOOTSTRAP=127.0.0.1:$TANSU_PORT
    for t in "${TOPICS[@]}"; do args+=(--create "$t:$PARTITIONS"); done
    "$BIN" kafka-topics --brokers "$BOOTSTRAP" "${args[@]}"
}

# count_records TOPIC: records of TOPIC on the broker, read back (tansu only).
count_records() {
    "$BIN" kafka-topics --brokers "$BOOTSTRAP" --count "$1" 2>/dev/null | tee -a "$OUT/counts.txt" | sed -n 's/.* records=\([0-9]*\).*/\1/p'
}

# start_mock OUTDIR [extra kafka-mock args]: sets BOOTSTRAP and fd 3 (commands to the mock).
start_mock() {
    local out=$1
    shift
    rm -f "$out/mock.in" "$out/bootstrap"
    mkfifo "$out/mock.in"
    "$BIN" kafka-mock --brokers "$BROKERS" \
        --topic "avlgate.events:$PARTITIONS" --topic "avlgate.commands:$PARTITIONS" \
        --topic "avlgate.command-results:$PARTITIONS" --topic "avlgate.sessions:$PARTITIONS" \
        --topic "avlgate.baseline:$PARTITIONS" \
        --listen-file "$out/bootstrap" "$@" <"$out/mock.in" >"$out/mock.out" 2>"$out/mock.err" &
    MOCK_PID=$!
    PIDS+=("$MOCK_PID")
    exec 3>"$out/mock.in"
    MOCK_FD_OPEN=1
    for _ in $(seq 100); do
        [[ -s "$out/bootstrap" ]] && break
        sleep 0.1
    done
    BOOTSTRAP=$(sed -n 's/^bootstrap=//p' "$out/bootstrap")
    [[ -n "$BOOTSTRAP" ]] || { echo "kafka-mock did not start" >&2; cat "$out/mock.err" >&2; exit 2; }
}

# mock_cmd OUTDIR "down all": sends a command and waits for its answer line.
mock_cmd() {
    local out=$1 cmd=$2 before
    before=$(wc -l <"$out/mock.out")
    echo "$cmd" >&3
    for _ in $(seq 100); do
        (($(wc -l <"$out/mock.out") > before)) && break
        sleep 0.05
    done
    tail -n 1 "$out/mock.out"
}

# start_gateway OUTDIR: sets GW_PID; waits until /readyz answers 200.
start_gateway() {
    local out=$1
    # shellcheck disable=SC2086
    RUST_LOG=${RUST_LOG:-warn} "$GW_BIN" serve --sink kafka --kafka-brokers "$BOOTSTRAP" \
        --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$METRICS_PORT" \
        --gateway-name bench $GATEWAY_ARGS >"$out/gateway.out" 2>"$out/gateway.err" &
    GW_PID=$!
    PIDS+=("$GW_PID")
    for _ in $(seq 300); do
        if [[ "$(readyz)" == 200 ]]; then return 0; fi
        kill -0 "$GW_PID" 2>/dev/null || { cat "$out/gateway.err" >&2; exit 2; }
        sleep 0.1
    done
    echo "gateway not ready after 30 s" >&2
    exit 2
}

readyz() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$METRICS_PORT/readyz" || true
}

# metric NAME: the sum of a metric's samples on /metrics (empty if unreachable).
metric() {
    curl -s --max-time 1 "http://127.0.0.1:$METRICS_PORT/metrics" |
        awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2; f = 1 } END { if (f) printf "%.0f\n", s }'
}

rss_kib() {
    awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || true
}

# cpu_ticks PID: user+system clock ticks used so far.
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}

stop_gateway() {
    kill -TERM "$GW_PID" 2>/dev/null || true
    wait "$GW_PID" 2>/dev/null || true
}

json_field() { # json_field FILE python-expression-on-d
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"
}
