#!/usr/bin/env bash
# Benchmark of kvd against etcd 3.4 (--enable-v2) over TLS, with the same workloads over plain
# HTTP in the same run. Run by hand, not in CI; see bench/README.md. Starts one single-member kvd
# and one single-member etcd, each serving clients on an http and an https port of 127.0.0.1
# with the same certificate (ECDSA P-256, made by tests/e2e/tls_certs.py), and runs, interleaved:
#   reads    GET one key, $CONNS connections (wrk)    read1   the same on one connection
#   writes   PUT distinct keys, $CONNS connections     write1  the same on one connection
# each over http and over https, then the handshake rate over https: $HS_CLIENTS `openssl
# s_time -new` clients (and one alone) reconnecting in a loop, each connection a full TLS
# handshake (no resumption) and one GET /version (HTTP/1.0, the server closes).
# Each round runs each workload on both servers back to back, the order alternating between
# rounds; the table shows the median over rounds. Servers are killed by PID on exit.
#
# Environment (defaults in brackets): as bench/run.sh (KVD_BIN ETCD_BIN ROUNDS [3] DURATION [10]
# CONNS [64] THREADS [2; pinned: one per client CPU] VALUE_BYTES [64] BENCH_DIR [/var/tmp] KEEP [0]) and HS_CLIENTS [4]
# concurrent handshaking clients, WORKLOADS [reads read1 writes write1] the wrk workloads run
# (the table shows their rows only; the handshakes always run).
set -euo pipefail

DEFAULT_ROUNDS=3
DEFAULT_DURATION=10
WORK_PREFIX=kvd-bench-tls
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HS_CLIENTS="${HS_CLIENTS:-4}"
[[ "$HS_CLIENTS" =~ ^[1-9][0-9]*$ ]] || die "HS_CLIENTS must be a positive integer"
command -v openssl >/dev/null || die "openssl is not installed (apt-get install openssl)"
bench_init
pick_workloads reads read1 writes write1

# The certificates: a CA and a server certificate for 127.0.0.1, as the e2e tests make them.
read -r CERT KEY CA < <(python3 - "$REPO_DIR/tests/e2e" "$WORK/pki" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import tls_certs
pki = tls_certs.Pki(sys.argv[2])
cert, key = pki.issue("server")
print(cert, key, pki.ca)
EOF
) || die "cannot make the certificates (tests/e2e/tls_certs.py)"

read -r KVD_HTTP KVD_HTTPS KVD_PEER ETCD_HTTP ETCD_HTTPS ETCD_PEER < <(free_ports 6)
start_member kvd "$KVD_BIN" "$KVD_HTTP" "$KVD_PEER" "kvd=http://127.0.0.1:$KVD_PEER" bench \
  "$KVD_HTTPS" "$CERT" "$KEY"
start_member etcd "$ETCD_BIN" "$ETCD_HTTP" "$ETCD_PEER" "etcd=http://127.0.0.1:$ETCD_PEER" bench \
  "$ETCD_HTTPS" "$CERT" "$KEY"
declare -A URL=([kvd-http]="http://127.0.0.1:$KVD_HTTP" [kvd-https]="https://127.0.0.1:$KVD_HTTPS"
                [etcd-http]="http://127.0.0.1:$ETCD_HTTP" [etcd-https]="https://127.0.0.1:$ETCD_HTTPS")
declare -A TLS_PORT=([kvd]="$KVD_HTTPS" [etcd]="$ETCD_HTTPS")
wait_write kvd "${URL[kvd-http]}"
wait_write etcd "${URL[etcd-http]}"
for name in kvd etcd; do
  curl -sf -o /dev/null --max-time 5 --cacert "$CA" "${URL[$name-https]}/v2/keys/bench-read" ||
    die "$name does not answer over https (${URL[$name-https]}); log: $WORK/$name.log"
done

# Which TLS version and cipher each server picks for an OpenSSL client (wrk, s_time).
for name in kvd etcd; do
  echo "bench: $name https: $(openssl s_client -connect "127.0.0.1:${TLS_PORT[$name]}" -CAfile "$CA" \
    </dev/null 2>/dev/null | grep -E '^New, ' | head -n 1)" >&2
done

