# Shared by the bench/run*.sh scripts (sourced, not run): settings, checks, process cleanup,
# free ports, the wrk Lua scripts, one wrk run recorded in $RESULTS, medians and ratios.
#
# The sourcing script sets DEFAULT_ROUNDS, DEFAULT_DURATION and WORK_PREFIX first, then calls
# bench_init, which checks the tools and settings, makes $WORK and installs the exit trap.
# Environment read here (defaults in brackets): KVD_BIN [build/server/kvd] ETCD_BIN
# [/usr/bin/etcd] ROUNDS DURATION CONNS [64] THREADS [2; with CLIENT_CPUS, one per client CPU]
# VALUE_BYTES [64] BENCH_DIR [/var/tmp] KEEP [0] READ_PAUSE_MS [4] WRITE_PAUSE_MS [16]
# KEY_SPACE [0] SERVER_CPUS [] CLIENT_CPUS [], and WORKLOADS [every workload of the script] in
# pick_workloads.
# SERVER_CPUS and CLIENT_CPUS (taskset lists, say 0 and 1) pin the servers and the load
# generators to their own cores, so that what a server serves is not capped by the CPU the load
# generator takes from it on the same cores; unset, nothing is pinned. Pinned, wrk runs one
# thread per client CPU unless THREADS says otherwise: two wrk threads taking turns on one core
# cost it a third of its requests per second (over https, 40k against 59k req/s on this
# machine), which then caps the faster server.

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KVD_BIN="${KVD_BIN:-$REPO_DIR/build/server/kvd}"
ETCD_BIN="${ETCD_BIN:-/usr/bin/etcd}"
ROUNDS="${ROUNDS:-${DEFAULT_ROUNDS:-3}}"
DURATION="${DURATION:-${DEFAULT_DURATION:-5}}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-}"
VALUE_BYTES="${VALUE_BYTES:-64}"
KEY_SPACE="${KEY_SPACE:-0}"
BENCH_DIR="${BENCH_DIR:-/var/tmp}"
KEEP="${KEEP:-0}"
READ_PAUSE_MS="${READ_PAUSE_MS:-4}"
WRITE_PAUSE_MS="${WRITE_PAUSE_MS:-16}"
SERVER_CPUS="${SERVER_CPUS:-}"
CLIENT_CPUS="${CLIENT_CPUS:-}"
SERVER_PIN=()
CLIENT_PIN=()
# The script's workloads, set by pick_workloads (never from the environment); empty: every
# metric's row prints.
KNOWN_WORKLOADS=""

declare -A PID=()

die() { echo "bench: $*" >&2; exit 2; }

