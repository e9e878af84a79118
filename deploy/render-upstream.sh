#!/usr/bin/env bash
# Renders nginx's "app" upstream from the keys under /app/upstream, as confd does with
# deploy/confd/templates/app-upstream.conf.tmpl (same output), then checks the configuration and
# reloads nginx. For machines without confd: run it from `kvctl exec-watch --recursive
# /app/upstream -- deploy/render-upstream.sh ...` (deploy/switchover-demo.sh does).
#
#   render-upstream.sh OUT_FILE [NGINX_ARG...]
#
# NGINX_ARG... are passed to `nginx ... -t` and `nginx ... -s reload` (e.g. -p DIR -c FILE);
# with none, nothing is reloaded. Environment: KV_URL [http://127.0.0.1:8080] (a kvd or etcd
# client URL, typically the proxy), KVCTL_BIN [kvctl]. Renders are serialized with a lock next to
# OUT_FILE and read the keys inside it, so overlapping runs end with the latest key set. An empty
# key set renders a placeholder server marked down (nginx refuses an upstream without servers),
# as the confd template does; a store that cannot be read, or a missing kvctl, fails with the
# reason and leaves OUT_FILE as it is; a configuration nginx refuses is rolled back.
set -euo pipefail
OUT="${1:?usage: render-upstream.sh OUT_FILE [NGINX_ARG...]}"
shift
KV_URL="${KV_URL:-http://127.0.0.1:8080}"
KVCTL_BIN="${KVCTL_BIN:-kvctl}"

exec 9>"$OUT.lock"
flock 9

command -v "$KVCTL_BIN" >/dev/null || { echo "render-upstream: no kvctl ($KVCTL_BIN)" >&2; exit 1; }

# The keys, read in one request: a store that cannot be read fails the render loudly (the file
# stays as it is); only "no such directory" (errorCode 100) means no backend.
servers=()
if ! listing=$("$KVCTL_BIN" --no-sync -C "$KV_URL" ls --sort /app/upstream 2>&1); then
  if [[ "$listing" != *"Key not found"* ]]; then
    echo "render-upstream: cannot read /app/upstream from $KV_URL: $listing" >&2
    exit 1
  fi
  listing=""
fi
while IFS= read -r key; do
  [[ -n "$key" ]] || continue
  value=$("$KVCTL_BIN" --no-sync -C "$KV_URL" get "$key" 2>&1) || {
    # Deleted between the listing and the read: it is gone, not an error.
    [[ "$value" == *"Key not found"* ]] && continue
    echo "render-upstream: cannot read $key from $KV_URL: $value" >&2
    exit 1
  }
  servers+=("$value")
done < <(printf '%s\n' "$listing" | grep '^/' || true)

new="$OUT.new.$$"
{
  echo "# Rendered by confd from the keys under /app/upstream; do not edit by hand."
  echo "upstream app {"
  for s in "${servers[@]}"; do echo "    server $s;"; done
  if (( ${#servers[@]} == 0 )); then
    echo "    # No backend registered under /app/upstream: nginx answers 502 until one is."
    echo "    server 127.0.0.1:9 down;"
  fi
  echo "}"
} >"$new"
if [[ -f "$OUT" ]] && cmp -s "$new" "$OUT"; then
  rm -f "$new"
  exit 0
fi
old="$OUT.old.$$"
[[ -f "$OUT" ]] && cp -p "$OUT" "$old"
mv "$new" "$OUT"
if (( $# > 0 )); then
  if ! nginx "$@" -t -q; then
    echo "render-upstream: nginx rejected the new upstream; rolled back" >&2
    if [[ -f "$old" ]]; then mv "$old" "$OUT"; else rm -f "$OUT"; fi
    exit 1
  fi
  nginx "$@" -s reload
fi
rm -f "$old"
echo "render-upstream: upstream app = ${servers[*]:-(none: a placeholder marked down)}"
