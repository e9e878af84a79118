#!/usr/bin/env bash
# Benchmark of kvd against etcd 3.4 (--enable-v2) with v2 auth enabled, beside the same workloads
# with auth disabled, in one interleaved run. Run by hand, not in CI; see bench/README.md.
# Starts one single-member kvd and one single-member etcd and gives both the same users: root,
# and "app" whose role may read /bench-read and write under /bench/ (a prefix permission). In
# every round, each workload runs on both servers back to back (the order alternating between
# rounds), first with auth disabled, then enabled (as app, with Basic credentials on every
# request, as etcd's v2 clients send them), then auth is disabled again for the next round:
#   reads    GET one key, $CONNS connections (wrk)    read1   the same on one connection
#   writes   PUT distinct keys, $CONNS connections     write1  the same on one connection
# The table shows the median over rounds. etcd checks the password (bcrypt, cost 10) on every
# request; kvd checks it once per credentials and remembers the success. Servers are killed by
# PID on exit.
#
# Environment (defaults in brackets): as bench/run.sh (KVD_BIN ETCD_BIN ROUNDS [3] DURATION [10]
# CONNS [64] THREADS [2; pinned: one per client CPU] VALUE_BYTES [64] BENCH_DIR [/var/tmp] KEEP [0]).
set -euo pipefail

DEFAULT_ROUNDS=3
DEFAULT_DURATION=10
WORK_PREFIX=kvd-bench-auth
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init

read -r KVD_PORT KVD_PEER ETCD_PORT ETCD_PEER < <(free_ports 4)
start_member kvd "$KVD_BIN" "$KVD_PORT" "$KVD_PEER" "kvd=http://127.0.0.1:$KVD_PEER" bench
start_member etcd "$ETCD_BIN" "$ETCD_PORT" "$ETCD_PEER" "etcd=http://127.0.0.1:$ETCD_PEER" bench
declare -A URL=([kvd]="http://127.0.0.1:$KVD_PORT" [etcd]="http://127.0.0.1:$ETCD_PORT")
wait_write kvd "${URL[kvd]}"
wait_write etcd "${URL[etcd]}"

ROOT_PW="bench-root-pw"
APP_PW="bench-app-pw"
APP_AUTH="Authorization: Basic $(printf 'app:%s' "$APP_PW" | base64 -w0)"

# call NAME METHOD PATH [BODY] [CREDENTIALS]: one request, dies unless it answers 2xx.
call() {
  local name=$1 method=$2 path=$3 body=${4:-} creds=${5:-} out args=()
  [[ -n "$creds" ]] && args+=(-u "$creds")
  [[ -n "$body" ]] && args+=(-H "Content-Type: application/json" --data-binary "$body")
  out=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X "$method" "${args[@]}" \
    "${URL[$name]}$path") || die "$name: $method $path: curl failed"
  [[ "$out" == 2* ]] || die "$name: $method $path answered $out"
}

for name in kvd etcd; do
  call "$name" PUT /v2/auth/users/root "{\"user\":\"root\",\"password\":\"$ROOT_PW\"}"
  call "$name" PUT /v2/auth/roles/app \
    '{"role":"app","permissions":{"kv":{"read":["/bench-read"],"write":["/bench/*"]}}}'
  call "$name" PUT /v2/auth/users/app "{\"user\":\"app\",\"password\":\"$APP_PW\",\"roles\":[\"app\"]}"
done

# set_auth on|off: enables or disables auth on both servers; when enabled, revokes the guest
# role's default access so that every request is checked as the app user.
set_auth() {
  local name
  for name in kvd etcd; do
    if [[ $1 == on ]]; then
      call "$name" PUT /v2/auth/enable "" "root:$ROOT_PW"
      call "$name" DELETE /v2/auth/roles/guest "" "root:$ROOT_PW"
    else
      call "$name" DELETE /v2/auth/enable "" "root:$ROOT_PW"
    fi
  done
}

echo "bench: kvd=$KVD_BIN etcd=$ETCD_BIN rounds=$ROUNDS duration=${DURATION}s conns=$CONNS" \
     "threads=$THREADS value=${VALUE_BYTES}B data=$WORK ($(df --output=source "$WORK" | tail -n 1))" >&2

for ((round = 1; round <= ROUNDS; round++)); do
  if (( round % 2 )); then order=(kvd etcd); else order=(etcd kvd); fi
  WRK_ARGS=()
  for workload in reads read1 writes write1; do
    for name in "${order[@]}"; do run_wrk "$round" "$name" "$workload" "${URL[$name]}"; done
  done
  set_auth on
  WRK_ARGS=(-H "$APP_AUTH")
  for workload in reads read1 writes write1; do
    for name in "${order[@]}"; do
      run_wrk "$round" "$name" "$workload" "${URL[$name]}" "auth_$workload"
    done
  done
  WRK_ARGS=()
  set_auth off
done

echo
echo "Medians over $ROUNDS rounds of ${DURATION}s; value ${VALUE_BYTES} bytes; auth: user app, role with /bench-read (read) and /bench/* (write), guest role removed."
echo
echo "| metric | kvd | etcd | kvd/etcd | kvd auth | etcd auth | kvd/etcd | kvd auth/no auth | etcd auth/no auth |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
row2 auth "reads, $CONNS conns (req/s, higher is better)" reads_rps "%.0f"
row2 auth "reads, $CONNS conns, p99 latency (ms)" reads_p99_ms "%.3f"
row2 auth "server CPU per read, $CONNS conns (µs, lower is better)" reads_cpu_us "%.1f"
row2 auth "reads, 1 conn (req/s)" read1_rps "%.0f"
row2 auth "read latency, 1 conn, p50 (ms, lower is better)" read1_p50_ms "%.3f"
row2 auth "writes, $CONNS conns (req/s, higher is better)" writes_rps "%.0f"
row2 auth "writes, $CONNS conns, p99 latency (ms)" writes_p99_ms "%.3f"
row2 auth "server CPU per write, $CONNS conns (µs, lower is better)" writes_cpu_us "%.1f"
row2 auth "writes, 1 conn (req/s)" write1_rps "%.0f"
row2 auth "write latency, 1 conn, p50 (ms, lower is better)" write1_p50_ms "%.3f"
echo
warn_on_errors