# kill_pid NAME: SIGTERM, up to 5 s, then SIGKILL; forgets the process.
kill_pid() {
  local name=$1 pid="${PID[$1]:-}" i
  [[ -n "$pid" ]] || return 0
  unset "PID[$name]"
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

bench_cleanup() {
  local name
  for name in "${!PID[@]}"; do kill_pid "$name"; done
  if [[ "$KEEP" == 1 ]]; then echo "bench: work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}

bench_init() {
  local tool n
  for tool in wrk curl python3 bc; do
    command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install $tool)"
  done
  [[ -x "$ETCD_BIN" ]] || die "etcd not found at $ETCD_BIN (apt-get install etcd-server, or set ETCD_BIN)"
  [[ -x "$KVD_BIN" ]] || die "kvd binary not found at $KVD_BIN: build it (ninja -C build kvd) or set KVD_BIN"
  if [[ -n "$SERVER_CPUS" || -n "$CLIENT_CPUS" ]]; then
    [[ -n "$SERVER_CPUS" && -n "$CLIENT_CPUS" ]] || die "set both SERVER_CPUS and CLIENT_CPUS, or neither"
    command -v taskset >/dev/null || die "taskset is not installed (apt-get install util-linux)"
    taskset -c "$SERVER_CPUS" true 2>/dev/null || die "SERVER_CPUS=$SERVER_CPUS is not a usable CPU list"
    taskset -c "$CLIENT_CPUS" true 2>/dev/null || die "CLIENT_CPUS=$CLIENT_CPUS is not a usable CPU list"
    SERVER_PIN=(taskset -c "$SERVER_CPUS")
    CLIENT_PIN=(taskset -c "$CLIENT_CPUS")
  fi
  # One wrk thread per client CPU when pinned, else 2.
  if [[ -z "$THREADS" ]]; then
    if ((${#CLIENT_PIN[@]})); then THREADS=$("${CLIENT_PIN[@]}" nproc); else THREADS=2; fi
  fi
  for n in "$ROUNDS" "$DURATION" "$CONNS" "$THREADS" "$VALUE_BYTES" "$READ_PAUSE_MS" "$WRITE_PAUSE_MS"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS, DURATION, CONNS, THREADS, VALUE_BYTES, READ_PAUSE_MS and WRITE_PAUSE_MS must be positive integers"
  done
  (( THREADS <= CONNS )) || die "THREADS ($THREADS) must not exceed CONNS ($CONNS)"
  [[ "$KEY_SPACE" =~ ^(0|[1-9][0-9]*)$ ]] || die "KEY_SPACE must be 0 or a positive integer"
  WORK="$(mktemp -d "$BENCH_DIR/${WORK_PREFIX:-kvd-bench}.XXXXXX")"
  RESULTS="$WORK/results.tsv"   # round, target, metric, value
  : >"$RESULTS"
  VALUE="$(head -c "$VALUE_BYTES" /dev/zero | tr '\0' x)"
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  write_lua_scripts
}

# free_ports N: N distinct free 127.0.0.1 ports on one line, all held open while chosen.
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
}

# start_member NAME BINARY CLIENT_PORT PEER_PORT INITIAL_CLUSTER TOKEN [TLS_PORT CERT KEY]: same
# flags for kvd and etcd (kvd accepts and ignores --enable-v2); logs to $WORK/NAME.log. With
# TLS_PORT, the member also serves clients on https://127.0.0.1:TLS_PORT with the certificate
# CERT and its key KEY (--cert-file, --key-file), beside the http port.
start_member() {
  local name=$1 bin=$2 c="http://127.0.0.1:$3" p="http://127.0.0.1:$4" tls=()
  if [[ -n "${7:-}" ]]; then
    c="$c,https://127.0.0.1:$7"
    tls=(--cert-file "$8" --key-file "$9")
  fi
  "${SERVER_PIN[@]}" "$bin" --name "$name" --data-dir "$WORK/$name.data" \
    --listen-client-urls "$c" --advertise-client-urls "$c" \
    --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" \
    --initial-cluster "$5" --initial-cluster-token "$6" --initial-cluster-state new \
    "${tls[@]}" --enable-v2 --log-level error >>"$WORK/$name.log" 2>&1 &
  PID[$name]=$!
}

# wait_write NAME URL: until a write of /bench-read through URL succeeds, at most 60 s.
wait_write() {
  local name=$1 url=$2 i
  for ((i = 0; i < 600; i++)); do
    if [[ -n "${PID[$name]:-}" ]] && ! kill -0 "${PID[$name]}" 2>/dev/null; then
      tail -n 20 "$WORK/$name.log" >&2
      die "$name exited during start-up (log above)"
    fi
    if curl -sf -o /dev/null --max-time 2 -X PUT "$url/v2/keys/bench-read" \
         --data-urlencode "value=$VALUE"; then return 0; fi
    sleep 0.1
  done
  tail -n 20 "$WORK/$name.log" >&2
  die "$name did not accept a write on $url within 60 s"
}

# read.lua: GETs of the URL given. write.lua: PUT /v2/keys/bench/<run>-<thread>-<n>, distinct
# across threads and runs (args: run name, value bytes, and a key space: when over 0, each
# thread cycles through that many keys instead, /v2/keys/bench/ks-<thread>-<n mod space>, the
# same in every run, so that the store stops growing with the requests). readp.lua and
# writep.lua: the same, each connection pausing a given number of milliseconds before each
# request (writep: the third argument, the key space the fourth), so that the load is set by
# the pause and not by how fast the server answers. All print one RESULT line.
write_lua_scripts() {
  cat >"$WORK/report.lua" <<'EOF'
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.1f p50_us=%d p99_us=%d errors=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout, summary.requests))
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
  for k, v in pairs(wrk.headers) do
    if headers[k] == nil then headers[k] = v end
  end
  space = tonumber(args[3]) or 0
  n = 0
end
function request()
  n = n + 1
  if space > 0 then
    return wrk.format("PUT", "/v2/keys/bench/ks-" .. tid .. "-" .. (n % space), headers, body)
  end
  return wrk.format("PUT", "/v2/keys/bench/" .. run .. "-" .. tid .. "-" .. n, headers, body)
end
EOF
  cat "$WORK/report.lua" >>"$WORK/write.lua"
  cat >"$WORK/readp.lua" <<'EOF'
function init(args) pause = tonumber(args[1]) end
function delay() return pause end
EOF
  cat "$WORK/report.lua" >>"$WORK/readp.lua"
  sed -e 's/^  n = 0$/  n = 0\n  pause = tonumber(args[3])/' \
      -e 's/^  space = tonumber(args\[3\]) or 0$/  space = tonumber(args[4]) or 0/' \
      "$WORK/write.lua" >"$WORK/writep.lua"
  echo 'function delay() return pause end' >>"$WORK/writep.lua"
}

# store_sets URL: the successful sets the server at URL counted (its /v2/stats/store).
store_sets() {
  curl -sf --max-time 5 "$1/v2/stats/store" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["setsSuccess"])'
}

