#!/usr/bin/env bash
# Side-by-side benchmark: weir vs nginx vs HAProxy as reverse proxies in front
# of one nginx backend, on loopback, same client, same machine, one run.
#
#   bash bench/compare.sh            # full run (~16 minutes on 2 cores)
#   ROUNDS=1 DURATION=3 bash bench/compare.sh   # quick look
#   MODES=defaults bash bench/compare.sh        # only the defaults table
#
# Two tables, each proxy configured the same way in each:
#   defaults  every proxy at its own default worker count for the machine
#             (nginx `worker_processes auto`, HAProxy without `nbthread`,
#             weir without `workers`/`--threads`), access logs off for all,
#             plus weir with its default access log on (text on stderr, to a file);
#   1worker   one worker each (nginx `worker_processes 1`, HAProxy
#             `nbthread 1`, weir `--threads 1`), access logs off.
#
# Installs what it needs from Debian's packages (wrk, hey, h2load, nginx,
# haproxy), builds weir in release mode, runs every scenario in alternating
# rounds (weir, nginx, haproxy, weir, ...) and reports medians. Prints the
# tables and writes BENCHMARKS.md. Every load is bounded in time; every
# address is 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

ROUNDS=${ROUNDS:-3}          # rounds per scenario (median reported)
DURATION=${DURATION:-5}      # seconds per load run
MODES=${MODES:-"defaults 1worker"}
CONNS=${CONNS:-64}           # wrk connections (scenarios 1, 2)
MANY_CONNS=${MANY_CONNS:-1000}   # scenario 7
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
declare -A HTTP_PORT=([weir]=18101 [nginx]=18102 [haproxy]=18103 [weirlog]=18104 [direct]=18000)
declare -A TLS_PORT=([weir]=18401 [nginx]=18402 [haproxy]=18403 [weirlog]=18404)

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
$(for i in $(seq 1 10); do echo "    listen 127.0.0.1:$((18010 + i)) backlog=4096;"; done)
    root $WORK/www;
    location = /big { }
    location / { try_files /index.html =404; }
  }
}
CONF
nginx -c "$WORK/nginx-backend.conf" -p "$WORK"
TEN=$(for i in $(seq 1 10); do echo "127.0.0.1:$((18010 + i))"; done)

# --- the proxies --------------------------------------------------------------
CRT=$ROOT/certs-dev/localhost.crt
KEY=$ROOT/certs-dev/localhost.key
cat "$CRT" "$KEY" > "$WORK/haproxy.pem"

