#!/usr/bin/env bash
# Memory, restart and watch fan-out, kvd against etcd 3.4 (--enable-v2), one member each. Run by
# hand, not in CI; see bench/README.md. For each key count in KEYS (default "100000"; add 1000000
# for the large row), both servers start on fresh data dirs and:
#   load       KEYS distinct keys /bench/<run>-<thread>-<n> (VALUE_BYTES each) written with wrk
#              (THREADS, CONNS connections); the largest write latency of the load (max_ms) is the worst stall
#              it met, snapshots included (kvd and etcd both snapshot every 100,000 entries)
#   rss        the server's resident memory (VmRSS) once loaded, after a 2 s settle
#   restart    SIGTERM, start again on the same data dir, time until a GET of a key written
#              last answers 200 (restart_s)
#   fan-out    ROUNDS times: WATCHERS long-polling watches (GET ?wait=true) on one key, all
#              registered (each has its response headers), then one PUT of the key: the time
#              from sending it until every watcher has read its event (fanout_ms), and the
#              CPU time the server's threads used in that time (fanout_cpu_ms), measured by
#              bench/watch_fanout (C++, one thread on epoll: a client in Python took longer to
#              read the answers than either server took to send them)
# The table shows the medians over the fan-out rounds and the single figures of the rest.
#
# Environment: as bench/lib.sh (KVD_BIN, ETCD_BIN, BENCH_DIR, KEEP, VALUE_BYTES), plus KEYS
# ["100000"] and WATCHERS [1000]; ROUNDS [5] fan-out rounds. With SERVER_CPUS and CLIENT_CPUS
# (lib.sh), the servers run on the first CPUs and the load and the fan-out client on the second.
set -euo pipefail

DEFAULT_ROUNDS=5
DEFAULT_DURATION=1
WORK_PREFIX=kvd-bench-memory
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init
KEYS=${KEYS:-100000}
WATCHERS=${WATCHERS:-1000}

# The load: write.lua (distinct keys /bench/<run>-<thread>-<n>), each thread stopping after
# its share of the keys (args[3]), with the largest latency in its output. wrk's own clock runs
# on: the script interrupts it (SIGINT: wrk stops and reports) once the store holds the keys.
sed -e 's/^  n = 0$/  n = 0\n  quota, answered = tonumber(args[3]), 0/' \
    -e 's/^  space = tonumber(args\[3\]) or 0$/  space = 0/' \
    -e 's/^function done(summary, latency, requests)$/function response()\n  answered = answered + 1\n  if answered >= quota then wrk.thread:stop() end\nend\n&\n  io.write(string.format("MAX max_ms=%.1f\\n", latency.max \/ 1000))/' \
  "$WORK/write.lua" >"$WORK/load.lua"
grep -q 'quota, answered' "$WORK/load.lua" && grep -q '^  space = 0$' "$WORK/load.lua" ||
  die "cannot make load.lua from write.lua"

# load NAME URL KEYS: writes keys until the store at URL counted KEYS successful sets (a few
# more at most: the writes in flight when each thread met its share); prints the largest
# write latency in ms.
load() {
  local name=$1 url=$2 keys=$3 per_thread out="$WORK/load-$1.out" wpid i
  per_thread=$(( (keys - $(store_sets "$url")) / THREADS + 1 ))
  "${CLIENT_PIN[@]}" wrk -t"$THREADS" -c"$CONNS" -d3600s -s "$WORK/load.lua" "$url" -- "m" "$VALUE_BYTES" \
    "$per_thread" >"$out" 2>&1 &
  wpid=$!
  for ((i = 0; i < 36000; i++)); do
    (( $(store_sets "$url") >= keys )) && break
    kill -0 "$wpid" 2>/dev/null || die "$name: wrk ended while loading: $(cat "$out")"
    sleep 0.1
  done
  kill -INT "$wpid"
  wait "$wpid" || true
  grep -q '^RESULT' "$out" || die "$name: wrk printed no result while loading: $(cat "$out")"
  [[ $(result_field "$(grep '^RESULT' "$out")" errors) == 0 ]] ||
    die "$name: failed writes while loading: $(cat "$out")"
  (( $(store_sets "$url") >= keys )) || die "$name: the store holds only $(store_sets "$url") keys"
  result_field "$(grep '^MAX' "$out")" max_ms
}

# The fan-out client (bench/watch_fanout.cc, built with the project).
FANOUT_BIN=${FANOUT_BIN:-$REPO_DIR/build/bench/watch_fanout}
[[ -x $FANOUT_BIN ]] || die "$FANOUT_BIN is missing: build the project first (cmake --build build)"

