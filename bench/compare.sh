#!/usr/bin/env bash
# Side-by-side benchmark: weir vs nginx vs HAProxy as reverse proxies in front
# of one nginx backend, on loopback, same client, same machine, one run.
#
#   bash bench/compare.sh            # full run (~6-8 minutes on 2 cores)
#   ROUNDS=1 DURATION=3 bash bench/compare.sh   # quick look
#
# Installs what it needs from Debian's packages (wrk, hey, h2load, nginx,
# haproxy), builds weir in release mode, runs every scenario in alternating
# rounds (weir, nginx, haproxy, weir, ...) and reports medians. Prints one
# table and writes BENCHMARKS.md. Every load is bounded in time; every address
# is 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

ROUNDS=${ROUNDS:-3}          # rounds per scenario (median reported)
DURATION=${DURATION:-5}      # seconds per load run
THREADS=${THREADS:-1}        # worker threads/processes of each proxy
CONNS=${CONNS:-64}           # wrk connections (scenarios 1, 2)
# 10,000 asked for; the sandbox caps open files at 20,000 per process and HAProxy
# reserves two per connection, so 9,000 is the most all three can hold.
IDLE_CONNS=${IDLE_CONNS:-9000}

# --- install -----------------------------------------------------------------
need=()
for pair in wrk:wrk hey:hey h2load:nghttp2-client nginx:nginx haproxy:haproxy python3:python3; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
cargo build --release --quiet --bin weir

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d /tmp/weir-bench.XXXXXX)
chmod 755 "$WORK"   # nginx workers run as an unprivileged user
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  pkill -F "$WORK/nginx-backend.pid" 2>/dev/null || true
  pkill -F "$WORK/nginx-proxy.pid" 2>/dev/null || true
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT

# Ports (loopback only).
BACKEND=127.0.0.1:18000
declare -A HTTP_PORT=([weir]=18101 [nginx]=18102 [haproxy]=18103 [direct]=18000)
declare -A TLS_PORT=([weir]=18401 [nginx]=18402 [haproxy]=18403)

# --- backend: nginx with a 128-byte body and a 1 MiB file ---------------------
head -c 128 /dev/zero | tr '\0' 'x' > "$WORK/small"
head -c 1048576 /dev/zero | tr '\0' 'y' > "$WORK/big"
mkdir -p "$WORK/www" && cp "$WORK/small" "$WORK/www/index.html" && cp "$WORK/big" "$WORK/www/big"
cat > "$WORK/nginx-backend.conf" <<CONF
worker_processes 1;
pid $WORK/nginx-backend.pid;
error_log $WORK/nginx-backend.err warn;
events { worker_connections 20000; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen $BACKEND reuseport backlog=4096;
    root $WORK/www;
    location = / { try_files /index.html =404; }
  }
}
CONF
nginx -c "$WORK/nginx-backend.conf" -p "$WORK"

# --- the proxies --------------------------------------------------------------
CRT=$ROOT/certs-dev/localhost.crt
KEY=$ROOT/certs-dev/localhost.key
cat "$CRT" "$KEY" > "$WORK/haproxy.pem"

cat > "$WORK/weir.yaml" <<CONF
listeners:
  - name: http
    address: "127.0.0.1:${HTTP_PORT[weir]}"
  - name: https
    address: "127.0.0.1:${TLS_PORT[weir]}"
    tls:
      certificates:
        - cert: $CRT
          key: $KEY
routes:
  - group: backend
groups:
  backend:
    servers:
      - address: $BACKEND
    pool:
      max_idle_per_server: 256
CONF

cat > "$WORK/nginx-proxy.conf" <<CONF
worker_processes $THREADS;
pid $WORK/nginx-proxy.pid;
error_log $WORK/nginx-proxy.err warn;
events { worker_connections 20000; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream backend { server $BACKEND; keepalive 256; }
  server {
    listen 127.0.0.1:${HTTP_PORT[nginx]} backlog=4096;
    listen 127.0.0.1:${TLS_PORT[nginx]} ssl http2 backlog=4096;
    ssl_certificate $CRT;
    ssl_certificate_key $KEY;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_buffering off;
    }
  }
}
CONF

cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread $THREADS
  maxconn 9990
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 3s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  option forwardfor
  http-reuse always
frontend fe
  bind 127.0.0.1:${HTTP_PORT[haproxy]}
  bind 127.0.0.1:${TLS_PORT[haproxy]} ssl crt $WORK/haproxy.pem alpn h2,http/1.1
  default_backend be
backend be
  server s1 $BACKEND
CONF

"$ROOT/target/release/weir" --config "$WORK/weir.yaml" --threads "$THREADS" --log warn 2> "$WORK/weir.err" &
PIDS+=($!); WEIR_PID=$!
nginx -c "$WORK/nginx-proxy.conf" -p "$WORK"
haproxy -f "$WORK/haproxy.cfg" -D -p "$WORK/haproxy.pid"
sleep 1
NGINX_PIDS() { pgrep -P "$(cat "$WORK/nginx-proxy.pid")" | tr '\n' ' '; cat "$WORK/nginx-proxy.pid"; }
HAPROXY_PID=$(cat "$WORK/haproxy.pid")
PIDS+=("$HAPROXY_PID")

