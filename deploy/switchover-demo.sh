#!/usr/bin/env bash
# The book's two-stage zero-downtime switchover, end to end on one machine:
#   - a kvd cluster (etcd0-2) and a kvd proxy (deploy/cluster.sh), unless PROXY_URL names a
#     running one;
#   - backend 1 and backend 2: `python3 -m http.server` serving different pages;
#   - nginx (run as this user, everything under the demo dir) whose "app" upstream is rendered
#     from the keys under /app/upstream through the proxy, by `kvctl exec-watch` running
#     deploy/render-upstream.sh (confd's job; confd is not a Debian package);
#   - a client that requests nginx's page in a loop throughout.
# Stage 1 registers backend 2 next to backend 1 (/app/upstream/py2); stage 2 removes backend 1
# (/app/upstream/py1), then stops it. The script prints the responses in order (runs of the same
# answer) and the failed-request count, and exits 0 only if no request failed and the answers
# moved from backend 1 to backend 2.
#
# Environment (defaults in brackets): DEMO_DIR [a new temporary dir] KEEP [0] 1 keeps it;
#   NGINX_PORT [8000] BACKEND1_PORT [8001] BACKEND2_PORT [8002]; PROXY_URL [] use this proxy
#   instead of starting a cluster: the demo then deletes and rewrites /app/upstream there, so it
#   refuses unless WRITE_TO_PROXY_URL=1 says that cluster may be written to; otherwise
#   cluster.sh's variables (ETCD0_CLIENT ...
#   PROXY_PORT [8080], MEMBER_FLAGS, KVD_BIN); KVCTL_BIN [build/cli/kvctl]; NGINX_BIN [nginx];
#   STAGE_TIMEOUT [30] seconds per stage.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KVCTL_BIN="${KVCTL_BIN:-$REPO_DIR/build/cli/kvctl}"
NGINX_BIN="${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}"
NGINX_PORT="${NGINX_PORT:-8000}"
BACKEND1_PORT="${BACKEND1_PORT:-8001}"
BACKEND2_PORT="${BACKEND2_PORT:-8002}"
STAGE_TIMEOUT="${STAGE_TIMEOUT:-30}"
KEEP="${KEEP:-0}"
DEMO_DIR="${DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/kvd-switchover.XXXXXX")}"
mkdir -p "$DEMO_DIR"

die() { echo "switchover-demo: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*"; }

[[ -x "$NGINX_BIN" ]] || die "nginx not found (apt-get install nginx-light, or set NGINX_BIN)"
[[ -x "$KVCTL_BIN" ]] || die "no kvctl at $KVCTL_BIN (deploy/build.sh, or set KVCTL_BIN)"
command -v python3 >/dev/null || die "python3 is needed for the backends and the client"
command -v curl >/dev/null || die "curl is needed (apt-get install curl)"

# Every port the demo would take, refused before anything starts: a demo half-started on
# someone else's ports would write to their cluster or reload their nginx.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
busy=()
for port in "$NGINX_PORT" "$BACKEND1_PORT" "$BACKEND2_PORT"; do
  port_busy "$port" && busy+=("$port")
