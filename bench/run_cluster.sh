#!/usr/bin/env bash
# Benchmark of a three-member kvd cluster against a three-member etcd 3.4 cluster (--enable-v2)
# on the v2 keys API. Run by hand, not in CI; see bench/README.md. All six members run on free
# 127.0.0.1 ports with their data dirs side by side on one disk. Workloads, interleaved:
#   writes   PUT distinct keys to the leader, $CONNS connections (wrk)
#   reads    GET one key spread over all three members: three wrk processes at once, one per
#            member, $CONNS/3 connections each; req/s summed
#   write1   the writes to the leader on one connection (latency)
#   qreads   quorum GETs (?quorum=true, confd's reads) of one key at the leader, $CONNS connections
#   qspread  the same spread over all three members as reads
#   qread1   quorum GETs at the leader on one connection (latency)
# With write1, each round also measures the disk's part of such a write (bench/sync_floor):
# one 4 KiB append + fdatasync alone, and three at once until two have synced.
# Each round runs each workload on both clusters back to back, which cluster goes first
# alternating between rounds; the table shows the median over rounds. Then, once per cluster:
#   restart  $LOAD_KEYS distinct keys are written, then /bench-last; a follower is killed with
#            SIGKILL and started again; the time from its start until it answers
#            GET /v2/keys/bench-last with the value (replaying its log or snapshot) is measured.
# Processes are killed by PID on exit.
#
# Environment (defaults in brackets): as bench/lib.sh (ROUNDS [3], DURATION [5] seconds per run,
# CONNS [64], THREADS [2; pinned: one per client CPU] for the writes, VALUE_BYTES [64], KVD_BIN, ETCD_BIN, BENCH_DIR, KEEP),
# LOAD_KEYS [100000] keys written before the restart, and WORKLOADS [writes reads write1 qreads
# qspread qread1] the workloads run (the table shows their rows only; the restart always runs).
set -euo pipefail

DEFAULT_ROUNDS=3
DEFAULT_DURATION=5
WORK_PREFIX=kvd-bench-cluster
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOAD_KEYS="${LOAD_KEYS:-100000}"
[[ "$LOAD_KEYS" =~ ^[1-9][0-9]*$ ]] || die "LOAD_KEYS must be a positive integer"
bench_init
pick_workloads writes reads write1 qreads qspread qread1
(( CONNS >= 3 )) || die "CONNS ($CONNS) must be at least 3 (reads use CONNS/3 per member)"

read -r -a PORTS < <(free_ports 12)
declare -A CLIENT=() PEER_PORT=() CLIENT_PORT=() CLUSTER=()

# start_cluster KIND BINARY FIRST_PORT_INDEX: members KIND0..KIND2.
start_cluster() {
  local kind=$1 bin=$2 base=$3 i cluster=""
  for i in 0 1 2; do
    CLIENT_PORT[$kind$i]=${PORTS[base + 2 * i]}
    PEER_PORT[$kind$i]=${PORTS[base + 2 * i + 1]}
    CLIENT[$kind$i]="http://127.0.0.1:${CLIENT_PORT[$kind$i]}"
    cluster+="${cluster:+,}$kind$i=http://127.0.0.1:${PEER_PORT[$kind$i]}"
  done
  CLUSTER[$kind]=$cluster
  for i in 0 1 2; do
    start_member "$kind$i" "$bin" "${CLIENT_PORT[$kind$i]}" "${PEER_PORT[$kind$i]}" "$cluster" "bench-$kind"
  done
}

# leader KIND: the name of the cluster's leader (from GET /v2/members/leader on member 0).
leader() {
  local kind=$1 url
  url=$(curl -sf --max-time 5 "${CLIENT[${kind}0]}/v2/members/leader" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["clientURLs"][0])') ||
    die "$kind: no leader"
  for name in "${kind}0" "${kind}1" "${kind}2"; do
    [[ "${CLIENT[$name]}" == "$url" ]] && { echo "$name"; return 0; }
  done
  die "$kind: the leader's client URL $url is not a member's"
}

start_cluster kvd "$KVD_BIN" 0
start_cluster etcd "$ETCD_BIN" 6
for kind in kvd etcd; do
  for i in 0 1 2; do wait_write "$kind$i" "${CLIENT[$kind$i]}"; done
