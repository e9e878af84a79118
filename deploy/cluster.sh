#!/usr/bin/env bash
# The book's etcd topology on one machine, with kvd: members etcd0, etcd1, etcd2 and a proxy in
# front of them.
#
#   deploy/cluster.sh up            start every process not running yet, wait until the proxy
#                                   answers writes and every member belongs to this cluster;
#                                   refuses busy ports before starting anything, and fails with
#                                   the log line of a process that died
#   deploy/cluster.sh down          stop them all (SIGTERM, then SIGKILL after 10 s); data stays
#   deploy/cluster.sh status        processes, members and leader (through the proxy), health
#   deploy/cluster.sh kill NAME     SIGKILL one process (etcd0, etcd1, etcd2 or proxy)
#   deploy/cluster.sh start NAME    start one process again (with its existing data)
#
# Environment (defaults in brackets):
#   CLUSTER_DIR [./cluster-data]  data dirs, logs (NAME.log) and pid files (NAME.pid)
#   KVD_BIN [build/server/kvd]  KVCTL_BIN [build/cli/kvctl]  HOST [127.0.0.1]
#   ETCD0_CLIENT [2379] ETCD0_PEER [2380]  ETCD1_CLIENT [2479] ETCD1_PEER [2480]
#   ETCD2_CLIENT [2579] ETCD2_PEER [2580]  PROXY_PORT [8080]  PROXY_MODE [on]
#   TOKEN [etcd-cluster-1]  MEMBER_FLAGS [] extra kvd flags for members (e.g. timing)
#   PROXY_FLAGS [] extra kvd flags for the proxy  START_TIMEOUT [30] seconds
# KVD_BIN=/usr/bin/etcd runs the same topology with etcd (members get --enable-v2).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER_DIR="${CLUSTER_DIR:-$PWD/cluster-data}"
KVD_BIN="${KVD_BIN:-$REPO_DIR/build/server/kvd}"
KVCTL_BIN="${KVCTL_BIN:-$REPO_DIR/build/cli/kvctl}"
HOST="${HOST:-127.0.0.1}"
ETCD0_CLIENT="${ETCD0_CLIENT:-2379}"; ETCD0_PEER="${ETCD0_PEER:-2380}"
ETCD1_CLIENT="${ETCD1_CLIENT:-2479}"; ETCD1_PEER="${ETCD1_PEER:-2480}"
ETCD2_CLIENT="${ETCD2_CLIENT:-2579}"; ETCD2_PEER="${ETCD2_PEER:-2580}"
PROXY_PORT="${PROXY_PORT:-8080}"
PROXY_MODE="${PROXY_MODE:-on}"
TOKEN="${TOKEN:-etcd-cluster-1}"
MEMBER_FLAGS="${MEMBER_FLAGS:-}"
PROXY_FLAGS="${PROXY_FLAGS:-}"
START_TIMEOUT="${START_TIMEOUT:-30}"

MEMBERS=(etcd0 etcd1 etcd2)
declare -A CLIENT=([etcd0]=$ETCD0_CLIENT [etcd1]=$ETCD1_CLIENT [etcd2]=$ETCD2_CLIENT)
declare -A PEER=([etcd0]=$ETCD0_PEER [etcd1]=$ETCD1_PEER [etcd2]=$ETCD2_PEER)
PROXY_URL="http://$HOST:$PROXY_PORT"
INITIAL_CLUSTER="etcd0=http://$HOST:$ETCD0_PEER,etcd1=http://$HOST:$ETCD1_PEER,etcd2=http://$HOST:$ETCD2_PEER"

die() { echo "cluster.sh: $*" >&2; exit 1; }

[[ -x "$KVD_BIN" ]] || die "no kvd binary at $KVD_BIN (deploy/build.sh, or set KVD_BIN)"
mkdir -p "$CLUSTER_DIR"

pid_of() {  # NAME -> the pid if that process is running, else nothing (exit 1)
  local f="$CLUSTER_DIR/$1.pid" pid
  [[ -f "$f" ]] || return 1
  pid=$(<"$f")
  if kill -0 "$pid" 2>/dev/null && [[ "$(cat "/proc/$pid/cmdline" 2>/dev/null | tr '\0' ' ')" == *"$CLUSTER_DIR/$1"* ]]; then
    echo "$pid"
    return 0
  fi
  return 1
}

