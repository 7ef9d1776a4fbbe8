#!/usr/bin/env bash
# End-to-end load run: `avlgate simulate` -> `avlgate serve --sink kafka` -> a real Kafka-compatible
# broker (tansu, memory storage; BROKER=mock for librdkafka's mock cluster), then, in the same run
# and against the same broker, the direct-producer baseline (`avlgate kafka-produce-bench`)
# producing the same number of the gateway's own encoded events (sampled back from
# avlgate.events) with the gateway's producer settings. Prints both rates, their ratio, the
# gateway's CPU per record, simulate's ACK latency, and the records counted on the broker by
# reading them back. Everything on 127.0.0.1. See docs/load-runs.md.
#
# Environment (defaults in brackets):
#   PROTOCOL [teltonika8e]  DEVICES [1000]  RECORDS_PER_FRAME [50]  INTERVAL_MS [100]
#   DURATION_SECS [20]  BROKER [tansu|mock]  BROKERS [3, mock only]  PARTITIONS [12]  PORT [15027]  METRICS_PORT [19102]
#   SOURCE_IPS [127.0.0.2-127.0.0.101]  SIM_ARGS [""] (more simulate flags)  GATEWAY_ARGS [""]  BUILD [1: cargo build --release first]  OUT [target/bench/e2e-kafka]
#   BASELINE_MESSAGES [records the gateway delivered]  BASELINE_ARGS [""] (more kafka-produce-bench
#   flags; give it the same --kafka-option as GATEWAY_ARGS to keep the settings equal)
#   BASELINE_BIN [BIN] (the binary whose kafka-produce-bench runs the baseline: the allocator
#   librdkafka uses is the binary's, see the malloc-override feature in Cargo.toml)
# The offered load is DEVICES * RECORDS_PER_FRAME * 1000 / INTERVAL_MS records/s; each device
# waits for its ACK before its next frame, so an offer above what the gateway sustains
# measures its maximum rate.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROTOCOL=${PROTOCOL:-teltonika8e}
DEVICES=${DEVICES:-1000}
RECORDS_PER_FRAME=${RECORDS_PER_FRAME:-50}
INTERVAL_MS=${INTERVAL_MS:-100}
DURATION_SECS=${DURATION_SECS:-20}
OUT=${OUT:-$ROOT/target/bench/e2e-kafka}
# The gateway limits connections per source address (5000 open, 200 new per second by
# default): spread the devices over loopback addresses as a real fleet is spread over NATs.
SOURCE_IPS=${SOURCE_IPS:-127.0.0.2-127.0.0.101}
SIM_ARGS=${SIM_ARGS:-}
BASELINE_ARGS=${BASELINE_ARGS:-}
BASELINE_BIN=${BASELINE_BIN:-$BIN}
mkdir -p "$OUT"

build
machine
start_broker "$OUT"
echo "broker: $BROKER at $BOOTSTRAP ($PARTITIONS partitions per topic)"
start_gateway "$OUT"
echo "gateway pid $GW_PID ready on 127.0.0.1:$PORT (metrics 127.0.0.1:$METRICS_PORT)"

offered=$((DEVICES * RECORDS_PER_FRAME * 1000 / INTERVAL_MS))
echo "simulate: $PROTOCOL, $DEVICES devices x $RECORDS_PER_FRAME records every $INTERVAL_MS ms (offered $offered records/s) for $DURATION_SECS s"
gw_cpu0=$(cpu_ticks "$GW_PID")
broker_cpu0=$(cpu_ticks "$BROKER_PID")
"$BIN" simulate --target "127.0.0.1:$PORT" --protocol "$PROTOCOL" --devices "$DEVICES" \
    --records-per-frame "$RECORDS_PER_FRAME" --interval-ms "$INTERVAL_MS" \
    --duration-secs "$DURATION_SECS" --source-ips "$SOURCE_IPS" $SIM_ARGS --json >"$OUT/simulate.json" 2>"$OUT/simulate.err" &
SIM_PID=$!
PIDS+=("$SIM_PID")
# Per-thread CPU of the gateway in the middle of the run (where the time goes).
sleep $((DURATION_SECS / 2))
top -H -b -n 2 -d 2 -p "$GW_PID" 2>/dev/null | awk '/^top -/ {n++} n == 2' | head -25 >"$OUT/gateway-threads.txt" || true
top -b -n 2 -d 2 2>/dev/null | awk '/^top -/ {n++} n == 2' | head -20 >"$OUT/top.txt" || true
# The simulator's CPU time, read while it still runs.
sim_ticks=0
while kill -0 "$SIM_PID" 2>/dev/null; do
    t=$(cpu_ticks "$SIM_PID")
    ((t > 0)) && sim_ticks=$t
    sleep 0.5
done
sim_rc=0
wait "$SIM_PID" || sim_rc=$?
gw_cpu1=$(cpu_ticks "$GW_PID")
broker_cpu1=$(cpu_ticks "$BROKER_PID")
gw_rss=$(rss_kib "$GW_PID")
delivered=$(metric avlgate_sink_delivered_records_total)
stop_gateway