done
declare -A LEADER=([kvd]="$(leader kvd)" [etcd]="$(leader etcd)")
echo "bench: kvd=$KVD_BIN etcd=$ETCD_BIN rounds=$ROUNDS duration=${DURATION}s conns=$CONNS" \
     "threads=$THREADS value=${VALUE_BYTES}B leaders: kvd ${LEADER[kvd]}, etcd ${LEADER[etcd]}" \
     "data=$WORK ($(df --output=source "$WORK" | tail -n 1))" >&2

# spread_reads ROUND KIND [LABEL QUERY]: three wrk processes at once, one per member.
spread_reads() {
  local round=$1 kind=$2 label=${3:-reads} query=${4:-} i per=$((CONNS / 3)) rps=0 p50=0 p99=0
  local errors=0 line
  quiesce
  for i in 0 1 2; do
    wrk --timeout 10s -t1 -c"$per" -d"${DURATION}s" -s "$WORK/read.lua" \
      "${CLIENT[$kind$i]}/v2/keys/bench-read$query" >"$WORK/spread-$i.out" 2>&1 &
    PID[wrk$i]=$!
  done
  for i in 0 1 2; do
    wait "${PID[wrk$i]}" || die "$kind reads: wrk on ${CLIENT[$kind$i]} failed: $(cat "$WORK/spread-$i.out")"
    unset "PID[wrk$i]"
    line=$(grep '^RESULT ' "$WORK/spread-$i.out") || die "$kind reads: no result from wrk"
    rps=$(bc -l <<<"$rps + $(result_field "$line" rps)")
    p50=$(bc -l <<<"$p50 + $(result_field "$line" p50_us) / 3")
    local m99
    m99=$(result_field "$line" p99_us)
    (( m99 > p99 )) && p99=$m99
    errors=$((errors + $(result_field "$line" errors)))
  done
  record "$round" "$kind" "$label" "$rps" "$p50" "$p99" "$errors"
}

# The disk's part of a one-connection write (bench/sync_floor.cc, built with the project): one
# 4 KiB append + fdatasync alone, and three at once (one per member, in the data dirs' file
# system) until two have synced, a commit's majority; p50 of 2000 each, once per round.
SYNC_FLOOR_BIN=${SYNC_FLOOR_BIN:-$REPO_DIR/build/bench/sync_floor}
if ran write1; then
  [[ -x $SYNC_FLOOR_BIN ]] || die "$SYNC_FLOOR_BIN is missing: build the project first (cmake --build build)"
fi
sync_floors() {
  local writers line
  for writers in 1 3; do
    line=$("$SYNC_FLOOR_BIN" "$WORK" "$writers") || die "sync_floor failed in $WORK"
    [[ $line =~ p50_ms=([0-9.]+) ]] || die "sync_floor printed '$line'"
    printf '%s\tdisk\tsync_floor_%s_ms\t%s\n' "$1" "$writers" "${BASH_REMATCH[1]}" >>"$RESULTS"
  done
}

for ((round = 1; round <= ROUNDS; round++)); do
  if (( round % 2 )); then order=(kvd etcd); else order=(etcd kvd); fi
  for workload in $WORKLOADS; do
    for kind in "${order[@]}"; do
      case "$workload" in
        reads) spread_reads "$round" "$kind" ;;
        qspread) spread_reads "$round" "$kind" qspread "?quorum=true" ;;
        *) run_wrk "$round" "$kind" "$workload" "${CLIENT[${LEADER[$kind]}]}" ;;
      esac
    done
    if [[ $workload == write1 ]]; then sync_floors "$round"; fi
  done
done

