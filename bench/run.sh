#!/usr/bin/env bash
# Benchmark of kvd against etcd 3.4 (--enable-v2) on the v2 keys API. Run by hand, not in CI;
# see bench/README.md. Starts one single-member kvd and one single-member etcd on free 127.0.0.1
# ports, data dirs side by side on one disk, and runs every workload on both, interleaved:
#   reads    GET one key, $CONNS connections (wrk)
#   writes   PUT /v2/keys/bench/<distinct key> value=..., $CONNS connections (wrk + Lua)
#   write1   the same writes on one connection (wrk -t1 -c1), followed in each round by the
#            disk's floor (lib.sh, disk_floor): one 4 KiB append + fdatasync, and one overwrite
# Each round runs each workload on both servers back to back, the order alternating between
# rounds; the table shows the median over rounds. Servers are killed by PID on exit.
#
# Environment (defaults in brackets):
#   KVD_BIN [build/server/kvd]  ETCD_BIN [/usr/bin/etcd]  ROUNDS [5]  DURATION [10] seconds per
#   run  CONNS [64]  THREADS [2; pinned: one per client CPU] wrk threads  VALUE_BYTES [64]  BENCH_DIR [/var/tmp] parent of
#   the data dirs  KEEP [0] 1 keeps the work dir (logs, raw results)  WORKLOADS [reads writes
#   write1] the workloads run (the table shows their rows only).
# KVD_BIN=/usr/bin/etcd compares etcd with itself, which checks the script and the noise level.
set -euo pipefail

DEFAULT_ROUNDS=5
DEFAULT_DURATION=10
WORK_PREFIX=kvd-bench
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if [[ ! -x "$KVD_BIN" ]]; then
  die "kvd binary not found at $KVD_BIN: build it (ninja -C build kvd) or set KVD_BIN" \
      "(KVD_BIN=$ETCD_BIN runs etcd against etcd)"
fi
bench_init
pick_workloads reads writes write1

read -r KVD_CLIENT KVD_PEER ETCD_CLIENT ETCD_PEER < <(free_ports 4)
start_member kvd "$KVD_BIN" "$KVD_CLIENT" "$KVD_PEER" "kvd=http://127.0.0.1:$KVD_PEER" bench
start_member etcd "$ETCD_BIN" "$ETCD_CLIENT" "$ETCD_PEER" "etcd=http://127.0.0.1:$ETCD_PEER" bench
declare -A URL=([kvd]="http://127.0.0.1:$KVD_CLIENT" [etcd]="http://127.0.0.1:$ETCD_CLIENT")
wait_write kvd "${URL[kvd]}"
wait_write etcd "${URL[etcd]}"

echo "bench: kvd=$KVD_BIN etcd=$ETCD_BIN rounds=$ROUNDS duration=${DURATION}s conns=$CONNS" \
     "threads=$THREADS value=${VALUE_BYTES}B data=$WORK ($(df --output=source "$WORK" | tail -n 1))" >&2

for ((round = 1; round <= ROUNDS; round++)); do
  if (( round % 2 )); then order=(kvd etcd); else order=(etcd kvd); fi
  for workload in $WORKLOADS; do
    for name in "${order[@]}"; do
      run_wrk "$round" "$name" "$workload" "${URL[$name]}"
    done
    if [[ $workload == write1 ]]; then disk_floor "$round"; fi
  done
done

echo
echo "Medians over $ROUNDS rounds of ${DURATION}s; value ${VALUE_BYTES} bytes."
echo
echo "| metric | kvd | etcd | ratio kvd/etcd |"
echo "|---|---:|---:|---:|"
row "reads, $CONNS conns (req/s, higher is better)" reads_rps "%.0f"
row "reads, $CONNS conns, p99 latency (ms)" reads_p99_ms "%.2f"
row "writes, $CONNS conns (req/s, higher is better)" writes_rps "%.0f"
row "writes, $CONNS conns, p99 latency (ms)" writes_p99_ms "%.2f"
row "write latency, 1 conn, p50 (ms, lower is better)" write1_p50_ms "%.3f"
row "write latency, 1 conn, p99 (ms, lower is better)" write1_p99_ms "%.3f"
row "writes, 1 conn (req/s)" write1_rps "%.0f"
if ran write1; then
  floor=$(median disk floor_append_ms)
  echo
  echo "The disk's floor (medians over rounds of the p50 of 2000 4 KiB writes + fdatasync, in the" \
       "data dirs' file system): appending $(printf '%.3f' "$floor") ms, overwriting" \
       "$(printf '%.3f' "$(median disk floor_overwrite_ms)") ms. One-connection write p50 over" \
       "the appending floor: kvd $(ratio "$(median kvd write1_p50_ms)" "$floor")," \
       "etcd $(ratio "$(median etcd write1_p50_ms)" "$floor")."
fi
echo
warn_on_errors
