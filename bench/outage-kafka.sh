#!/usr/bin/env bash
# Kafka outage under steady load: `avlgate simulate` -> `avlgate serve --sink kafka` -> Kafka
# mock cluster; after WARM_SECS every mock broker goes down for OUTAGE_SECS, then comes back.
# Samples the gateway every SAMPLE_MS (a table row per second): RSS, records in flight,
# /readyz, sink connected, ACKs sent, and simulate's acknowledged records. Reports records in
# flight at the bound, peak RSS during the outage vs before it, the time from `up all` until
# ACKs resume and until the in-flight records drained, and simulate's verdict (no wrong ACK,
# no frame left unacknowledged). Everything on 127.0.0.1. See docs/load-runs.md.
#
# Environment (defaults in brackets):
#   PROTOCOL [teltonika8e]  DEVICES [3000]  RECORDS_PER_FRAME [10]  INTERVAL_MS [3000]
#   WARM_SECS [15]  OUTAGE_SECS [20]  RECOVER_SECS [30]  SAMPLE_MS [250]
#   BROKERS [3]  PARTITIONS [12]  PORT [15027]  METRICS_PORT [19102]
#   SOURCE_IPS [127.0.0.2-127.0.0.101]  SIM_ARGS [""] (more simulate flags)  GATEWAY_ARGS [""] (e.g. "--max-in-flight-records 5000")  BUILD [1]
#   OUT [target/bench/outage-kafka]

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROTOCOL=${PROTOCOL:-teltonika8e}
DEVICES=${DEVICES:-3000}
RECORDS_PER_FRAME=${RECORDS_PER_FRAME:-10}
INTERVAL_MS=${INTERVAL_MS:-3000}
WARM_SECS=${WARM_SECS:-15}
OUTAGE_SECS=${OUTAGE_SECS:-20}
RECOVER_SECS=${RECOVER_SECS:-30}
SAMPLE_MS=${SAMPLE_MS:-250}
OUT=${OUT:-$ROOT/target/bench/outage-kafka}
# The gateway limits connections per source address (5000 open, 200 new per second by
# default): spread the devices over loopback addresses as a real fleet is spread over NATs.
SOURCE_IPS=${SOURCE_IPS:-127.0.0.2-127.0.0.101}
SIM_ARGS=${SIM_ARGS:-}
mkdir -p "$OUT"

build
machine
start_mock "$OUT"
echo "kafka-mock: $BOOTSTRAP ($BROKERS brokers)"
start_gateway "$OUT"
echo "gateway pid $GW_PID ready; extra flags: ${GATEWAY_ARGS:-none}"
rss_idle=$(rss_kib "$GW_PID")

total=$((WARM_SECS + OUTAGE_SECS + RECOVER_SECS))
echo "simulate: $PROTOCOL, $DEVICES devices x $RECORDS_PER_FRAME records every $INTERVAL_MS ms for $total s; outage from ${WARM_SECS} s to $((WARM_SECS + OUTAGE_SECS)) s"
"$BIN" simulate --target "127.0.0.1:$PORT" --protocol "$PROTOCOL" --devices "$DEVICES" \
    --records-per-frame "$RECORDS_PER_FRAME" --interval-ms "$INTERVAL_MS" \
    --duration-secs "$total" --source-ips "$SOURCE_IPS" $SIM_ARGS --json >"$OUT/simulate.json" 2>"$OUT/simulate.err" &
SIM_PID=$!
PIDS+=("$SIM_PID")

sim_acked() {
    { grep -o 'records acked [0-9]*' "$OUT/simulate.err" 2>/dev/null || true; } | tail -n 1 | awk '{print $3}'
}
now_ms() { date +%s%3N; }