# result_field LINE NAME: one field of a RESULT line.
result_field() { sed -E "s/.* $2=([^ ]+).*/\\1/" <<<"$1"; }

# record ROUND TARGET WORKLOAD RPS P50_US P99_US ERRORS: prints the run on stderr and appends
# its metrics (WORKLOAD_rps, _p50_ms, _p99_ms, _errors) to $RESULTS.
record() {
  local round=$1 target=$2 workload=$3 rps=$4 p50 p99 errors=$7
  p50=$(bc -l <<<"$5/1000")
  p99=$(bc -l <<<"$6/1000")
  printf 'round %d %-12s %-8s %10.1f req/s  p50 %8.3f ms  p99 %8.3f ms  errors %d\n' \
    "$round" "$target" "$workload" "$rps" "$p50" "$p99" "$errors" >&2
  printf '%s\t%s\t%s_rps\t%s\n' "$round" "$target" "$workload" "$rps" >>"$RESULTS"
  printf '%s\t%s\t%s_p50_ms\t%s\n' "$round" "$target" "$workload" "$p50" >>"$RESULTS"
  printf '%s\t%s\t%s_p99_ms\t%s\n' "$round" "$target" "$workload" "$p99" >>"$RESULTS"
  printf '%s\t%s\t%s_errors\t%s\n' "$round" "$target" "$workload" "$errors" >>"$RESULTS"
}

# quiesce: waits (up to 15 s) until the machine is at least 90% idle over a quarter second, so
# that no run pays for the background work (flushes, snapshots, compactions) the previous run
# left to either server.
quiesce() {
  local i a b
  for ((i = 0; i < 60; i++)); do
    a=$(awk '/^cpu /{ print $2 + $3 + $4 + $5 + $6 + $7 + $8, $5 + $6 }' /proc/stat)
    sleep 0.25
    b=$(awk '/^cpu /{ print $2 + $3 + $4 + $5 + $6 + $7 + $8, $5 + $6 }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
      t = y[1] - x[1]; exit !(t > 0 && (y[2] - x[2]) / t >= 0.9) }' && return 0
  done
  echo "bench: the machine did not settle within 15 s; measuring anyway" >&2
}

# wrk_result TARGET WORKLOAD WRK_ARGS...: runs wrk and prints its RESULT line.
# WRK_ARGS: extra wrk arguments for every run (say, -H "Authorization: ..."); none by default.
WRK_ARGS=()
wrk_result() {
  local target=$1 workload=$2 out line
  shift 2
  out=$("${CLIENT_PIN[@]}" wrk --timeout 10s "${WRK_ARGS[@]}" "$@") || die "$target $workload: wrk failed: $out"
  line=$(grep '^RESULT ' <<<"$out") || die "$target $workload: no result from wrk: $out"
  echo "$line"
}

