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
#   readp     the reads, each connection pausing READ_PAUSE_MS before each request (latency at
#             a load well below either proxy's throughput, set by the pause)
#   writep    the writes, each connection pausing WRITE_PAUSE_MS before each request
# Each round runs each workload on every target back to back, the order rotating between rounds;
# the table shows medians over rounds: throughput, p50 latency, the latency a proxy adds over
# going to the member directly, and kvd's proxy against etcd's. Processes are killed by PID.
#
# Environment (defaults in brackets):
#   KVD_BIN [build/server/kvd]  ETCD_BIN [/usr/bin/etcd]  ROUNDS [3]  DURATION [5] seconds per
#   run  CONNS [64]  THREADS [2; pinned: one per client CPU] wrk threads  VALUE_BYTES [64]  BENCH_DIR [/var/tmp]  KEEP [0]
#   READ_PAUSE_MS [4]  WRITE_PAUSE_MS [16]  WORKLOADS [reads writes read1 write1 readp writep]
#   the workloads run (the table shows their rows only)
set -euo pipefail

DEFAULT_ROUNDS=3
DEFAULT_DURATION=5
WORK_PREFIX=kvd-bench-proxy
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init
pick_workloads reads writes read1 write1 readp writep

read -r -a PORTS < <(free_ports 14)

# start_cluster KIND BINARY FIRST_PORT_INDEX: three members and a proxy; sets URL[KIND-proxy].
declare -A URL=()
start_cluster() {
  local kind=$1 bin=$2 base=$3 i cluster=""
  for i in 0 1 2; do
    cluster+="${cluster:+,}$kind$i=http://127.0.0.1:${PORTS[base + 2 * i + 1]}"
  done
  for i in 0 1 2; do
    start_member "$kind$i" "$bin" "${PORTS[base + 2 * i]}" "${PORTS[base + 2 * i + 1]}" "$cluster" "bench-$kind"
  done
  local proxy="http://127.0.0.1:${PORTS[base + 6]}"
  "${SERVER_PIN[@]}" "$bin" --proxy on --data-dir "$WORK/$kind-proxy.data" --listen-client-urls "$proxy" \
    --initial-cluster "$cluster" --log-level error >"$WORK/$kind-proxy.log" 2>&1 &
  PID[$kind-proxy]=$!
  URL[$kind-proxy]=$proxy
}

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

echo "bench: kvd=$KVD_BIN etcd=$ETCD_BIN rounds=$ROUNDS duration=${DURATION}s conns=$CONNS" \
     "threads=$THREADS value=${VALUE_BYTES}B data=$WORK" >&2
TARGETS=(kvd-proxy kvd-direct etcd-proxy etcd-direct)
for ((round = 1; round <= ROUNDS; round++)); do
  for workload in $WORKLOADS; do
    for ((k = 0; k < 4; k++)); do
      target="${TARGETS[(k + round - 1) % 4]}"
      run_wrk "$round" "$target" "$workload" "${URL[$target]}"
    done
  done
done

added() { if [[ $(bc -l <<<"$2 == 0") == 1 ]]; then echo "n/a"; else printf '%+.0f%%' "$(bc -l <<<"($1 / $2 - 1) * 100")"; fi; }

row_rps() {  # LABEL WORKLOAD
  local kp kd ep ed
  ran "$2" || return 0
  kp=$(median kvd-proxy "$2_rps"); kd=$(median kvd-direct "$2_rps")
  ep=$(median etcd-proxy "$2_rps"); ed=$(median etcd-direct "$2_rps")
  printf '| %s | %.0f | %.0f | %s | %.0f | %.0f | %s | **%s** |\n' "$1" "$kd" "$kp" "$(ratio "$kp" "$kd")" \
    "$ed" "$ep" "$(ratio "$ep" "$ed")" "$(ratio "$kp" "$ep")"
}
row_lat() {  # LABEL WORKLOAD_METRIC
  local kp kd ep ed
  ran "$2" || return 0
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
row_lat "read latency, 1 conn, p50 (ms)" read1_p50_ms
row_lat "read latency, 1 conn, p99 (ms)" read1_p99_ms
row_lat "write latency, 1 conn, p50 (ms)" write1_p50_ms
row_lat "write latency, 1 conn, p99 (ms)" write1_p99_ms
row_lat "read latency, $CONNS conns, p50 (ms)" reads_p50_ms
row_lat "write latency, $CONNS conns, p50 (ms)" writes_p50_ms
row_rps "reads, $CONNS conns pausing ${READ_PAUSE_MS} ms (req/s)" readp
row_lat "read latency, $CONNS conns pausing ${READ_PAUSE_MS} ms, p50 (ms)" readp_p50_ms
row_lat "read latency, $CONNS conns pausing ${READ_PAUSE_MS} ms, p99 (ms)" readp_p99_ms
row_rps "writes, $CONNS conns pausing ${WRITE_PAUSE_MS} ms (req/s)" writep
row_lat "write latency, $CONNS conns pausing ${WRITE_PAUSE_MS} ms, p50 (ms)" writep_p50_ms
row_lat "write latency, $CONNS conns pausing ${WRITE_PAUSE_MS} ms, p99 (ms)" writep_p99_ms
echo
echo "(latency rows: the proxy/direct columns give the latency the proxy adds over the direct member)"
warn_on_errors