# Writes the configs of MODE and starts weir, nginx and HAProxy (and, in the
# defaults mode, a second weir with its default access log on).
start_proxies() {
  local mode=$1 nginx_workers haproxy_threads weir_threads
  if [ "$mode" = 1worker ]; then
    nginx_workers=1; haproxy_threads="  nbthread 1"; weir_threads=(--threads 1)
  else
    nginx_workers=auto; haproxy_threads=""; weir_threads=()
  fi
  for w in weir weirlog; do
    {
      [ "$w" = weir ] && printf 'access_log:\n  enabled: false\n'
      cat <<CONF
listeners:
  - name: http
    address: "127.0.0.1:${HTTP_PORT[$w]}"
  - name: https
    address: "127.0.0.1:${TLS_PORT[$w]}"
    tls:
      certificates:
        - cert: $CRT
          key: $KEY
routes:
  - match: { path_prefix: /rr }
    group: rr10
  - match: { path_prefix: /lc }
    group: lc10
  - group: backend
groups:
  backend:
    servers:
      - address: $BACKEND
    pool:
      max_idle_per_server: 256
  rr10:
    servers:
$(for a in $TEN; do echo "      - address: $a"; done)
    pool:
      max_idle_per_server: 256
  lc10:
    algorithm: least_connections
    servers:
$(for a in $TEN; do echo "      - address: $a"; done)
    pool:
      max_idle_per_server: 256
CONF
    } > "$WORK/$w.yaml"
  done

  cat > "$WORK/nginx-proxy.conf" <<CONF
worker_processes $nginx_workers;
pid $WORK/nginx-proxy.pid;
error_log $WORK/nginx-proxy.err warn;
events { worker_connections 20000; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream backend { server $BACKEND; keepalive 256; }
  upstream rr10 { $(for a in $TEN; do printf 'server %s; ' "$a"; done) keepalive 256; }
  upstream lc10 { least_conn; $(for a in $TEN; do printf 'server %s; ' "$a"; done) keepalive 256; }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
  proxy_buffering off;
  server {
    listen 127.0.0.1:${HTTP_PORT[nginx]} backlog=4096;
    listen 127.0.0.1:${TLS_PORT[nginx]} ssl http2 backlog=4096;
    ssl_certificate $CRT;
    ssl_certificate_key $KEY;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://backend; }
    location /rr { proxy_pass http://rr10; }
    location /lc { proxy_pass http://lc10; }
  }
}
CONF

  cat > "$WORK/haproxy.cfg" <<CONF
global
$haproxy_threads
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
  use_backend rr10 if { path_beg /rr }
  use_backend lc10 if { path_beg /lc }
  default_backend be
backend be
  server s1 $BACKEND
backend rr10
  balance roundrobin
$(i=0; for a in $TEN; do i=$((i+1)); echo "  server s$i $a"; done)
backend lc10
  balance leastconn
$(i=0; for a in $TEN; do i=$((i+1)); echo "  server s$i $a"; done)
CONF

  "$ROOT/target/release/weir" --config "$WORK/weir.yaml" "${weir_threads[@]}" 2> "$WORK/weir.err" &
  WEIR_PID=$!; PIDS+=("$WEIR_PID")
  if [ "$mode" = defaults ]; then
    # The default log: one access line per request, text on stderr.
    "$ROOT/target/release/weir" --config "$WORK/weirlog.yaml" 2> "$WORK/weirlog.access" &
    WEIRLOG_PID=$!; PIDS+=("$WEIRLOG_PID")
  fi
  nginx -c "$WORK/nginx-proxy.conf" -p "$WORK"
  haproxy -f "$WORK/haproxy.cfg" -D -p "$WORK/haproxy.pid"
  sleep 1
  HAPROXY_PID=$(cat "$WORK/haproxy.pid")
  PIDS+=("$HAPROXY_PID")
  for p in weir nginx haproxy; do
    curl -sf "http://127.0.0.1:${HTTP_PORT[$p]}/" -o /dev/null || { echo "$p does not answer on http"; cat "$WORK"/*.err; exit 1; }
    curl -sfk "https://127.0.0.1:${TLS_PORT[$p]}/" -o /dev/null || { echo "$p does not answer on https"; exit 1; }
    curl -sf "http://127.0.0.1:${HTTP_PORT[$p]}/lc" -o /dev/null || { echo "$p does not answer on /lc"; exit 1; }
  done
}

stop_proxies() {
  kill "$WEIR_PID" 2>/dev/null || true
  [ -n "${WEIRLOG_PID:-}" ] && kill "$WEIRLOG_PID" 2>/dev/null || true
  WEIRLOG_PID=""
  pkill -F "$WORK/nginx-proxy.pid" 2>/dev/null || true
  kill "$HAPROXY_PID" 2>/dev/null || true
  sleep 1.5
}
NGINX_PIDS() { pgrep -P "$(cat "$WORK/nginx-proxy.pid")" | tr '\n' ' '; cat "$WORK/nginx-proxy.pid"; }
RES=$WORK/results.tsv
: > "$RES"
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$MODE" "$1" "$2" "$3" "$4" >> "$RES"; }   # mode scenario proxy metric value

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

for MODE in $MODES; do
  start_proxies "$MODE"
  logged=(); [ "$MODE" = defaults ] && logged=(weirlog)
  echo "== $MODE: weir vs nginx vs HAProxy, $ROUNDS rounds x ${DURATION}s"
  for r in $(seq 1 "$ROUNDS"); do
    echo "-- $MODE round $r"
    for p in weir nginx haproxy "${logged[@]}"; do wrk_run h1 "$p" "http://127.0.0.1:${HTTP_PORT[$p]}/"; done
    [ "$MODE" = 1worker ] && wrk_run h1 direct "http://$BACKEND/"
    for p in weir nginx haproxy "${logged[@]}"; do wrk_run tls "$p" "https://127.0.0.1:${TLS_PORT[$p]}/"; done
    for p in weir nginx haproxy "${logged[@]}"; do h2_run h2 "$p" "https://127.0.0.1:${TLS_PORT[$p]}/"; done
    for p in weir nginx haproxy; do wrk_run handshake "$p" "https://127.0.0.1:${TLS_PORT[$p]}/" -H "Connection: close"; done
    for p in weir nginx haproxy; do CONNS=16 wrk_run big "$p" "http://127.0.0.1:${HTTP_PORT[$p]}/big"; done
    [ "$MODE" = 1worker ] && CONNS=16 wrk_run big direct "http://$BACKEND/big"
    for p in weir nginx haproxy; do CONNS=$MANY_CONNS wrk_run conns1000 "$p" "http://127.0.0.1:${HTTP_PORT[$p]}/"; done
    for p in weir nginx haproxy; do wrk_run rr10 "$p" "http://127.0.0.1:${HTTP_PORT[$p]}/rr"; done
    for p in weir nginx haproxy; do wrk_run lc10 "$p" "http://127.0.0.1:${HTTP_PORT[$p]}/lc"; done
  done
  if [ "$MODE" = defaults ]; then
    echo "-- idle connections ($IDLE_CONNS each)"
    idle_rss weir "${HTTP_PORT[weir]}" "$WEIR_PID"
    # shellcheck disable=SC2046
    idle_rss nginx "${HTTP_PORT[nginx]}" $(NGINX_PIDS)
    idle_rss haproxy "${HTTP_PORT[haproxy]}" "$HAPROXY_PID"
    echo "  weir's default access log wrote $(wc -l < "$WORK/weirlog.access") lines"
  fi
  stop_proxies
done

VERSIONS="weir $("$ROOT/target/release/weir" --version | awk '{print $2}'); $(nginx -v 2>&1 | sed 's/nginx version: //'); HAProxy $(haproxy -v | head -1 | awk '{print $3}'); wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'); $(h2load --version | head -1)"
MACHINE="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr)"
python3 "$ROOT/bench/report.py" "$RES" "$ROUNDS" "$DURATION" "$VERSIONS" "$MACHINE" > "$ROOT/BENCHMARKS.md"
cat "$ROOT/BENCHMARKS.md"