# run_wrk ROUND TARGET WORKLOAD URL [LABEL]: one of the standard workloads against URL (http or
# https), recorded as LABEL (default WORKLOAD; a LABEL also goes into the written keys, which
# stay distinct from the unlabelled runs'), on a quiet machine (quiesce).
#   reads   GET /v2/keys/bench-read, $CONNS connections     read1   the same on one connection
#   writes  PUT distinct keys, $CONNS connections            write1  the same on one connection
#   readp   reads, each connection pausing $READ_PAUSE_MS before each request
#   writep  writes, each connection pausing $WRITE_PAUSE_MS before each request
# Also records LABEL_cpu_us: the server's CPU time (user + system, all threads, and its child
# processes, which kvd no longer uses for snapshots) per request, from the start of the run until
# the machine is quiet again after it (the work the run left behind, a snapshot or a
# compaction, is part of its cost), when TARGET is a process started here; on a machine whose
# cores the load generator shares, throughput is capped by both, and this is the server's own
# cost.
run_wrk() {
  local round=$1 target=$2 workload=$3 url=$4 label=${5:-$3} tag="${5:+$5-}" line cpu0 cpu1 n
  quiesce
  cpu0=$(cpu_ticks "$target")
  case "$workload" in
    reads)  line=$(wrk_result "$target" "$workload" -t"$THREADS" -c"$CONNS" -d"${DURATION}s" \
                     -s "$WORK/read.lua" "$url/v2/keys/bench-read") ;;
    read1)  line=$(wrk_result "$target" "$workload" -t1 -c1 -d"${DURATION}s" \
                     -s "$WORK/read.lua" "$url/v2/keys/bench-read") ;;
    qreads) line=$(wrk_result "$target" "$workload" -t"$THREADS" -c"$CONNS" -d"${DURATION}s" \
                     -s "$WORK/read.lua" "$url/v2/keys/bench-read?quorum=true") ;;
    qread1) line=$(wrk_result "$target" "$workload" -t1 -c1 -d"${DURATION}s" \
                     -s "$WORK/read.lua" "$url/v2/keys/bench-read?quorum=true") ;;
    writes) line=$(wrk_result "$target" "$workload" -t"$THREADS" -c"$CONNS" -d"${DURATION}s" \
                     -s "$WORK/write.lua" "$url" -- "${tag}w$round-$target" "$VALUE_BYTES" "$KEY_SPACE") ;;
    write1) line=$(wrk_result "$target" "$workload" -t1 -c1 -d"${DURATION}s" \
                     -s "$WORK/write.lua" "$url" -- "${tag}l$round-$target" "$VALUE_BYTES" "$KEY_SPACE") ;;
    readp)  line=$(wrk_result "$target" "$workload" -t"$THREADS" -c"$CONNS" -d"${DURATION}s" \
                     -s "$WORK/readp.lua" "$url/v2/keys/bench-read" -- "$READ_PAUSE_MS") ;;
    writep) line=$(wrk_result "$target" "$workload" -t"$THREADS" -c"$CONNS" -d"${DURATION}s" \
                     -s "$WORK/writep.lua" "$url" -- "${tag}p$round-$target" "$VALUE_BYTES" "$WRITE_PAUSE_MS" \
                     "$KEY_SPACE") ;;
    *) die "unknown workload $workload" ;;
  esac
  quiesce
  cpu1=$(cpu_ticks "$target")
  record "$round" "$target" "$label" "$(result_field "$line" rps)" \
    "$(result_field "$line" p50_us)" "$(result_field "$line" p99_us)" "$(result_field "$line" errors)"
  n=$(result_field "$line" requests)
  if [[ -n "$cpu0" && -n "$cpu1" && "$n" =~ ^[1-9][0-9]*$ ]]; then
    printf '%s\t%s\t%s_cpu_us\t%s\n' "$round" "$target" "$label" \
      "$(bc -l <<<"($cpu1 - $cpu0) * 1000000 / $CLK_TCK / $n")" >>"$RESULTS"
  fi
}

# disk_floor ROUND: what one durable 4 KiB write costs the disk the data dirs are on, measured
# with plain system calls in $WORK (p50 of 2000 each, recorded for target "disk"):
#   floor_append_ms     write() at the end of a file, then fdatasync(): the file grows, so the
#                       sync writes the data and then the journal (the inode's size, new blocks)
#   floor_overwrite_ms  pwrite() over blocks written and synced before, then fdatasync(): the
#                       data alone, one trip to the device
disk_floor() {
  python3 - "$WORK/disk-floor.dat" "$1" >>"$RESULTS" <<'PY'
import os, statistics, sys, time
path, rnd = sys.argv[1], sys.argv[2]
buf, n = b"x" * 4096, 2000
def p50(write):
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_RDWR, 0o644)
    try:
        if write == "overwrite":
            os.write(fd, buf * n)
            os.fdatasync(fd)
        took = []
        for i in range(n):
            t = time.perf_counter()
            if write == "append":
                os.write(fd, buf)
            else:
                os.pwrite(fd, buf, i * len(buf))
            os.fdatasync(fd)
            took.append(time.perf_counter() - t)
        return statistics.median(took) * 1000
    finally:
        os.close(fd)
        os.unlink(path)