ports_of() {  # NAME -> the ports it listens on
  if [[ "$1" == proxy ]]; then echo "$PROXY_PORT"; else echo "${CLIENT[$1]} ${PEER[$1]}"; fi
}

port_busy() {  # PORT: something accepts connections on HOST:PORT
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

last_words() {  # NAME: the log lines that say why it stopped
  grep -E ' [CE] \||"level":"(error|fatal)"|error|cannot' "$CLUSTER_DIR/$1.log" 2>/dev/null |
    tail -n 3 | sed 's/^/  /'
}

# The cluster id every member reports (X-Etcd-Cluster-Id of GET /v2/members); recorded at the
# first `up` in CLUSTER_DIR/cluster-id, so that a later `up` or `status` notices another cluster
# answering on these ports.
cluster_id_at() {  # URL -> the id, or nothing
  curl -s -o /dev/null -D - --max-time 3 "$1/v2/members" 2>/dev/null |
    tr -d '\r' | sed -nE 's/^[Xx]-[Ee]tcd-[Cc]luster-[Ii]d: *([0-9a-f]+)$/\1/p'
}

check_members() {  # every member answers, all with one cluster id, the recorded one
  local name id ids=() recorded=""
  [[ -f "$CLUSTER_DIR/cluster-id" ]] && recorded=$(<"$CLUSTER_DIR/cluster-id")
  for name in "${MEMBERS[@]}"; do
    id=$(cluster_id_at "http://$HOST:${CLIENT[$name]}")
    [[ -n "$id" ]] || die "$name does not answer on http://$HOST:${CLIENT[$name]}"
    ids+=("$id")
  done
  [[ "$(printf '%s\n' "${ids[@]}" | sort -u | wc -l)" == 1 ]] ||
    die "the members report different clusters (${ids[*]}): these ports are not all this cluster's"
  if [[ -n "$recorded" && "$recorded" != "${ids[0]}" ]]; then
    die "the members answer for cluster ${ids[0]}, but this cluster ($CLUSTER_DIR) is $recorded"
  fi
  [[ -n "$recorded" ]] || echo "${ids[0]}" >"$CLUSTER_DIR/cluster-id"
  echo "cluster ${ids[0]}: etcd0, etcd1, etcd2"
}

start_one() {  # NAME
  local name=$1 pid extra=()
  if pid=$(pid_of "$name"); then
    echo "$name already running (pid $pid)"
    return 0
  fi
  [[ "$(basename "$KVD_BIN")" == etcd ]] && extra=(--enable-v2)
  if [[ "$name" == proxy ]]; then
    # shellcheck disable=SC2086
    setsid "$KVD_BIN" --proxy "$PROXY_MODE" --data-dir "$CLUSTER_DIR/proxy" \
      --listen-client-urls "$PROXY_URL" --initial-cluster "$INITIAL_CLUSTER" $PROXY_FLAGS \
      >>"$CLUSTER_DIR/proxy.log" 2>&1 </dev/null &
  else
    [[ -n "${CLIENT[$name]:-}" ]] || die "unknown process '$name' (etcd0, etcd1, etcd2, proxy)"
    local client="http://$HOST:${CLIENT[$name]}" peer="http://$HOST:${PEER[$name]}"
    # shellcheck disable=SC2086
    setsid "$KVD_BIN" --name "$name" --data-dir "$CLUSTER_DIR/$name" \
      --listen-client-urls "$client" --advertise-client-urls "$client" \
      --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
      --initial-cluster-token "$TOKEN" --initial-cluster "$INITIAL_CLUSTER" \
      --initial-cluster-state new "${extra[@]}" $MEMBER_FLAGS \
      >>"$CLUSTER_DIR/$name.log" 2>&1 </dev/null &
  fi
  echo $! >"$CLUSTER_DIR/$name.pid"
  echo "started $name (pid $!, log $CLUSTER_DIR/$name.log)"
}

wait_proxy_writes() {  # until a write through the proxy succeeds
  local i
  for ((i = 0; i < START_TIMEOUT * 10; i++)); do
    if curl -sf -o /dev/null --max-time 2 -X PUT "$PROXY_URL/v2/keys/_cluster_sh/up" -d value=ok; then
      curl -sf -o /dev/null --max-time 2 -X DELETE "$PROXY_URL/v2/keys/_cluster_sh?recursive=true" || true
      echo "cluster up: proxy $PROXY_URL"
      return 0
    fi
    # No point waiting once the proxy or a quorum of members is gone.
    local dead=0 name
    for name in "${MEMBERS[@]}"; do pid_of "$name" >/dev/null || dead=$((dead + 1)); done
    if (( dead >= 2 )) || ! pid_of proxy >/dev/null; then break; fi
    sleep 0.1
  done
  local name
  for name in "${MEMBERS[@]}" proxy; do
    pid_of "$name" >/dev/null && continue
    echo "cluster.sh: $name is not running; its log ($CLUSTER_DIR/$name.log) says:" >&2
    last_words "$name" >&2
  done
  die "the proxy at $PROXY_URL accepted no write (logs in $CLUSTER_DIR)"
}

stop_one() {  # NAME
  local name=$1 pid i
  if ! pid=$(pid_of "$name"); then
    rm -f "$CLUSTER_DIR/$name.pid"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$CLUSTER_DIR/$name.pid"
  echo "stopped $name"
}

status() {
  local name pid
  for name in "${MEMBERS[@]}" proxy; do
    if pid=$(pid_of "$name"); then
      printf '%-6s running (pid %s)\n' "$name" "$pid"
    else
      printf '%-6s stopped\n' "$name"
    fi
  done
  echo
  # Only what this script started: no proxy of ours, no cluster view (another process may
  # answer on the port); a proxy that answers for another cluster is said so.
  if ! pid_of proxy >/dev/null; then
    echo "the proxy is not running: no cluster view (deploy/cluster.sh start proxy)"
    return 0
  fi
  local recorded="" seen
  [[ -f "$CLUSTER_DIR/cluster-id" ]] && recorded=$(<"$CLUSTER_DIR/cluster-id")
  seen=$(cluster_id_at "$PROXY_URL")
  if [[ -n "$recorded" && -n "$seen" && "$seen" != "$recorded" ]]; then
    echo "the proxy answers for cluster $seen, not this cluster ($recorded): not shown"
    return 0
  fi
  echo "members (through the proxy $PROXY_URL, cluster ${seen:-unknown}):"
  "$KVCTL_BIN" --no-sync -C "$PROXY_URL" member list 2>&1 | sed 's/^/  /' || true
  local leader
  leader=$(curl -sf --max-time 3 "$PROXY_URL/v2/members/leader" 2>/dev/null | sed -nE 's/.*"name":"([^"]*)".*/\1/p' || true)
  echo "leader: ${leader:-none}"
  echo
  echo "health:"
  "$KVCTL_BIN" --no-sync -C "$PROXY_URL" cluster-health 2>&1 | sed 's/^/  /' || true
}

cmd="${1:-}"
case "$cmd" in
  up)
    # Nothing starts while a port it needs is taken by something else.
    busy=()
    for name in "${MEMBERS[@]}" proxy; do
      pid_of "$name" >/dev/null && continue
      for port in $(ports_of "$name"); do
        port_busy "$port" && busy+=("$HOST:$port ($name)")
      done
    done
    (( ${#busy[@]} == 0 )) || die "ports in use by another process: ${busy[*]}; nothing started"
    started=()
    for name in "${MEMBERS[@]}" proxy; do
      pid_of "$name" >/dev/null || started+=("$name")
      start_one "$name"
    done
    wait_proxy_writes
    for name in "${started[@]}"; do
      pid_of "$name" >/dev/null && continue
      echo "cluster.sh: $name exited; its log ($CLUSTER_DIR/$name.log) says:" >&2
      last_words "$name" >&2
      exit 1
    done
    check_members
    ;;
  down)
    for name in proxy "${MEMBERS[@]}"; do stop_one "$name"; done
    ;;
  status)
    status
    ;;
  kill)
    [[ -n "${2:-}" ]] || die "usage: cluster.sh kill NAME"
    pid=$(pid_of "$2") || die "$2 is not running"
    kill -KILL "$pid"
    echo "killed $2 (pid $pid)"
    ;;
  start)
    [[ -n "${2:-}" ]] || die "usage: cluster.sh start NAME"
    start_one "$2"
    ;;
  *)
    sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
