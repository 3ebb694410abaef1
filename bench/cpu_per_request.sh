#!/usr/bin/env bash
# CPU time per proxied request: weir (--threads 1), nginx (worker_processes 1)
# and HAProxy (nbthread 1) in front of one nginx backend, one after another,
# same client. Prints req/s, p99 and the proxy's user and system CPU per
# request (from /proc/PID/stat fields 14 and 15 before and after the run).
#
#   bash bench/cpu_per_request.sh                 # 64 connections, 4 s each
#   CONNS=1000 DURATION=6 bash bench/cpu_per_request.sh
#   WEIR=/path/to/other/weir bash bench/cpu_per_request.sh   # another build
#
# Needs wrk, nginx and haproxy (bench/compare.sh installs them). Every load
# is bounded in time; every address is 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CONNS=${CONNS:-64}
DURATION=${DURATION:-4}
ROUNDS=${ROUNDS:-1}
WEIR=${WEIR:-}
if [ -z "$WEIR" ]; then
  cargo build --release --quiet --bin weir
  WEIR=$ROOT/target/release/weir
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d /tmp/weir-cpu.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  pkill -F "$WORK/be.pid" 2>/dev/null || true
  pkill -F "$WORK/px.pid" 2>/dev/null || true
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/www"
head -c 128 /dev/zero | tr '\0' x > "$WORK/www/index.html"
cat > "$WORK/be.conf" <<CONF
worker_processes 1;
pid $WORK/be.pid;
error_log $WORK/be.err warn;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:18200 backlog=4096; root $WORK/www;
           location / { try_files /index.html =404; } } }
CONF
cat > "$WORK/px.conf" <<CONF
worker_processes 1;
pid $WORK/px.pid;
error_log $WORK/px.err warn;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 1000000;
  upstream backend { server 127.0.0.1:18200; keepalive 256; }
  proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off;
  proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
  server { listen 127.0.0.1:18202 backlog=4096; location / { proxy_pass http://backend; } } }
CONF
cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 9990
defaults
  mode http
  timeout connect 3s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  option forwardfor
  http-reuse always
frontend fe
  bind 127.0.0.1:18203
  default_backend be
backend be
  server s1 127.0.0.1:18200
CONF
cat > "$WORK/weir.yaml" <<CONF
access_log:
  enabled: false
listeners:
  - name: http
    address: "127.0.0.1:18201"
routes:
  - group: backend
groups:
  backend:
    servers:
      - address: 127.0.0.1:18200
    pool:
      max_idle_per_server: 256
CONF

nginx -c "$WORK/be.conf" -p "$WORK"
nginx -c "$WORK/px.conf" -p "$WORK"
haproxy -f "$WORK/haproxy.cfg" -D -p "$WORK/haproxy.pid"
"$WEIR" --config "$WORK/weir.yaml" --threads 1 2> "$WORK/weir.err" &
WEIR_PID=$!; PIDS+=("$WEIR_PID")
sleep 1
HAPROXY_PID=$(cat "$WORK/haproxy.pid"); PIDS+=("$HAPROXY_PID")
NGINX_PID=$(pgrep -P "$(cat "$WORK/px.pid")" | head -1)
for port in 18201 18202 18203; do
  curl -sf "http://127.0.0.1:$port/" -o /dev/null || { echo "no answer on $port"; cat "$WORK"/*.err; exit 1; }
done

TICK=$(getconf CLK_TCK)
echo "one worker each, wrk -t1 -c$CONNS -d${DURATION}s, 128-byte responses"
for _ in $(seq 1 "$ROUNDS"); do
  for entry in "weir:$WEIR_PID:18201" "nginx:$NGINX_PID:18202" "haproxy:$HAPROXY_PID:18203"; do
    IFS=: read -r name pid port <<<"$entry"
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$port/")
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out" | tr -d ,)
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    python3 -c "
t, r = $TICK, $reqs
print(f'{\"$name\":8} {float($rps):9.0f} req/s  p99 {\"$p99\":>8}  user {($u1-$u0)/t/r*1e6:5.2f} us/req  system {($s1-$s0)/t/r*1e6:5.2f} us/req')"
  done
done
