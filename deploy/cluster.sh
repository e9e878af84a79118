#!/usr/bin/env bash
# The book's etcd topology on one machine, with kvd: members etcd0, etcd1, etcd2 and a proxy in
# front of them.
#
#   deploy/cluster.sh up            start every process not running yet, wait until the proxy
#                                   answers writes
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
    sleep 0.1
  done
  die "the proxy at $PROXY_URL did not accept a write within ${START_TIMEOUT}s (logs in $CLUSTER_DIR)"
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
  echo "members (through the proxy $PROXY_URL):"
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
    for name in "${MEMBERS[@]}" proxy; do start_one "$name"; done
    wait_proxy_writes
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
    sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