rss_mib() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/${PID[$1]}/status"; }

# get_ok URL KEY: whether a GET of KEY answers 200.
get_ok() { [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1/v2/keys/$2") == 200 ]]; }

read -r KVD_CLIENT KVD_PEER ETCD_CLIENT ETCD_PEER < <(free_ports 4)
declare -A CLIENT=([kvd]=$KVD_CLIENT [etcd]=$ETCD_CLIENT) PEER=([kvd]=$KVD_PEER [etcd]=$ETCD_PEER)
declare -A BIN=([kvd]=$KVD_BIN [etcd]=$ETCD_BIN)
echo "bench: kvd=$KVD_BIN etcd=$ETCD_BIN keys=$KEYS watchers=$WATCHERS rounds=$ROUNDS data=$WORK" >&2

for keys in $KEYS; do
  for name in kvd etcd; do
    url="http://127.0.0.1:${CLIENT[$name]}"
    start() {
      start_member "$name" "${BIN[$name]}" "${CLIENT[$name]}" "${PEER[$name]}" \
        "$name=http://127.0.0.1:${PEER[$name]}" "mem-$name"
    }
    rm -rf "$WORK/$name.data"
    start
    wait_write "$name" "$url"
    max_ms=$(load "$name" "$url" "$keys")
    sleep 2  # settle: RSS once background work (flushes, a snapshot) is done
    rss=$(rss_mib "$name")
    printf '%s\t%s\trss_%s\t%s\n' 1 "$name" "$keys" "$rss" >>"$RESULTS"
    printf '%s\t%s\tloadmax_%s\t%s\n' 1 "$name" "$keys" "$max_ms" >>"$RESULTS"
    echo "$name: $keys keys loaded, worst write latency ${max_ms} ms, RSS ${rss} MiB" >&2

    last=bench-last
    curl -sf -o /dev/null -X PUT "$url/v2/keys/$last" -d value=last || die "$name: cannot write $last"
    kill_pid "$name"
    t0=$(date +%s.%N)
    start
    for ((i = 0; i < 60000; i++)); do
      get_ok "$url" "$last" && break
      kill -0 "${PID[$name]}" 2>/dev/null || die "$name exited while restarting (see $WORK/$name.log)"
      sleep 0.005
    done
    get_ok "$url" "$last" || die "$name: $last not readable 300 s after the restart"
    restart=$(bc -l <<<"$(date +%s.%N) - $t0")
    printf '%s\t%s\trestart_%s\t%s\n' 1 "$name" "$keys" "$restart" >>"$RESULTS"
    echo "$name: restart to serving $(printf '%.3f' "$restart") s, RSS after $(rss_mib "$name") MiB" >&2

    round=0
    while read -r line; do
      round=$((round + 1))
      ms=$(result_field " $line" ms)
      cpu=$(result_field " $line" server_cpu_ms)
      printf '%s\t%s\tfanout_%s\t%s\n' "$round" "$name" "$keys" "$ms" >>"$RESULTS"
      printf '%s\t%s\tfanoutcpu_%s\t%s\n' "$round" "$name" "$keys" "$cpu" >>"$RESULTS"
      echo "$name: round $round: $WATCHERS watchers notified in $ms ms, server CPU $cpu ms" >&2
    done < <("${CLIENT_PIN[@]}" "$FANOUT_BIN" 127.0.0.1 "${CLIENT[$name]}" fan "$WATCHERS" "$ROUNDS" \
               "${PID[$name]}" | grep '^FANOUT ')
    (( round == ROUNDS )) || die "$name: $round of $ROUNDS fan-out rounds ran"
    kill_pid "$name"
  done
done

echo
echo "One member each, fresh data dirs; values ${VALUE_BYTES} bytes; fan-out: median of $ROUNDS rounds of $WATCHERS watchers."
echo
echo "| metric | kvd | etcd | ratio kvd/etcd |"
echo "|---|---:|---:|---:|"
for keys in $KEYS; do
  row "RSS after $keys keys (MiB)" "rss_$keys" "%.1f"
  row "worst write latency while loading $keys keys (ms)" "loadmax_$keys" "%.1f"
  row "restart to serving, $keys keys (s)" "restart_$keys" "%.3f"
  row "$WATCHERS watchers notified, $keys keys (ms)" "fanout_$keys" "%.2f"
  row "server CPU time of that fan-out, $keys keys (ms)" "fanoutcpu_$keys" "%.2f"
done