for p in weir nginx haproxy; do
  curl -sf "http://127.0.0.1:${HTTP_PORT[$p]}/" -o /dev/null || { echo "$p does not answer on http"; cat "$WORK"/*.err; exit 1; }
  curl -sfk "https://127.0.0.1:${TLS_PORT[$p]}/" -o /dev/null || { echo "$p does not answer on https"; exit 1; }
done

RES=$WORK/results.tsv
: > "$RES"
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RES"; }   # scenario proxy metric value

to_ms() { python3 -c "
import re,sys
v=sys.argv[1]; m=re.match(r'([0-9.]+)(us|ms|s)',v)
n=float(m.group(1)); u=m.group(2)
print(n/1000 if u=='us' else n if u=='ms' else n*1000)" "$1"; }

to_mbs() { python3 -c "
import re,sys
m=re.match(r'([0-9.]+)([KMG]?B)',sys.argv[1]); n=float(m.group(1))
print(n*{'B':1/1048576,'KB':1/1024,'MB':1,'GB':1024}[m.group(2)])" "$1"; }

wrk_run() { # scenario proxy url [extra wrk args...]
  local sc=$1 p=$2 url=$3; shift 3
  local out; out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$@" "$url" 2>&1)
  local rps p50 p99 tr
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  tr=$(awk '/Transfer\/sec/ {print $2}' <<<"$out")
  local errs; errs=$(grep -E 'Non-2xx|Socket errors' <<<"$out" || true)
  [ -n "$errs" ] && echo "  note ($sc $p): $errs"
  record "$sc" "$p" rps "$rps"
  record "$sc" "$p" p50 "$(to_ms "$p50")"
  record "$sc" "$p" p99 "$(to_ms "$p99")"
  record "$sc" "$p" mbs "$(to_mbs "$tr")"
  echo "  $sc $p: $rps req/s p50=$p50 p99=$p99 $tr/s"
}

h2_run() { # scenario proxy url
  local out; out=$(h2load -D "$DURATION" -c 8 -m 8 -t 1 "$3" 2>&1)
  local rps; rps=$(grep -oE 'finished in [0-9.]+s, [0-9.]+ req/s' <<<"$out" | awk '{print $4}')
  local failed; failed=$(grep -oE '[0-9]+ failed' <<<"$out" | head -1)
  record "$1" "$2" rps "$rps"
  echo "  $1 $2: $rps req/s ($failed)"
}

idle_rss() { # proxy pids... : opens IDLE_CONNS keep-alive connections, reports KiB per connection
  local p=$1 port=$2; shift 2
  local before after
  rss() { local t=0; for pid in "$@"; do t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$pid/status"))); done; echo $t; }
  before=$(rss "$@")
  python3 "$ROOT/bench/idle_conns.py" 127.0.0.1 "$port" "$IDLE_CONNS" "$WORK/idle-$p.ready" &
  local cpid=$!
  for _ in $(seq 1 120); do [ -f "$WORK/idle-$p.ready" ] && break; sleep 0.5; done
  # Idle means quiet for a few seconds: weir parks a keep-alive connection
  # 100-200 ms after its last byte (nginx and HAProxy free their buffers at
  # once), and its allocator hands freed pages back shortly after.
  sleep 4
  after=$(rss "$@")
  kill "$cpid" 2>/dev/null || true; wait "$cpid" 2>/dev/null || true
  rm -f "$WORK/idle-$p.ready"
  local per; per=$(python3 -c "print(round(($after-$before)/$IDLE_CONNS,2))")
  record idle "$p" kib_per_conn "$per"
  echo "  idle $p: RSS ${before} KiB -> ${after} KiB, ${per} KiB per connection"
  sleep 2
}

echo "== weir vs nginx vs HAProxy: $ROUNDS rounds x ${DURATION}s, $THREADS worker thread(s) each"
for r in $(seq 1 "$ROUNDS"); do
  echo "-- round $r"
  for p in weir nginx haproxy; do wrk_run h1 "$p" "http://127.0.0.1:${HTTP_PORT[$p]}/"; done
  wrk_run h1 direct "http://$BACKEND/"
  for p in weir nginx haproxy; do wrk_run tls "$p" "https://127.0.0.1:${TLS_PORT[$p]}/"; done
  for p in weir nginx haproxy; do h2_run h2 "$p" "https://127.0.0.1:${TLS_PORT[$p]}/"; done
  for p in weir nginx haproxy; do wrk_run handshake "$p" "https://127.0.0.1:${TLS_PORT[$p]}/" -H "Connection: close"; done
  for p in weir nginx haproxy; do CONNS=16 wrk_run big "$p" "http://127.0.0.1:${HTTP_PORT[$p]}/big"; done
  CONNS=16 wrk_run big direct "http://$BACKEND/big"
done
echo "-- idle connections ($IDLE_CONNS each)"
idle_rss weir "${HTTP_PORT[weir]}" "$WEIR_PID"
# shellcheck disable=SC2046
idle_rss nginx "${HTTP_PORT[nginx]}" $(NGINX_PIDS)
idle_rss haproxy "${HTTP_PORT[haproxy]}" "$HAPROXY_PID"

VERSIONS="weir $("$ROOT/target/release/weir" --version | awk '{print $2}'); $(nginx -v 2>&1 | sed 's/nginx version: //'); HAProxy $(haproxy -v | head -1 | awk '{print $3}'); wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'); $(h2load --version | head -1)"
MACHINE="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr)"
python3 "$ROOT/bench/report.py" "$RES" "$ROUNDS" "$DURATION" "$THREADS" "$VERSIONS" "$MACHINE" > "$ROOT/BENCHMARKS.md"
cat "$ROOT/BENCHMARKS.md"
