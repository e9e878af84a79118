#!/usr/bin/env bash
# Benchmark of kvd's proxy mode against etcd 3.4's (`etcd --proxy on`). Run by hand, not in CI.
# Starts a three-member kvd cluster with a kvd proxy in front and a three-member etcd cluster
# (--enable-v2) with an etcd proxy in front, all on free 127.0.0.1 ports, data dirs side by side,
# and runs every workload against four targets, interleaved:
#   kvd-proxy, kvd-direct (the member the kvd proxy forwards to), etcd-proxy, etcd-direct
# Workloads (wrk):
#   reads     GET one key, $CONNS connections
#   writes    PUT /v2/keys/bench/<distinct key>, $CONNS connections
#   read1     the reads on one connection (latency)
#   write1    the writes on one connection (latency)
# Each round runs each workload on every target back to back, the order rotating between rounds;
# the table shows medians over rounds: throughput, p50 latency, the latency a proxy adds over
# going to the member directly, and kvd's proxy against etcd's. Processes are killed by PID.
#
# Environment (defaults in brackets):
#   KVD_BIN [build/server/kvd]  ETCD_BIN [/usr/bin/etcd]  ROUNDS [3]  DURATION [5] seconds per
#   run  CONNS [64]  THREADS [2] wrk threads  VALUE_BYTES [64]  BENCH_DIR [/var/tmp]  KEEP [0]
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KVD_BIN="${KVD_BIN:-$REPO_DIR/build/server/kvd}"
ETCD_BIN="${ETCD_BIN:-/usr/bin/etcd}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
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
[[ -x "$KVD_BIN" ]] || die "kvd binary not found at $KVD_BIN: build it (ninja -C build kvd) or set KVD_BIN"
for n in "$ROUNDS" "$DURATION" "$CONNS" "$THREADS" "$VALUE_BYTES"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS, DURATION, CONNS, THREADS and VALUE_BYTES must be positive integers"
done
(( THREADS <= CONNS )) || die "THREADS ($THREADS) must not exceed CONNS ($CONNS)"

WORK="$(mktemp -d "$BENCH_DIR/kvd-bench-proxy.XXXXXX")"
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
  if [[ "$KEEP" == 1 ]]; then echo "bench: work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 14 distinct free ports, all held open while they are chosen.
read -r -a PORTS < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(14)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
)

# start_cluster KIND BINARY FIRST_PORT_INDEX: three members and a proxy; sets URL[KIND-proxy].
declare -A URL=()
start_cluster() {
  local kind=$1 bin=$2 base=$3 i cluster="" name
  for i in 0 1 2; do
    cluster+="${cluster:+,}$kind$i=http://127.0.0.1:${PORTS[base + 2 * i + 1]}"
  done
  for i in 0 1 2; do
    name="$kind$i"
    local c="http://127.0.0.1:${PORTS[base + 2 * i]}" p="http://127.0.0.1:${PORTS[base + 2 * i + 1]}"
    "$bin" --name "$name" --data-dir "$WORK/$name.data" \
      --listen-client-urls "$c" --advertise-client-urls "$c" \
      --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" \
      --initial-cluster "$cluster" --initial-cluster-token "bench-$kind" \
      --initial-cluster-state new --enable-v2 --log-level error >"$WORK/$name.log" 2>&1 &
    PID[$name]=$!
  done
  local proxy="http://127.0.0.1:${PORTS[base + 6]}"
  "$bin" --proxy on --data-dir "$WORK/$kind-proxy.data" --listen-client-urls "$proxy" \
    --initial-cluster "$cluster" --log-level error >"$WORK/$kind-proxy.log" 2>&1 &
  PID[$kind-proxy]=$!
  URL[$kind-proxy]=$proxy
}

# wait_write NAME URL: until a write through URL succeeds, at most 60 s.
wait_write() {
  local name=$1 url=$2 i
  for ((i = 0; i < 600; i++)); do
    if curl -sf -o /dev/null --max-time 2 -X PUT "$url/v2/keys/bench-read" \
         --data-urlencode "value=$VALUE"; then return 0; fi
    sleep 0.1
  done
  tail -n 20 "$WORK/$name.log" >&2
  die "$name did not accept a write on $url within 60 s"
}

VALUE="$(head -c "$VALUE_BYTES" /dev/zero | tr '\0' x)"
start_cluster kvd "$KVD_BIN" 0
start_cluster etcd "$ETCD_BIN" 7
for kind in kvd etcd; do
  wait_write "$kind-proxy" "${URL[$kind-proxy]}"
  # Direct: the member the proxy forwards to (the first endpoint it lists).
  direct=$(curl -sf "${URL[$kind-proxy]}/v2/config/local/proxy" |
           python3 -c 'import json,sys; print(json.load(sys.stdin)["endpoints"][0])')
  URL[$kind-direct]=$direct
  wait_write "$kind-direct" "$direct"
done

cat >"$WORK/report.lua" <<'EOF'
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.1f p50_us=%d p99_us=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
EOF
cat "$WORK/report.lua" >"$WORK/read.lua"
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

RESULTS="$WORK/results.tsv"   # round, target, metric, value
: >"$RESULTS"