start=$(now_ms)
phase=warm
down_at=""
up_at=""
printf '%7s %-7s %9s %10s %7s %9s %11s %13s\n' t_s phase rss_MiB in_flight readyz connected acks_sent sim_rec_acked | tee "$OUT/samples.txt"
echo "t_ms,phase,rss_kib,in_flight_records,readyz,sink_connected,acks_sent,sim_records_acked" >"$OUT/samples.csv"
last_row=-1
while kill -0 "$SIM_PID" 2>/dev/null; do
    t=$(($(now_ms) - start))
    if [[ $phase == warm && $t -ge $((WARM_SECS * 1000)) ]]; then
        echo "# $(mock_cmd "$OUT" "down all") at ${t} ms" | tee -a "$OUT/samples.txt"
        down_at=$t
        phase=outage
    elif [[ $phase == outage && $t -ge $((WARM_SECS * 1000 + OUTAGE_SECS * 1000)) ]]; then
        echo "# $(mock_cmd "$OUT" "up all") at ${t} ms" | tee -a "$OUT/samples.txt"
        up_at=$t
        phase=recover
    fi
    rss=$(rss_kib "$GW_PID")
    # One scrape per sample: in-flight records, sink connected, ACKs sent.
    read -r infl conn acks < <(curl -s --max-time 1 "http://127.0.0.1:$METRICS_PORT/metrics" | awk '
        $1 == "avlgate_sink_in_flight_records" { i = $2 }
        $1 == "avlgate_sink_connected" { c = $2 }
        $1 ~ /^avlgate_acks_sent_total/ { a += $2; fa = 1 }
        END { printf "%s %s %s\n", (i == "" ? "-" : i), (c == "" ? "-" : c), (fa ? a : "-") }') || true
    rz=$(readyz)
    sa=$(sim_acked)
    echo "$t,$phase,$rss,${infl/-/},$rz,${conn/-/},${acks/-/},$sa" >>"$OUT/samples.csv"
    if ((t / 1000 != last_row)); then
        last_row=$((t / 1000))
        printf '%5d.%01d %-7s %9d %10s %7s %9s %11s %13s\n' $((t / 1000)) $((t % 1000 / 100)) "$phase" \
            $((${rss:-0} / 1024)) "${infl:--}" "$rz" "${conn:--}" "${acks:--}" "${sa:--}" | tee -a "$OUT/samples.txt"
    fi
    sleep "$((SAMPLE_MS / 1000)).$(printf '%03d' $((SAMPLE_MS % 1000)))"
done
sim_rc=0
wait "$SIM_PID" || sim_rc=$?
stop_gateway

python3 - "$OUT/samples.csv" "$OUT/simulate.json" "$down_at" "$up_at" "$rss_idle" "$sim_rc" "$GATEWAY_ARGS" <<'PY'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
sim = json.load(open(sys.argv[2]))
down, up = int(sys.argv[3]), int(sys.argv[4])
rss_idle, sim_rc, gw_args = int(sys.argv[5] or 0), int(sys.argv[6]), sys.argv[7]
num = lambda v: float(v) if v not in ("", None) else None
for r in rows:
    r["t"] = int(r["t_ms"])
    for k in ("rss_kib", "in_flight_records", "acks_sent", "sim_records_acked"):
        r[k] = num(r[k])
warm = [r for r in rows if r["t"] < down and r["t"] >= down - 5000]
outage = [r for r in rows if down <= r["t"] < up]
after = [r for r in rows if r["t"] >= up]
mx = lambda rs, k: max((r[k] for r in rs if r[k] is not None), default=float("nan"))
steady_inflight = mx(warm, "in_flight_records")
words = gw_args.split()
bound = next((f"--max-in-flight-records {b}" for a, b in zip(words, words[1:]) if a == "--max-in-flight-records"), "default --max-in-flight-records 20000")
print(f"in flight before the outage (max of the last 5 s): {steady_inflight:.0f} records")
print(f"in flight during the outage (max): {mx(outage, 'in_flight_records'):.0f} records (bound: {bound})")
print(f"gateway RSS: idle {rss_idle/1024:.1f} MiB, before the outage (max of the last 5 s) {mx(warm, 'rss_kib')/1024:.1f} MiB, peak during the outage {mx(outage, 'rss_kib')/1024:.1f} MiB, peak after {mx(after, 'rss_kib')/1024:.1f} MiB")
rz = [r["readyz"] for r in outage]
print(f"/readyz during the outage: {', '.join(f'{c} x{rz.count(c)}' for c in sorted(set(rz)))}; first non-200 after {next((r['t'] - down for r in outage if r['readyz'] != '200'), 'never'):} ms")
acks_at_up = next((r["acks_sent"] for r in after if r["acks_sent"] is not None), None)
resume = next((r["t"] - up for r in after if r["acks_sent"] is not None and acks_at_up is not None and r["acks_sent"] > acks_at_up), None)
# ACKs during the outage (frames already delivered just before the outage may still be ACKed).
a0 = next((r["acks_sent"] for r in outage if r["acks_sent"] is not None), None)
a1 = next((r["acks_sent"] for r in reversed(outage) if r["acks_sent"] is not None), None)
print(f"ACKs sent during the outage: {(a1 - a0) if a0 is not None and a1 is not None else 'n/a':}")
gaps = sorted(b["t"] - a["t"] for a, b in zip(rows, rows[1:])) or [0]
print(f"ACKs resume {resume} ms after 'up all' (median sampling interval {gaps[len(gaps) // 2]} ms)")
drain = next((r["t"] - up for r in after if r["in_flight_records"] is not None and r["in_flight_records"] <= max(steady_inflight, 0) and r["t"] - up > 0), None)
print(f"in flight back to the pre-outage level {drain} ms after 'up all'")
ready_back = next((r["t"] - up for r in after if r["readyz"] == "200"), None)
print(f"/readyz 200 again {ready_back} ms after 'up all'")
s = sim
lat = s["ack_latency_ms"]
print(f"simulate: {s['devices_connected']}/{s['devices']} devices, frames sent {s['frames_sent']}, acked {s['frames_acked']}, unacked {s['frames_unacked']}, records acked {s['records_acked']}; "
      f"ACK errors {s['ack_errors']}, ACK timeouts {s['ack_timeouts']}, retransmits {s['retransmits']}, unexpected replies {s['unexpected_replies']}, disconnects {s['disconnects']}; "
      f"ACK latency p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms; exit {sim_rc}")
ok = s["ack_errors"] == 0 and s["frames_unacked"] == 0
print("verdict: " + ("no wrong ACK and every frame acknowledged in the end" if ok else "FAILED: wrong ACKs or frames left unacknowledged"))
PY
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "files: $OUT/{samples.csv,samples.txt,simulate.json,gateway.err}"