for write in ("append", "overwrite"):
    print(f"{rnd}\tdisk\tfloor_{write}_ms\t{p50(write):.4f}")
PY
}

# cpu_ticks TARGET: user + system clock ticks of TARGET's process so far, with those of its
# children that ended and were waited for, or nothing when it is not a process started here.
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() {
  local pid="${PID[$1]:-}"
  [[ -n "$pid" && -r "/proc/$pid/stat" ]] || return 0
  # Fields after the command name, which is in parentheses and may hold spaces: utime, stime,
  # cutime and cstime are the 12th to 15th of them (14th to 17th of the line).
  sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 + $14 + $15 }'
}

# median TARGET METRIC: the median over rounds.
median() {
  awk -F'\t' -v s="$1" -v m="$2" '$2 == s && $3 == m { print $4 }' "$RESULTS" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# pick_workloads KNOWN...: the script's workloads. WORKLOADS (default: all of KNOWN, in that
# order) must name at least one, and only known ones; the table rows of the others are left out.
pick_workloads() {
  KNOWN_WORKLOADS="$*"
  WORKLOADS="${WORKLOADS:-$KNOWN_WORKLOADS}"
  local w
  for w in $WORKLOADS; do
    [[ " $KNOWN_WORKLOADS " == *" $w "* ]] || die "unknown workload '$w' (known: $KNOWN_WORKLOADS)"
  done
  [[ -n "${WORKLOADS// /}" ]] || die "WORKLOADS names no workload (known: $KNOWN_WORKLOADS)"
}

# ran METRIC: false when METRIC (reads_p99_ms: workload, then what; or a workload's bare name) is
# one of a known workload that WORKLOADS left out; metrics of no workload (a handshake rate, the
# disk's floor) always ran.
ran() {
  local w=${1%%_*}
  [[ -z "$KNOWN_WORKLOADS" || " $KNOWN_WORKLOADS " != *" $w "* || " $WORKLOADS " == *" $w "* ]]
}

# row LABEL METRIC FORMAT: a table row of the medians for targets kvd and etcd and their ratio
# (none when the metric's workload was not run).
row() {
  local k e
  ran "$2" || return 0
  k=$(median kvd "$2")
  e=$(median etcd "$2")
  printf "| %s | $3 | $3 | %s |\n" "$1" "$k" "$e" "$(ratio "$k" "$e")"
}

# row2 VARIANT LABEL METRIC FORMAT: a table row comparing two ways of running the same workload
# (plain METRIC, and VARIANT_METRIC: over https, with auth...): the medians of both servers for
# each, the kvd/etcd ratio for each, and what the variant costs each server (variant/plain).
# None when the workload was not run.
row2() {
  local kh eh kt et
  ran "$3" || return 0
  kh=$(median kvd "$3"); eh=$(median etcd "$3")
  kt=$(median kvd "$1_$3"); et=$(median etcd "$1_$3")
  printf "| %s | $4 | $4 | %s | $4 | $4 | **%s** | %s | %s |\n" "$2" "$kh" "$eh" "$(ratio "$kh" "$eh")" \
    "$kt" "$et" "$(ratio "$kt" "$et")" "$(ratio "$kt" "$kh")" "$(ratio "$et" "$eh")"
}

# ratio A B: A/B with two decimals, n/a when B is 0.
ratio() { if [[ $(bc -l <<<"$2 == 0") == 1 ]]; then echo "n/a"; else printf '%.2f' "$(bc -l <<<"$1 / $2")"; fi; }

# total_errors: failed requests over every run recorded.
total_errors() { awk -F'\t' '$3 ~ /_errors$/ { t += $4 } END { print t + 0 }' "$RESULTS"; }

# warn_on_errors: prints a warning and exits 1 when any request failed.
warn_on_errors() {
  local errors
  errors=$(total_errors)
  if (( errors > 0 )); then
    echo "WARNING: $errors failed requests (non-2xx/3xx, timeouts, socket errors); the numbers above are not comparable."
    exit 1
  fi
}