run_wrk() {  # ROUND TARGET WORKLOAD
  local round=$1 target=$2 workload=$3 url="${URL[$2]}" out
  case "$workload" in
    reads)  out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s -s "$WORK/read.lua" "$url/v2/keys/bench-read") ;;
    writes) out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s -s "$WORK/write.lua" "$url" -- "w$round-$target" "$VALUE_BYTES") ;;
    read1)  out=$(wrk -t1 -c1 -d"${DURATION}s" --timeout 10s -s "$WORK/read.lua" "$url/v2/keys/bench-read") ;;
    write1) out=$(wrk -t1 -c1 -d"${DURATION}s" --timeout 10s -s "$WORK/write.lua" "$url" -- "l$round-$target" "$VALUE_BYTES") ;;
  esac
  local line rps p50 p99 errors
  line=$(grep '^RESULT ' <<<"$out") || die "$target $workload: no result from wrk: $out"
  rps=$(sed -E 's/.* rps=([^ ]+).*/\1/' <<<"$line")
  p50=$(sed -E 's/.* p50_us=([^ ]+).*/\1/' <<<"$line")
  p99=$(sed -E 's/.* p99_us=([^ ]+).*/\1/' <<<"$line")
  errors=$(sed -E 's/.* errors=([^ ]+).*/\1/' <<<"$line")
  printf 'round %d %-11s %-7s %10.1f req/s  p50 %8.3f ms  p99 %8.3f ms  errors %d\n' \
    "$round" "$target" "$workload" "$rps" "$(bc -l <<<"$p50/1000")" "$(bc -l <<<"$p99/1000")" "$errors" >&2
  printf '%s\t%s\t%s_rps\t%s\n' "$round" "$target" "$workload" "$rps" >>"$RESULTS"
  printf '%s\t%s\t%s_p50\t%s\n' "$round" "$target" "$workload" "$(bc -l <<<"$p50/1000")" >>"$RESULTS"
  printf '%s\t%s\t%s_p99\t%s\n' "$round" "$target" "$workload" "$(bc -l <<<"$p99/1000")" >>"$RESULTS"
  printf '%s\t%s\t%s_errors\t%s\n' "$round" "$target" "$workload" "$errors" >>"$RESULTS"
}

echo "bench: kvd=$KVD_BIN etcd=$ETCD_BIN rounds=$ROUNDS duration=${DURATION}s conns=$CONNS" \
     "threads=$THREADS value=${VALUE_BYTES}B data=$WORK" >&2
TARGETS=(kvd-proxy kvd-direct etcd-proxy etcd-direct)
for ((round = 1; round <= ROUNDS; round++)); do
  for workload in reads writes read1 write1; do
    for ((k = 0; k < 4; k++)); do
      run_wrk "$round" "${TARGETS[(k + round - 1) % 4]}" "$workload"
    done
  done
done

median() {  # TARGET METRIC
  awk -F'\t' -v s="$1" -v m="$2" '$2 == s && $3 == m { print $4 }' "$RESULTS" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { if [[ $(bc -l <<<"$2 == 0") == 1 ]]; then echo "n/a"; else printf '%.2f' "$(bc -l <<<"$1 / $2")"; fi; }
added() { if [[ $(bc -l <<<"$2 == 0") == 1 ]]; then echo "n/a"; else printf '%+.0f%%' "$(bc -l <<<"($1 / $2 - 1) * 100")"; fi; }

row_rps() {  # LABEL WORKLOAD
  local kp kd ep ed
  kp=$(median kvd-proxy "$2_rps"); kd=$(median kvd-direct "$2_rps")
  ep=$(median etcd-proxy "$2_rps"); ed=$(median etcd-direct "$2_rps")
  printf '| %s | %.0f | %.0f | %s | %.0f | %.0f | %s | **%s** |\n' "$1" "$kd" "$kp" "$(ratio "$kp" "$kd")" \
    "$ed" "$ep" "$(ratio "$ep" "$ed")" "$(ratio "$kp" "$ep")"
}
row_lat() {  # LABEL WORKLOAD_METRIC
  local kp kd ep ed
  kp=$(median kvd-proxy "$2"); kd=$(median kvd-direct "$2")
  ep=$(median etcd-proxy "$2"); ed=$(median etcd-direct "$2")
  printf '| %s | %.3f | %.3f | %s | %.3f | %.3f | %s | **%s** |\n' "$1" "$kd" "$kp" "$(added "$kp" "$kd")" \
    "$ed" "$ep" "$(added "$ep" "$ed")" "$(ratio "$kp" "$ep")"
}

echo
echo "Medians over $ROUNDS rounds of ${DURATION}s; value ${VALUE_BYTES} bytes; direct = the member the proxy forwards to."
echo
echo "| metric | kvd direct | kvd proxy | proxy/direct | etcd direct | etcd proxy | proxy/direct | kvd proxy / etcd proxy |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
row_rps "reads, $CONNS conns (req/s)" reads
row_rps "writes, $CONNS conns (req/s)" writes
row_rps "reads, 1 conn (req/s)" read1
row_rps "writes, 1 conn (req/s)" write1
row_lat "read latency, 1 conn, p50 (ms)" read1_p50
row_lat "read latency, 1 conn, p99 (ms)" read1_p99
row_lat "write latency, 1 conn, p50 (ms)" write1_p50
row_lat "write latency, 1 conn, p99 (ms)" write1_p99
row_lat "read latency, $CONNS conns, p50 (ms)" reads_p50
row_lat "write latency, $CONNS conns, p50 (ms)" writes_p50
echo
echo "(latency rows: the proxy/direct columns give the latency the proxy adds over the direct member)"
errors=$(awk -F'\t' '$3 ~ /_errors$/ { t += $4 } END { print t + 0 }' "$RESULTS")
if (( errors > 0 )); then
  echo "WARNING: $errors failed requests (non-2xx/3xx, timeouts, socket errors); the numbers are not comparable."
  exit 1
fi