hz=$(getconf CLK_TCK)
elapsed=$(json_field "$OUT/simulate.json" "d['elapsed_secs']")
acked=$(json_field "$OUT/simulate.json" "d['records_acked']")
gw_rate=$(json_field "$OUT/simulate.json" "round(d['records_per_sec'])")
p50=$(json_field "$OUT/simulate.json" "d['ack_latency_ms']['p50']")
p99=$(json_field "$OUT/simulate.json" "d['ack_latency_ms']['p99']")
errors=$(json_field "$OUT/simulate.json" "d['ack_errors'] + d['ack_timeouts']")

# Steady rate: the median of simulate's per-second acknowledged records over the second half
# of the run (the whole-run rate above includes the ramp-up).
steady=$(python3 -c '
import re, sys
v = [int(m) for m in re.findall(r"records acked \d+ \(\+(\d+)/s\)", open(sys.argv[1]).read())]
h = sorted(v[len(v) // 2:]) or [0]
print(h[(len(h) - 1) // 2])' "$OUT/simulate.err")
echo "gateway run: $acked records acknowledged in ${elapsed} s = $gw_rate records/s; ACK latency p50 ${p50} ms, p99 ${p99} ms; ACK errors+timeouts $errors; simulate exit $sim_rc; broker-confirmed (metric) $delivered; steady (median per second, second half) $steady records/s"
awk -v g="$gw_cpu0" -v G="$gw_cpu1" -v m="$broker_cpu0" -v M="$broker_cpu1" -v bk="$BROKER" -v s="$sim_ticks" -v hz="$hz" -v e="$elapsed" -v rss="$gw_rss" \
    'BEGIN { printf "CPU over the run (%% of one core): gateway %.0f, simulate %.0f (incl. ramp-up and end), broker (%s) %.0f; gateway RSS at the end %.0f MiB\n", (G-g)/hz/e*100, s/hz/e*100, bk, (M-m)/hz/e*100, rss/1024 }'

if [[ "$BROKER" == tansu ]]; then
    gw_counted=$(count_records avlgate.events)
    echo "on the broker: avlgate.events holds $gw_counted records (read back; the simulator's acknowledged records plus one session-opened event per device)"
fi

BASELINE_MESSAGES=${BASELINE_MESSAGES:-$acked}
echo "baseline: $BASELINE_MESSAGES of the gateway's events (sampled from avlgate.events) -> avlgate.baseline, by $BASELINE_BIN"
TIMEFORMAT='%U %S'
{ time "$BASELINE_BIN" kafka-produce-bench --brokers "$BOOTSTRAP" --topic avlgate.baseline \
    --messages "$BASELINE_MESSAGES" --sample-from avlgate.events --sample 50000 $BASELINE_ARGS --json >"$OUT/baseline.json" 2>"$OUT/baseline.err"; } 2>"$OUT/baseline.time"
if [[ "$BROKER" == tansu ]]; then
    echo "on the broker: avlgate.baseline holds $(count_records avlgate.baseline) records (read back)"
fi
base_cpu=$(awk '{ print $1 + $2 }' "$OUT/baseline.time")
base_rate=$(json_field "$OUT/baseline.json" "round(d['records_per_sec'])")
echo "baseline: $(json_field "$OUT/baseline.json" "'%d delivered, %d failed, %d keys, %.0f B payloads, %.2f s' % (d['delivered'], d['failed'], d['distinct_keys'], d['avg_payload_bytes'], d['elapsed_secs'])") = $base_rate records/s"
awk -v g="$gw_cpu0" -v G="$gw_cpu1" -v hz="$hz" -v a="$acked" -v c="$base_cpu" -v n="$BASELINE_MESSAGES" \
    'BEGIN { printf "CPU per record: gateway %.1f us (serve process), baseline producer %.1f us (whole process, sampling included)\n", (G-g)/hz/a*1e6, c/n*1e6 }'
awk -v g="$gw_rate" -v s="$steady" -v b="$base_rate" 'BEGIN { printf "ratio gateway/baseline: %.2f over the whole run, %.2f steady (target >= 0.6); gateway %s records/s whole run, %s steady (target >= 100000)\n", g/b, s/b, g, s }'
# What the ratio can be on this host at best: the simulator and the broker share the cores with
# the gateway (not with the baseline), so even a gateway that cost no more CPU per record than
# librdkafka alone would be limited to cores / (simulator + broker + baseline CPU per record).
# A model from this run's own figures, not a measurement.
awk -v cores="$(nproc)" -v s="$sim_ticks" -v m="$broker_cpu0" -v M="$broker_cpu1" -v hz="$hz" -v a="$acked" -v c="$base_cpu" -v n="$BASELINE_MESSAGES" -v b="$base_rate" \
    'BEGIN { sim = s/hz/a*1e6; brk = (M-m)/hz/a*1e6; base = c/n*1e6; top = cores*1e6/(sim+brk+base);
             printf "ceiling on this host (model): simulate %.1f + broker %.1f + librdkafka alone %.1f us per record on %d cores = %.0f records/s at most, a ratio of %.2f, for a gateway that cost only what librdkafka alone costs\n", sim, brk, base, cores, top, top/b }'
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "files: $OUT/{simulate.json,baseline.json,gateway-threads.txt,top.txt,gateway.err}"
