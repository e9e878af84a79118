#!/usr/bin/env bash
# Benchmark of kvd against etcd 3.4 (--enable-v2) on the v2 keys API. Run by hand, not in CI;
# see bench/README.md. Starts one single-member kvd and one single-member etcd on free 127.0.0.1
# ports, data dirs side by side on one disk, and runs every workload on both, interleaved:
#   reads    GET one key, $CONNS connections (wrk)
#   writes   PUT /v2/keys/bench/<distinct key> value=..., $CONNS connections (wrk + Lua)
#   latency  the same writes on one connection (wrk -t1 -c1)
# Each round runs each workload on both servers back to back, the order alternating between
# rounds; the table shows the median over rounds. Servers are killed by PID on exit.
#
# Environment (defaults in brackets):
#   KVD_BIN [build/server/kvd]  ETCD_BIN [/usr/bin/etcd]  ROUNDS [5]  DURATION [10] seconds per
#   run  CONNS [64]  THREADS [2] wrk threads  VALUE_BYTES [64]  BENCH_DIR [/var/tmp] parent of
#   the data dirs  KEEP [0] 1 keeps the work dir (logs, raw results).
# KVD_BIN=/usr/bin/etcd compares etcd with itself, which checks the script and the noise level.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KVD_BIN="${KVD_BIN:-$REPO_DIR/build/server/kvd}"
ETCD_BIN="${ETCD_BIN:-/usr/bin/etcd}"
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-10}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-2}"
VALUE_BYTES="${VALUE_BYTES:-64}"
BENCH_DIR="${BENCH_DIR:-/var/tmp}"
KEEP="${KEEP:-0}"

die() { echo "bench: $*" >&2; exit 2; }

for tool in wrk curl python3 bc; do
  command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install $tool)"
done
[[ -x "$ETCD_BIN" ]] || die "etcd not found at $ETCD_BIN (apt-get install etcd-server, or set ETCD_BIN)"
if [[ ! -x "$KVD_BIN" ]]; then
  die "kvd binary not found at $KVD_BIN: build it (ninja -C build kvd) or set KVD_BIN" \
      "(KVD_BIN=$ETCD_BIN runs etcd against etcd)"
fi
for n in "$ROUNDS" "$DURATION" "$CONNS" "$THREADS" "$VALUE_BYTES"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS, DURATION, CONNS, THREADS and VALUE_BYTES must be positive integers"
done
(( THREADS <= CONNS )) || die "THREADS ($THREADS) must not exceed CONNS ($CONNS)"

WORK="$(mktemp -d "$BENCH_DIR/kvd-bench.XXXXXX")"
declare -A PID=()

cleanup() {
  local name pid i
  for name in "${!PID[@]}"; do
    pid="${PID[$name]}"
    kill -TERM "$pid" 2>/dev/null || continue
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ "$KEEP" == 1 ]]; then
    echo "bench: work dir kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Four distinct free ports, all held open while they are chosen.
read -r KVD_CLIENT KVD_PEER ETCD_CLIENT ETCD_PEER < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
)

# start_member NAME BINARY CLIENT_PORT PEER_PORT: same flags for both servers.
start_member() {
  local name=$1 bin=$2 client=$3 peer=$4
  local curl_url="http://127.0.0.1:$client" peer_url="http://127.0.0.1:$peer"
  "$bin" --name "$name" --data-dir "$WORK/$name.data" \
    --listen-client-urls "$curl_url" --advertise-client-urls "$curl_url" \
    --listen-peer-urls "$peer_url" --initial-advertise-peer-urls "$peer_url" \
    --initial-cluster "$name=$peer_url" --enable-v2 --log-level error \
    >"$WORK/$name.log" 2>&1 &
  PID[$name]=$!
}

# wait_ready NAME URL: until the keys API answers, at most 30 s.
wait_ready() {
  local name=$1 url=$2 i
  for ((i = 0; i < 300; i++)); do
    if ! kill -0 "${PID[$name]}" 2>/dev/null; then
      tail -n 20 "$WORK/$name.log" >&2
      die "$name exited during start-up (log above)"
    fi
    if curl -sf -o /dev/null --max-time 1 "$url/v2/keys/"; then return 0; fi
    sleep 0.1
  done
  tail -n 20 "$WORK/$name.log" >&2
  die "$name did not answer on $url within 30 s"
}

start_member kvd "$KVD_BIN" "$KVD_CLIENT" "$KVD_PEER"
start_member etcd "$ETCD_BIN" "$ETCD_CLIENT" "$ETCD_PEER"
declare -A URL=([kvd]="http://127.0.0.1:$KVD_CLIENT" [etcd]="http://127.0.0.1:$ETCD_CLIENT")
wait_ready kvd "${URL[kvd]}"
wait_ready etcd "${URL[etcd]}"

VALUE="$(head -c "$VALUE_BYTES" /dev/zero | tr '\0' x)"
for name in kvd etcd; do
  curl -sf -o /dev/null -X PUT "${URL[$name]}/v2/keys/bench-read" --data-urlencode "value=$VALUE" \
    || die "$name: could not create the read key"
done

# Every run prints one machine-readable line from done().
cat >"$WORK/report.lua" <<'EOF'
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.1f p50_us=%d p99_us=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
EOF
cat "$WORK/report.lua" >"$WORK/read.lua"
# Writes: keys bench/<run>-<thread>-<n>, distinct across threads, runs and rounds.
cat >"$WORK/write.lua" <<'EOF'
local next_thread = 0
function setup(thread)
  next_thread = next_thread + 1
  thread:set("tid", next_thread)