done
(( ${#busy[@]} == 0 )) || die "ports in use by another process: ${busy[*]}; nothing started"
if [[ -n "${PROXY_URL:-}" && "${WRITE_TO_PROXY_URL:-0}" != 1 ]]; then
  die "PROXY_URL=$PROXY_URL names a cluster this demo did not start, and the demo deletes and
  rewrites /app/upstream there: set WRITE_TO_PROXY_URL=1 if that is what you want"
fi

declare -A PID=()
OWN_CLUSTER=0
export CLUSTER_DIR="$DEMO_DIR/cluster"
cleanup() {
  local name
  for name in "${!PID[@]}"; do kill -TERM "${PID[$name]}" 2>/dev/null || true; done
  if [[ -f "$DEMO_DIR/nginx/nginx.pid" ]]; then
    kill -QUIT "$(<"$DEMO_DIR/nginx/nginx.pid")" 2>/dev/null || true
  fi
  for name in "${!PID[@]}"; do wait "${PID[$name]}" 2>/dev/null || true; done
  if (( OWN_CLUSTER )); then "$REPO_DIR/deploy/cluster.sh" down >/dev/null 2>&1 || true; fi
  if [[ "$KEEP" == 1 ]]; then echo "demo dir kept: $DEMO_DIR"; else rm -rf "$DEMO_DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the key-value store ----
if [[ -z "${PROXY_URL:-}" ]]; then
  OWN_CLUSTER=1
  PROXY_URL="http://127.0.0.1:${PROXY_PORT:-8080}"
  log "starting a kvd cluster and proxy (deploy/cluster.sh, data in $CLUSTER_DIR)"
  # cluster.sh refuses busy ports and fails unless every process it started runs and answers
  # for the cluster it created: the demo stops there, having written nothing.
  "$REPO_DIR/deploy/cluster.sh" up || die "the cluster did not come up (logs in $CLUSTER_DIR)"
fi
kv() { "$KVCTL_BIN" --no-sync -C "$PROXY_URL" "$@"; }
kv rm --recursive /app/upstream >/dev/null 2>&1 || true

# ---- two backends with different content ----
for n in 1 2; do
  mkdir -p "$DEMO_DIR/backend$n"
  echo "backend $n" >"$DEMO_DIR/backend$n/index.html"
  port_var="BACKEND${n}_PORT"
  python3 -m http.server "${!port_var}" --bind 127.0.0.1 --directory "$DEMO_DIR/backend$n" \
    >"$DEMO_DIR/backend$n.log" 2>&1 &
  PID[backend$n]=$!
done
# Both backends answer before anything is routed to them.
for n in 1 2; do
  port_var="BACKEND${n}_PORT"
  for ((i = 0; i < STAGE_TIMEOUT * 10; i++)); do
    curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:${!port_var}/" && break
    kill -0 "${PID[backend$n]}" 2>/dev/null || die "backend $n exited (log $DEMO_DIR/backend$n.log)"
    sleep 0.1
  done
  curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:${!port_var}/" ||
    die "backend $n does not answer on port ${!port_var}"
done

# ---- nginx, as this user, under the demo dir ----
NG="$DEMO_DIR/nginx"
mkdir -p "$NG/conf.d" "$NG/temp"
USER_LINE=""
[[ "$(id -u)" == 0 ]] && USER_LINE="user root;"
cat >"$NG/nginx.conf" <<EOF
$USER_LINE
worker_processes 1;
pid $NG/nginx.pid;
error_log $NG/error.log warn;
events { worker_connections 512; }
http {
    access_log $NG/access.log;
    client_body_temp_path $NG/temp/client;
    proxy_temp_path $NG/temp/proxy;
    fastcgi_temp_path $NG/temp/fastcgi;
    uwsgi_temp_path $NG/temp/uwsgi;
    scgi_temp_path $NG/temp/scgi;
    include $NG/conf.d/*.conf;
    include $NG/app.conf;
}
EOF
# The site as deploy/nginx/app.conf has it, on the demo's port.
sed "s/listen 80;/listen 127.0.0.1:$NGINX_PORT;/" "$REPO_DIR/deploy/nginx/app.conf" >"$NG/app.conf"
NGINX_ARGS=(-p "$NG" -c "$NG/nginx.conf" -e "$NG/error.log")
render() {
  KV_URL="$PROXY_URL" KVCTL_BIN="$KVCTL_BIN" PATH="$(dirname "$NGINX_BIN"):$PATH" \
    "$REPO_DIR/deploy/render-upstream.sh" "$NG/conf.d/app-upstream.conf" "$@"
}

# Stage 0: backend 1 only, rendered once before nginx starts (confd -onetime).
kv set /app/upstream/py1 "127.0.0.1:$BACKEND1_PORT" >/dev/null
render
"$NGINX_BIN" "${NGINX_ARGS[@]}"
log "nginx on 127.0.0.1:$NGINX_PORT, upstream: $(grep server "$NG/conf.d/app-upstream.conf" | xargs)"

# From now on every change under /app/upstream re-renders the upstream and reloads nginx.
KV_URL="$PROXY_URL" KVCTL_BIN="$KVCTL_BIN" PATH="$(dirname "$NGINX_BIN"):$PATH" \
  "$KVCTL_BIN" --no-sync -C "$PROXY_URL" exec-watch --recursive /app/upstream -- \
  "$REPO_DIR/deploy/render-upstream.sh" "$NG/conf.d/app-upstream.conf" "${NGINX_ARGS[@]}" \
  >"$DEMO_DIR/exec-watch.log" 2>&1 &
PID[exec-watch]=$!

# ---- the client: one request at a time, new connection each, until told to stop ----
CLIENT_LOG="$DEMO_DIR/client.log"
: >"$CLIENT_LOG"
python3 - "$NGINX_PORT" "$CLIENT_LOG" "$DEMO_DIR/client.stop" <<'EOF' &
import http.client, os, sys, time
port, log, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(log, "a", buffering=1) as out:
    while not os.path.exists(stop):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/")
            r = c.getresponse()
            body = r.read().decode(errors="replace").strip()
            c.close()
            one_line = " ".join(body.split())
            out.write(f"{r.status} {one_line}\n" if r.status == 200 else f"FAIL {r.status} {one_line[:60]}\n")
        except Exception as e:  # noqa: BLE001 - any failure counts
            out.write(f"FAIL {type(e).__name__}: {' '.join(str(e).split())}\n")
        time.sleep(0.005)
EOF
PID[client]=$!

# wait_for DESCRIPTION COMMAND...: until COMMAND succeeds, at most STAGE_TIMEOUT seconds.
wait_for() {
  local what=$1 i
  shift
  for ((i = 0; i < STAGE_TIMEOUT * 20; i++)); do
    if "$@"; then return 0; fi
    sleep 0.05
  done
  die "timed out waiting for $what (logs in $DEMO_DIR; KEEP=1 keeps them)"
}
recent() { tail -n "${2:-20}" "$CLIENT_LOG" | grep -c "^200 backend $1\$" || true; }
seen() { grep -q "^200 backend $1\$" "$CLIENT_LOG"; }
only_backend2() { [[ $(recent 2 30) == 30 ]]; }
both_recent() { (( $(recent 1 10) >= 3 && $(recent 2 10) >= 3 )); }
upstream_is() { [[ "$(grep -c server "$NG/conf.d/app-upstream.conf")" == "$1" ]]; }

wait_for "the first answers from backend 1" seen 1
log "client running; answers from backend 1"

log "stage 1: kvctl set /app/upstream/py2 127.0.0.1:$BACKEND2_PORT"
kv set /app/upstream/py2 "127.0.0.1:$BACKEND2_PORT" >/dev/null
wait_for "nginx to render two servers" upstream_is 2
wait_for "answers from both backends" both_recent
log "both backends answer"

log "stage 2: kvctl rm /app/upstream/py1"
kv rm /app/upstream/py1 >/dev/null
wait_for "nginx to render backend 2 only" upstream_is 1
wait_for "30 answers in a row from backend 2" only_backend2
log "only backend 2 answers; stopping backend 1"
kill -TERM "${PID[backend1]}"
wait "${PID[backend1]}" 2>/dev/null || true
unset 'PID[backend1]'
sleep 1
touch "$DEMO_DIR/client.stop"
wait "${PID[client]}" 2>/dev/null || true
unset 'PID[client]'

# ---- the report ----
total=$(wc -l <"$CLIENT_LOG")
failed=$(grep -c '^FAIL' "$CLIENT_LOG" || true)
echo
echo "responses in order:"
awk '
  /^200 backend 2$/ && !first2 { first2 = NR }
  /^200 backend 1$/ { last1 = NR }
  { line[NR] = $0 }
  END {
    if (!first2) first2 = NR + 1
    if (last1 < first2) last1 = first2 - 1
    for (i = 1; i <= NR; i++) {
      p = i < first2 ? 1 : i <= last1 ? 2 : 3
      n[p]++
      if (line[i] == "200 backend 1") b1[p]++
      else if (line[i] == "200 backend 2") b2[p]++
      else f[p]++
    }
    split("backend 1 only|both backends|backend 2 only", name, "|")
    for (p = 1; p <= 3; p++)
      printf "  %-15s %5d requests: backend 1 %d, backend 2 %d, failed %d\n", name[p] ":", n[p], b1[p], b2[p], f[p]
  }' "$CLIENT_LOG"
echo
echo "requests: $total  failed: $failed"
first=$(grep -m1 '^200 ' "$CLIENT_LOG" || true)
last=$(grep '^200 ' "$CLIENT_LOG" | tail -n 1 || true)
if [[ "$failed" != 0 ]]; then
  grep '^FAIL' "$CLIENT_LOG" | head -n 5 >&2
  die "$failed requests failed"
fi
[[ "$first" == "200 backend 1" && "$last" == "200 backend 2" ]] ||
  die "the answers did not switch from backend 1 to backend 2 (first '$first', last '$last')"
echo "switchover complete: backend 1 -> backend 2 with 0 failed requests"