# Restart with at least LOAD_KEYS keys: write distinct keys with wrk in 2 s runs until enough
# have been written (every request counted is a distinct key).
declare -A RESTART_S=() RESTART_KEYS=()
restart_follower() {
  local kind=$1 lead="${LEADER[$1]}" victim="" i t0 t1 line
  local url="${CLIENT[$lead]}"
  local written=0 run=0
  while (( written < LOAD_KEYS && run < 500 )); do
    run=$((run + 1))
    line=$(wrk_result "$kind" load -t"$THREADS" -c"$CONNS" -d2s -s "$WORK/write.lua" "$url" -- \
             "load$run" "$VALUE_BYTES")
    (( $(result_field "$line" errors) == 0 )) ||
      die "$kind: $(result_field "$line" errors) failed writes while loading"
    written=$((written + $(result_field "$line" requests)))
  done
  RESTART_KEYS[$kind]=$written
  curl -sf -o /dev/null -X PUT "$url/v2/keys/bench-last" --data-urlencode "value=last-$kind" ||
    die "$kind: could not write /bench-last"
  for i in 0 1 2; do [[ "$kind$i" != "$lead" ]] && { victim="$kind$i"; break; }; done
  # The victim has the last key before it is killed (a quorum read would not tell: read it there).
  for ((i = 0; i < 3000; i++)); do
    curl -sf --max-time 1 "${CLIENT[$victim]}/v2/keys/bench-last" | grep -q "last-$kind" && break
    sleep 0.01
  done
  kill -KILL "${PID[$victim]}"
  wait "${PID[$victim]}" 2>/dev/null || true
  unset "PID[$victim]"
  local bin="$KVD_BIN"
  [[ "$kind" == etcd ]] && bin="$ETCD_BIN"
  t0=$(date +%s.%N)
  start_member "$victim" "$bin" "${CLIENT_PORT[$victim]}" "${PEER_PORT[$victim]}" "${CLUSTER[$kind]}" "bench-$kind"
  for ((i = 0; i < 12000; i++)); do
    if curl -sf --max-time 1 "${CLIENT[$victim]}/v2/keys/bench-last" 2>/dev/null | grep -q "last-$kind"; then
      t1=$(date +%s.%N)
      RESTART_S[$kind]=$(bc -l <<<"$t1 - $t0")
      printf 'restart %-5s %s keys: %s served /bench-last %.3f s after its start\n' "$kind" \
        "${RESTART_KEYS[$kind]}" "$victim" "${RESTART_S[$kind]}" >&2
      return 0
    fi
    kill -0 "${PID[$victim]}" 2>/dev/null || { tail -n 20 "$WORK/$victim.log" >&2; die "$victim exited after its restart"; }
    sleep 0.01
  done
  die "$victim did not serve /bench-last within 120 s of its restart"
}
restart_follower kvd
restart_follower etcd

echo
echo "Three-member clusters; medians over $ROUNDS rounds of ${DURATION}s; value ${VALUE_BYTES} bytes."
echo
echo "| metric | kvd | etcd | ratio kvd/etcd |"
echo "|---|---:|---:|---:|"
row "writes to the leader, $CONNS conns (req/s, higher is better)" writes_rps "%.0f"
row "writes to the leader, $CONNS conns, p99 (ms)" writes_p99_ms "%.2f"
row "reads over 3 members, $CONNS conns in all (req/s, higher is better)" reads_rps "%.0f"
row "reads over 3 members, p99 (ms, worst member)" reads_p99_ms "%.2f"
row "quorum reads at the leader, $CONNS conns (req/s, higher is better)" qreads_rps "%.0f"
row "quorum reads over 3 members, $CONNS conns in all (req/s)" qspread_rps "%.0f"
row "quorum read at the leader, 1 conn, p50 (ms, lower is better)" qread1_p50_ms "%.2f"
row "quorum read at the leader, 1 conn, p99 (ms)" qread1_p99_ms "%.2f"
row "write latency, 1 conn, p50 (ms, lower is better)" write1_p50_ms "%.3f"
row "write latency, 1 conn, p99 (ms, lower is better)" write1_p99_ms "%.3f"
printf '| restarted follower serves its last key (s, lower is better; %s / %s keys) | %.2f | %.2f | %s |\n' \
  "${RESTART_KEYS[kvd]}" "${RESTART_KEYS[etcd]}" "${RESTART_S[kvd]}" "${RESTART_S[etcd]}" \
  "$(ratio "${RESTART_S[kvd]}" "${RESTART_S[etcd]}")"
echo
if ran write1; then
  alone=$(median disk sync_floor_1_ms)
  majority=$(median disk sync_floor_3_ms)
  echo "The disk's floor (medians over rounds of the p50 of 2000, bench/sync_floor.cc, in the data" \
       "dirs' file system): one 4 KiB append + fdatasync alone $(printf '%.3f' "$alone") ms; three" \
       "at once, one per member, until two have synced (a commit's majority)" \
       "$(printf '%.3f' "$majority") ms ($(ratio "$majority" "$alone") times the lone one). One-connection" \
       "write p50 over the majority's floor: kvd $(ratio "$(median kvd write1_p50_ms)" "$majority")," \
       "etcd $(ratio "$(median etcd write1_p50_ms)" "$majority")."
  echo
fi
warn_on_errors
