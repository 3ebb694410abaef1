#!/usr/bin/env bash
# Cache-hit throughput: weir's response cache vs nginx `proxy_cache`, on the
# same response from the same nginx backend, on loopback, one machine.
#
#   bash bench/cache.sh                         # 3 rounds x 5 s per case
#   ROUNDS=1 DURATION=3 bash bench/cache.sh     # quick look
#   MODES=1worker bash bench/cache.sh           # one worker each only
#
# The backend serves /1k and /20k (1,000 and 20,000 bytes) with
# `Cache-Control: max-age=3600`; both proxies cache them per that header
# (weir `cache: true`, nginx `proxy_cache` with its defaults: a keys zone
# and files under the cache path, served from the page cache). After one
# warm-up request every measured request is a hit (checked through
# Cache-Status / $upstream_cache_status before the load, and weir's
# weir_cache_hits_total after it). Modes: `1worker` (nginx
# `worker_processes 1`, weir `--threads 1`) and `defaults` (nginx
# `worker_processes auto`, weir without --threads). Access logs off for
# both. Load: wrk, 1 thread, 64 connections, DURATION seconds; medians of
# ROUNDS alternating rounds. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
MODES=${MODES:-"1worker defaults"}

need=()
for pair in wrk:wrk nginx:nginx curl:curl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --bin weir
WEIR=$ROOT/target/release/weir

WORK=$(mktemp -d /tmp/weir-cache-bench.XXXXXX)
chmod 755 "$WORK"
WEIR_PID=""
cleanup() {
  [ -n "$WEIR_PID" ] && kill "$WEIR_PID" 2>/dev/null || true
  [ -f "$WORK/backend.pid" ] && kill "$(cat "$WORK/backend.pid")" 2>/dev/null || true
  [ -f "$WORK/proxy.pid" ] && kill "$(cat "$WORK/proxy.pid")" 2>/dev/null || true
  sleep 0.3
  rm -rf "$WORK"
}
trap cleanup EXIT

BACKEND=127.0.0.1:18600
WEIR_PORT=18601
NGINX_PORT=18602
ADMIN=127.0.0.1:18603

mkdir -p "$WORK/www" "$WORK/cache"
chmod 777 "$WORK/cache"
head -c 1000 /dev/zero | tr '\0' 'a' > "$WORK/www/1k"
head -c 20000 /dev/zero | tr '\0' 'b' > "$WORK/www/20k"
cat > "$WORK/backend.conf" <<CONF
worker_processes 1;
pid $WORK/backend.pid;
error_log $WORK/backend.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen $BACKEND;
    root $WORK/www;
    location / { add_header Cache-Control "max-age=3600"; }
  }
}
CONF
nginx -c "$WORK/backend.conf" -p "$WORK"

start() {
  local proxy=$1 mode=$2
  if [ "$proxy" = weir ]; then
    cat > "$WORK/weir.yaml" <<CONF
access_log:
  enabled: false
admin:
  address: "$ADMIN"
cache:
  max_size: 64MiB
  max_object_size: 1MiB
listeners:
  - name: http
    address: "127.0.0.1:$WEIR_PORT"
routes:
  - group: backend
    cache: true
groups:
  backend:
    servers:
      - address: $BACKEND
CONF
    local threads=(); [ "$mode" = 1worker ] && threads=(--threads 1)
    "$WEIR" --config "$WORK/weir.yaml" "${threads[@]}" --log warn 2>"$WORK/weir.err" &
    WEIR_PID=$!
  else
    local workers=auto; [ "$mode" = 1worker ] && workers=1
    rm -rf "$WORK/cache"/*
    cat > "$WORK/proxy.conf" <<CONF
worker_processes $workers;
pid $WORK/proxy.pid;
error_log $WORK/proxy.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  proxy_cache_path $WORK/cache keys_zone=c:10m max_size=64m;
  upstream backend { server $BACKEND; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache c;
      add_header X-Cache-Status \$upstream_cache_status;
    }
  }
}
CONF
    nginx -c "$WORK/proxy.conf" -p "$WORK"
  fi
  sleep 0.5
}

stop() {
  local proxy=$1
  if [ "$proxy" = weir ]; then
    kill "$WEIR_PID" 2>/dev/null || true; wait "$WEIR_PID" 2>/dev/null || true; WEIR_PID=""
  else
    kill "$(cat "$WORK/proxy.pid")" 2>/dev/null || true
    sleep 0.5
  fi
}

port() { [ "$1" = weir ] && echo $WEIR_PORT || echo $NGINX_PORT; }

# Warm the cache and check the second request is a hit.
warm() {
  local proxy=$1 path=$2 url
  url="http://127.0.0.1:$(port "$proxy")$path"
  curl -s -o /dev/null "$url"
  local status
  status=$(curl -s -D - -o /dev/null "$url" | tr -d '\r' | grep -i -E '^(cache-status|x-cache-status):' || true)
  case "$status" in
    *hit*|*HIT*) ;;
    *) echo "not a cache hit on $proxy $path: $status" >&2; exit 1 ;;
  esac
}

rps() {
  wrk -t1 -c"$CONNS" -d"${DURATION}s" "$1" | awk '/Requests\/sec/ {print $2}'
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}'; }

declare -A RESULTS
for mode in $MODES; do
  for round in $(seq 1 "$ROUNDS"); do
    for proxy in weir nginx; do
      start "$proxy" "$mode"
      for path in /1k /20k; do
        warm "$proxy" "$path"
        r=$(rps "http://127.0.0.1:$(port "$proxy")$path")
        RESULTS[$mode,$proxy,$path]+="$r "
        echo "round $round $mode $proxy $path: $r req/s" >&2
      done
      if [ "$proxy" = weir ]; then
        curl -s "http://$ADMIN/metrics" | grep -E '^weir_cache_(hits|misses)_total' >&2 || true
      fi
      stop "$proxy"
    done
  done
done

echo
echo "| mode | body | weir req/s | nginx proxy_cache req/s | weir / nginx |"
echo "| --- | --- | ---: | ---: | ---: |"
for mode in $MODES; do
  for path in /1k /20k; do
    w=$(echo "${RESULTS[$mode,weir,$path]}" | tr ' ' '\n' | grep -v '^$' | median)
    n=$(echo "${RESULTS[$mode,nginx,$path]}" | tr ' ' '\n' | grep -v '^$' | median)
    ratio=$(awk -v w="$w" -v n="$n" 'BEGIN { if (n > 0) printf "%.2fx", w / n; else print "-" }')
    echo "| $mode | ${path#/} | $w | $n | $ratio |"
  done
done
echo
echo "wrk -t1 -c$CONNS -d${DURATION}s, median of $ROUNDS rounds; $(nproc) cores shared with other work (noisy)."
