#!/usr/bin/env bash
# User-space instructions per proxied request (valgrind's callgrind counts
# instructions, not seconds, so the figure repeats for the same binary and
# input whatever else the machine does). weir on one worker in front of an
# nginx backend, wrk -t1 -c8: a 3 s warm-up, then 5 s counted.
#
#   bash bench/instructions_per_request.sh              # builds release weir
#   WEIR=/path/to/weir bash bench/instructions_per_request.sh
#   KEEP=1 ...    # keep the callgrind file (callgrind_annotate FILE)
#
# Needs valgrind, wrk and nginx (Debian packages). Every load is bounded in
# time; every address is 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
WEIR=${WEIR:-}
if [ -z "$WEIR" ]; then
  cargo build --release --quiet --bin weir
  WEIR=$(pwd)/target/release/weir
fi
for c in valgrind callgrind_control wrk nginx; do
  command -v "$c" >/dev/null 2>&1 || { echo "needs $c" >&2; exit 1; }
done
W=$(mktemp -d /tmp/weir-instr.XXXXXX)
chmod 755 "$W"
VP=""
cleanup() {
  [ -n "$VP" ] && kill "$VP" 2>/dev/null || true
  pkill -F "$W/be.pid" 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/www"
head -c 128 /dev/zero | tr '\0' x > "$W/www/index.html"
cat > "$W/be.conf" <<CONF
worker_processes 1; pid $W/be.pid; error_log $W/be.err warn;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:18700; root $W/www; location / { try_files /index.html =404; } } }
CONF
cat > "$W/weir.yaml" <<CONF
access_log:
  enabled: false
listeners:
  - name: http
    address: "127.0.0.1:18701"
routes:
  - group: backend
groups:
  backend:
    servers:
      - address: 127.0.0.1:18700
CONF
nginx -c "$W/be.conf" -p "$W"
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$W/cg.out" \
  "$WEIR" --config "$W/weir.yaml" --threads 1 2>"$W/vg.err" &
VP=$!
for _ in $(seq 1 50); do
  curl -fsS -o /dev/null http://127.0.0.1:18701/ 2>/dev/null && break
  sleep 0.2
done
wrk -t1 -c8 -d3s http://127.0.0.1:18701/ >/dev/null
callgrind_control -i on "$VP" >/dev/null
out=$(wrk -t1 -c8 -d5s http://127.0.0.1:18701/)
callgrind_control -i off "$VP" >/dev/null
callgrind_control -d "$VP" >/dev/null
sleep 1
kill "$VP"; wait "$VP" 2>/dev/null || true; VP=""
reqs=$(awk '/requests in/ {print $1}' <<<"$out" | tr -d ,)
f=$(ls "$W"/cg.out.* | head -1)
total=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ && !t {gsub(",","",$1); print $1; t=1}')
echo "requests $reqs instructions $total per request $((total / reqs))"
[ -n "${KEEP:-}" ] && echo "callgrind file: $f"
exit 0