end
function init(args)
  run = args[1]
  body = "value=" .. string.rep("x", tonumber(args[2]))
  headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
  n = 0
end
function request()
  n = n + 1
  return wrk.format("PUT", "/v2/keys/bench/" .. run .. "-" .. tid .. "-" .. n, headers, body)
end
EOF
cat "$WORK/report.lua" >>"$WORK/write.lua"

RESULTS="$WORK/results.tsv"   # round, server, metric, value
: >"$RESULTS"

# run_wrk ROUND SERVER WORKLOAD
run_wrk() {
  local round=$1 name=$2 workload=$3 url="${URL[$2]}" out
  case "$workload" in
    reads)   out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s -s "$WORK/read.lua" \
                     "$url/v2/keys/bench-read") ;;
    writes)  out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s -s "$WORK/write.lua" \
                     "$url" -- "w$round" "$VALUE_BYTES") ;;
    latency) out=$(wrk -t1 -c1 -d"${DURATION}s" --timeout 10s -s "$WORK/write.lua" \
                     "$url" -- "l$round" "$VALUE_BYTES") ;;
  esac
  local line
  line=$(grep '^RESULT ' <<<"$out") || die "$name $workload: no result from wrk: $out"
  local rps p50 p99 errors
  rps=$(sed -E 's/.* rps=([^ ]+).*/\1/' <<<"$line")
  p50=$(sed -E 's/.* p50_us=([^ ]+).*/\1/' <<<"$line")
  p99=$(sed -E 's/.* p99_us=([^ ]+).*/\1/' <<<"$line")
  errors=$(sed -E 's/.* errors=([^ ]+).*/\1/' <<<"$line")
  printf 'round %d %-5s %-8s %10.1f req/s  p50 %8.3f ms  p99 %8.3f ms  errors %d\n' \
    "$round" "$name" "$workload" "$rps" "$(bc -l <<<"$p50/1000")" "$(bc -l <<<"$p99/1000")" \
    "$errors" >&2
  printf '%s\t%s\t%s_rps\t%s\n' "$round" "$name" "$workload" "$rps" >>"$RESULTS"
  printf '%s\t%s\t%s_p50_ms\t%s\n' "$round" "$name" "$workload" "$(bc -l <<<"$p50/1000")" >>"$RESULTS"
  printf '%s\t%s\t%s_p99_ms\t%s\n' "$round" "$name" "$workload" "$(bc -l <<<"$p99/1000")" >>"$RESULTS"
  printf '%s\t%s\t%s_errors\t%s\n' "$round" "$name" "$workload" "$errors" >>"$RESULTS"
}


echo "bench: kvd=$KVD_BIN etcd=$ETCD_BIN rounds=$ROUNDS duration=${DURATION}s conns=$CONNS" \
     "threads=$THREADS value=${VALUE_BYTES}B data=$WORK ($(df --output=source "$WORK" | tail -n 1))" >&2

for ((round = 1; round <= ROUNDS; round++)); do
  if (( round % 2 )); then order=(kvd etcd); else order=(etcd kvd); fi
  for workload in reads writes latency; do
    for name in "${order[@]}"; do
      run_wrk "$round" "$name" "$workload"
    done
  done
done

# median SERVER METRIC
median() {
  awk -F'\t' -v s="$1" -v m="$2" '$2 == s && $3 == m { print $4 }' "$RESULTS" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

row() {  # LABEL METRIC FORMAT
  local k e ratio
  k=$(median kvd "$2")
  e=$(median etcd "$2")
  if [[ $(bc -l <<<"$e == 0") == 1 ]]; then ratio="n/a"; else ratio=$(printf '%.2f' "$(bc -l <<<"$k / $e")"); fi
  printf "| %s | $3 | $3 | %s |\n" "$1" "$k" "$e" "$ratio"
}

total_errors() {
  awk -F'\t' -v s="$1" '$2 == s && $3 ~ /_errors$/ { t += $4 } END { print t + 0 }' "$RESULTS"
}

echo
echo "Medians over $ROUNDS rounds of ${DURATION}s; value ${VALUE_BYTES} bytes."
echo
echo "| metric | kvd | etcd | ratio kvd/etcd |"
echo "|---|---:|---:|---:|"
row "reads, $CONNS conns (req/s, higher is better)" reads_rps "%.0f"
row "reads, $CONNS conns, p99 latency (ms)" reads_p99_ms "%.2f"
row "writes, $CONNS conns (req/s, higher is better)" writes_rps "%.0f"
row "writes, $CONNS conns, p99 latency (ms)" writes_p99_ms "%.2f"
row "write latency, 1 conn, p50 (ms, lower is better)" latency_p50_ms "%.3f"
row "write latency, 1 conn, p99 (ms, lower is better)" latency_p99_ms "%.3f"
row "writes, 1 conn (req/s)" latency_rps "%.0f"
echo
kvd_errors=$(total_errors kvd)
etcd_errors=$(total_errors etcd)
if (( kvd_errors + etcd_errors > 0 )); then
  echo "WARNING: failed requests (non-2xx/3xx, timeouts, socket errors): kvd $kvd_errors, etcd $etcd_errors;" \
       "the numbers above are not comparable."
  exit 1
fi
