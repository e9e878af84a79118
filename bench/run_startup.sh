#!/usr/bin/env bash
# Start-up of a new three-member cluster, kvd against etcd 3.4: the time from the exec of the
# three members (started together, fresh data dirs, free 127.0.0.1 ports) until a write to the
# first member commits. Each round measures both servers, the order alternating; the table shows
# the median, best and worst over rounds. Run by hand, not in CI; see bench/README.md.
#
# Environment: as bench/lib.sh (ROUNDS [7], KVD_BIN, ETCD_BIN, BENCH_DIR, KEEP).
set -euo pipefail

DEFAULT_ROUNDS=7
WORK_PREFIX=kvd-bench-startup
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init

# first_write KIND BINARY ROUND: starts three members, prints seconds until a PUT commits.
first_write() {
  local kind=$1 bin=$2 round=$3 ports cluster="" i t0 t1 name url
  read -r -a ports < <(free_ports 6)
  for i in 0 1 2; do cluster+="${cluster:+,}$kind$round-$i=http://127.0.0.1:${ports[2 * i + 1]}"; done
  t0=$(date +%s.%N)
  for i in 0 1 2; do
    start_member "$kind$round-$i" "$bin" "${ports[2 * i]}" "${ports[2 * i + 1]}" "$cluster" "st-$kind$round"
  done
  url="http://127.0.0.1:${ports[0]}"
  for ((i = 0; i < 6000; i++)); do
    if curl -sf -o /dev/null --max-time 2 -X PUT "$url/v2/keys/first" -d value=x; then
      t1=$(date +%s.%N)
      break
    fi
    sleep 0.01
  done
  [[ -n "${t1:-}" ]] || die "$kind: no write committed within 60 s"
  for i in 0 1 2; do
    name="$kind$round-$i"
    kill_pid "$name"
    rm -rf "$WORK/$name.data"
  done
  bc -l <<<"$t1 - $t0"
}

echo "bench: kvd=$KVD_BIN etcd=$ETCD_BIN rounds=$ROUNDS" >&2
for ((round = 1; round <= ROUNDS; round++)); do
  if (( round % 2 )); then order=(kvd etcd); else order=(etcd kvd); fi
  for kind in "${order[@]}"; do
    bin="$KVD_BIN"; [[ "$kind" == etcd ]] && bin="$ETCD_BIN"
    s=$(first_write "$kind" "$bin" "$round")
    printf 'round %d %-5s first write %.3f s after exec\n' "$round" "$kind" "$s" >&2
    printf '%s\t%s\tstartup_s\t%s\n' "$round" "$kind" "$s" >>"$RESULTS"
  done
done

stat_of() {  # stat_of KIND median|min|max
  awk -F'\t' -v k="$1" '$2 == k && $3 == "startup_s" { print $4 }' "$RESULTS" | sort -g |
    awk -v w="$2" '{ v[NR] = $1 } END { if (w == "min") print v[1]; else if (w == "max") print v[NR];
                     else print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
echo
echo "Three new members started together until the first committed write; $ROUNDS rounds."
echo
echo "| metric | kvd | etcd | ratio kvd/etcd |"
echo "|---|---:|---:|---:|"
for w in median min max; do
  k=$(stat_of kvd "$w"); e=$(stat_of etcd "$w")
  printf '| exec to first write, %s (s, lower is better) | %.3f | %.3f | %s |\n' "$w" "$k" "$e" "$(ratio "$k" "$e")"
done
