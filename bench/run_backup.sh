#!/usr/bin/env bash
# What an online backup (kvctl backup --endpoints) costs the writes of a large kvd: one
# single-member kvd is loaded with $KEYS keys (1,000,000), then in every round a paced write load
# ($CONNS connections, each pausing $WRITE_PAUSE_MS ms before each PUT) runs twice for $DURATION
# seconds: once alone, once with an online backup started a second into the run. The table shows
# the medians over rounds of the write latency (p50, p99, p99.9, max) and throughput with and
# without the backup, their ratio, and how long the backup took. The backup is read by a thread
# of the member's own, never by its raft loop, so what it costs is CPU and disk shared with the
# load (kvctl, writing the backup, runs on the same machine). etcd 3.4 has no online backup of
# its v2 data (etcdctl's backup reads a stopped member's files), so no etcd column.
#
# Environment (defaults in brackets): KVD_BIN KVCTL_BIN [build/cli/kvctl] KEYS [1000000]
# ROUNDS [3] DURATION [10] CONNS [64] THREADS [2; pinned: one per client CPU] VALUE_BYTES [64] WRITE_PAUSE_MS [16]
# BENCH_DIR [/var/tmp] KEEP [0].
set -euo pipefail

DEFAULT_ROUNDS=3
DEFAULT_DURATION=10
WORK_PREFIX=kvd-bench-backup
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KVCTL_BIN="${KVCTL_BIN:-$REPO_DIR/build/cli/kvctl}"
KEYS="${KEYS:-1000000}"
[[ -x "$KVCTL_BIN" ]] || die "kvctl not found at $KVCTL_BIN: build it (ninja -C build kvctl)"
[[ "$KEYS" =~ ^[1-9][0-9]*$ ]] || die "KEYS must be a positive integer"
bench_init

read -r PORT PEER < <(free_ports 2)
start_member kvd "$KVD_BIN" "$PORT" "$PEER" "kvd=http://127.0.0.1:$PEER" bench
URL="http://127.0.0.1:$PORT"
wait_write kvd "$URL"

# The load: distinct keys in 1,000 directories (distinct across wrk runs too: the run number is
# in the key), 64 connections, until the store holds KEYS.
cat >"$WORK/load.lua" <<'EOF'
local next_thread = 0
function setup(thread)
  next_thread = next_thread + 1
  thread:set("tid", next_thread)
end
function init(args)
  run = args[2]
  body = "value=" .. string.rep("x", tonumber(args[1]))
  headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
  n = 0
end
function request()
  n = n + 1
  return wrk.format("PUT", "/v2/keys/load/d" .. (n % 1000) .. "/r" .. run .. "t" .. tid .. "-" .. n,
                    headers, body)
end
EOF
# writep with the tail of the latency distribution in its RESULT line.
sed 's/^function done(summary, latency, requests)$/function done(summary, latency, requests)\n  io.write(string.format("TAIL p999_us=%d max_us=%d\\n", latency:percentile(99.9), latency.max))/' \
  "$WORK/writep.lua" >"$WORK/writet.lua"

echo "loading $KEYS keys..." >&2
run=0
while (( $(store_sets "$URL") < KEYS )); do
  run=$((run + 1))
  wrk -t"$THREADS" -c"$CONNS" -d5s -s "$WORK/load.lua" "$URL" -- "$VALUE_BYTES" "$run" >/dev/null
done
echo "loaded $(store_sets "$URL") keys ($(curl -s "$URL/v2/keys/load/d7" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["node"]["nodes"]))') in /load/d7); kvd's resident memory: $(awk '/VmRSS/ { print $2 / 1024 " MiB" }' "/proc/${PID[kvd]}/status")" >&2

# one ROUND LABEL: the paced write load, recorded as LABEL; with LABEL=backup, an online backup
# starts a second into it.
one() {
  local round=$1 label=$2 out line tail bpid="" t0 t1
  quiesce
  if [[ $label == backup ]]; then
    ( sleep 1
      t0=$(date +%s.%N)
      "$KVCTL_BIN" --endpoints "$URL" backup --backup-dir "$WORK/backup-$round" >"$WORK/backup-$round.out"
      t1=$(date +%s.%N)
      echo "$(bc -l <<<"$t1 - $t0")" >"$WORK/backup-$round.secs" ) &
    bpid=$!
  fi
  out=$(wrk --timeout 10s -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -s "$WORK/writet.lua" "$URL" \
          -- "b$round-$label" "$VALUE_BYTES" "$WRITE_PAUSE_MS") || die "wrk failed: $out"
  [[ -n "$bpid" ]] && { wait "$bpid" || die "the backup failed: $(cat "$WORK/backup-$round.out")"; }
  line=$(grep '^RESULT ' <<<"$out")
  tail=$(grep '^TAIL ' <<<"$out")
  record "$round" kvd "$label" "$(result_field "$line" rps)" "$(result_field "$line" p50_us)" \
    "$(result_field "$line" p99_us)" "$(result_field "$line" errors)"
  printf '%s\tkvd\t%s_p999_ms\t%s\n' "$round" "$label" "$(bc -l <<<"$(result_field "$tail" p999_us)/1000")" >>"$RESULTS"
  printf '%s\tkvd\t%s_max_ms\t%s\n' "$round" "$label" "$(bc -l <<<"$(result_field "$tail" max_us)/1000")" >>"$RESULTS"
  [[ $label == backup ]] && printf '%s\tkvd\tbackup_secs\t%s\n' "$round" "$(cat "$WORK/backup-$round.secs")" >>"$RESULTS"
  rm -rf "$WORK/backup-$round"
}

for ((round = 1; round <= ROUNDS; round++)); do
  one "$round" alone
  one "$round" backup
done

echo
echo "kvd with $KEYS keys, $CONNS connections each pausing ${WRITE_PAUSE_MS} ms before each PUT, ${DURATION} s runs, median of $ROUNDS rounds"
echo "(backup of $(grep -o 'snapshot at.*after it' "$WORK/backup-1.out" || echo '?'))"
echo
echo "| writes | alone | with an online backup | ratio |"
echo "|---|---|---|---|"
for m in rps:%.0f p50_ms:%.2f p99_ms:%.2f p999_ms:%.2f max_ms:%.2f; do
  metric=${m%%:*} fmt=${m#*:}
  a=$(median kvd "alone_$metric"); b=$(median kvd "backup_$metric")
  printf "| %s | $fmt | $fmt | %s |\n" "$metric" "$a" "$b" "$(ratio "$b" "$a")"
done
echo
printf 'online backup took %.2f s (median)\n' "$(median kvd backup_secs)"
warn_on_errors