# run_handshakes ROUND TARGET LABEL CLIENTS: CLIENTS `openssl s_time -new` processes at once
# against TARGET's https port for $DURATION s (s_time stops within the second after that), each
# connecting, handshaking in full, sending GET /version and reading the answer until the server
# closes, in a loop. Records the connections per second summed over the clients (each client's
# count over its own wall-clock time) as LABEL_rps; a client that ends without a count, or read
# no answer, counts as an error. p50/p99 are not measured (recorded as 0).
run_handshakes() {
  local round=$1 target=$2 label=$3 clients=$4 i rate=0 errors=0 out r pids=()
  quiesce
  for ((i = 0; i < clients; i++)); do
    (
      start=$EPOCHREALTIME
      "${CLIENT_PIN[@]}" openssl s_time -connect "127.0.0.1:${TLS_PORT[$target]}" -new -time "$DURATION" \
        -CAfile "$CA" -www /version >"$WORK/hs.$i" 2>&1 || echo "EXIT $?" >>"$WORK/hs.$i"
      echo "WALL $start $EPOCHREALTIME" >>"$WORK/hs.$i"
    ) &
    pids+=($!)
  done
  wait "${pids[@]}"
  for ((i = 0; i < clients; i++)); do
    out="$WORK/hs.$i"
    # "N connections in T real seconds, B bytes read per connection"
    r=$(awk '/ connections in .* real seconds, / { c = $1; b = $(NF - 4) }
             /^EXIT / { bad = 1 }
             /^WALL / { w = $3 - $2 }
             END { if (bad || c == "" || b + 0 < 50 || w <= 0) print "error"; else printf "%.3f\n", c / w }' "$out")
    if [[ "$r" == error ]]; then
      errors=$((errors + 1))
      echo "bench: $target $label: s_time client $i failed:" >&2
      tail -n 5 "$out" >&2
    else
      rate=$(bc -l <<<"$rate + $r")
    fi
  done
  record "$round" "$target" "$label" "$rate" 0 0 "$errors"
}

echo "bench: kvd=$KVD_BIN etcd=$ETCD_BIN rounds=$ROUNDS duration=${DURATION}s conns=$CONNS" \
     "threads=$THREADS value=${VALUE_BYTES}B handshake clients=$HS_CLIENTS" \
     "data=$WORK ($(df --output=source "$WORK" | tail -n 1))" >&2

for ((round = 1; round <= ROUNDS; round++)); do
  if (( round % 2 )); then order=(kvd etcd); else order=(etcd kvd); fi
  for workload in $WORKLOADS; do
    for scheme in http https; do
      for name in "${order[@]}"; do
        if [[ $scheme == http ]]; then label=$workload; else label=tls_$workload; fi
        run_wrk "$round" "$name" "$workload" "${URL[$name-$scheme]}" "$label"
      done
    done
  done
  for name in "${order[@]}"; do run_handshakes "$round" "$name" tls_hs1 1; done
  for name in "${order[@]}"; do run_handshakes "$round" "$name" tls_hs "$HS_CLIENTS"; done
done

echo
echo "Medians over $ROUNDS rounds of ${DURATION}s; value ${VALUE_BYTES} bytes; https: TLS 1.3, ECDSA P-256 certificate."
echo
echo "| metric | kvd http | etcd http | kvd/etcd | kvd https | etcd https | kvd/etcd | kvd https/http | etcd https/http |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
row2 tls "reads, $CONNS conns (req/s, higher is better)" reads_rps "%.0f"
row2 tls "reads, $CONNS conns, p50 latency (ms)" reads_p50_ms "%.3f"
row2 tls "reads, $CONNS conns, p99 latency (ms)" reads_p99_ms "%.3f"
row2 tls "server CPU per read, $CONNS conns (µs, lower is better)" reads_cpu_us "%.1f"
row2 tls "reads, 1 conn (req/s)" read1_rps "%.0f"
row2 tls "read latency, 1 conn, p50 (ms, lower is better)" read1_p50_ms "%.3f"
row2 tls "read latency, 1 conn, p99 (ms, lower is better)" read1_p99_ms "%.3f"
row2 tls "writes, $CONNS conns (req/s, higher is better)" writes_rps "%.0f"
row2 tls "writes, $CONNS conns, p50 latency (ms)" writes_p50_ms "%.3f"
row2 tls "writes, $CONNS conns, p99 latency (ms)" writes_p99_ms "%.3f"
row2 tls "server CPU per write, $CONNS conns (µs, lower is better)" writes_cpu_us "%.1f"
row2 tls "writes, 1 conn (req/s)" write1_rps "%.0f"
row2 tls "write latency, 1 conn, p50 (ms, lower is better)" write1_p50_ms "%.3f"
row2 tls "write latency, 1 conn, p99 (ms, lower is better)" write1_p99_ms "%.3f"
echo
echo "| handshakes: new TLS connection + GET /version, no resumption | kvd | etcd | ratio kvd/etcd |"
echo "|---|---:|---:|---:|"
row "$HS_CLIENTS clients at once (connections/s, higher is better)" tls_hs_rps "%.0f"
row "1 client (connections/s, higher is better)" tls_hs1_rps "%.0f"
echo
warn_on_errors
