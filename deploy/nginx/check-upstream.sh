#!/usr/bin/env bash
# confd's check_cmd for deploy/confd/conf.d/app-upstream.toml: checks the RENDERED upstream file
# (confd passes its staged copy as {{.src}}) with nginx, inside a minimal configuration that
# uses it as the site does (proxy_pass http://app), before confd installs it. `nginx -t` alone
# would check the configuration already installed, not the new one. Runs as any user: nothing in
# that configuration needs root (the server listens on a unix socket in its temporary dir, as
# `nginx -t` binds what it listens on; no log but stderr).
#
#   check-upstream.sh FILE        exit 0 if nginx accepts FILE as the "app" upstream
#
# Environment: NGINX_BIN [/usr/sbin/nginx].
set -euo pipefail
FILE="${1:?usage: check-upstream.sh FILE}"
NGINX_BIN="${NGINX_BIN:-/usr/sbin/nginx}"
[[ -r "$FILE" ]] || { echo "check-upstream: cannot read $FILE" >&2; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/check-upstream.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cat >"$dir/nginx.conf" <<CONF
pid $dir/nginx.pid;
events {}
http {
    access_log off;
    client_body_temp_path $dir/client;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    include $(realpath "$FILE");
    server {
        listen unix:$dir/check.sock;
        location / { proxy_pass http://app; }
    }
}
CONF
# Not exec: the EXIT trap must run to remove the temporary dir.
"$NGINX_BIN" -t -q -e stderr -p "$dir" -c "$dir/nginx.conf"
