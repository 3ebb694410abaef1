#!/usr/bin/env bash
# Throughput of rate-limited routes against an unlimited one, through weir's
# release build, on loopback: one nginx backend, one redis-server, hey as
# the client. Routes:
#   /open         no rate limit (the floor)
#   /local        store: local, a bucket so large it never refuses (the cost of the check)
#   /redis        store: redis, same (one Lua script round trip per request)
#   /local-429    store: local, 10/s: nearly every request is answered 429 by weir
#
#   bash bench/rate_limit.sh                    # 3 rounds × 5 s per route
#   ROUNDS=1 DURATION=3 bash bench/rate_limit.sh
#
# Every load is bounded in time; every address is 127.0.0.1. The machine is
# shared: numbers are noisy, compare routes within one run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}

need=()
for pair in hey:hey nginx:nginx redis-server:redis-server; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
cargo build --release --quiet --bin weir

WORK=$(mktemp -d /tmp/weir-rl-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  sleep 0.3
  rm -rf "$WORK"
}
trap cleanup EXIT

BACKEND=127.0.0.1:18300
WEIR=127.0.0.1:18301
REDIS_PORT=18379

mkdir -p "$WORK/www"
head -c 128 /dev/zero | tr '\0' 'x' > "$WORK/www/index.html"
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen $BACKEND backlog=4096;
    root $WORK/www;
    location / { try_files /index.html =404; }
  }
}
CONF
nginx -c "$WORK/nginx.conf" -p "$WORK"

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no > "$WORK/redis.log" 2>&1 &
PIDS+=($!)

cat > "$WORK/weir.yaml" <<CONF
listeners:
  - name: http
    address: "$WEIR"
rate_limits:
  huge_local:
    key: client_ip
    rate: 1000000/s
  huge_redis:
    key: client_ip
    rate: 1000000/s
    store: redis
  small_local:
    key: client_ip
    rate: 10/s
redis:
  url: redis://127.0.0.1:$REDIS_PORT/0
  on_error: deny
routes:
  - match: { path_prefix: /open }
    group: backend
  - match: { path_prefix: /local-429 }
    group: backend
    rate_limit: small_local
  - match: { path_prefix: /local }
    group: backend
    rate_limit: huge_local
  - match: { path_prefix: /redis }
    group: backend
    rate_limit: huge_redis
groups:
  backend:
    servers:
      - address: $BACKEND
    pool:
      max_idle_per_server: 256
CONF
"$ROOT/target/release/weir" --config "$WORK/weir.yaml" --threads "$THREADS" --log warn 2> "$WORK/weir.err" &
PIDS+=($!)

for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://$WEIR/open" && break
  sleep 0.1
done

declare -A RESULTS
for round in $(seq 1 "$ROUNDS"); do
  for route in open local redis local-429; do
    out=$(hey -z "${DURATION}s" -c "$CONNS" "http://$WEIR/$route" 2>&1)
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    codes=$(awk '/Status code distribution/ {f=1; next} f && /\[/ {printf "%s%s", sep, $1 $2; sep=" "} f && !/\[/ && NF==0 {f=0}' <<<"$out")
    RESULTS[$route]="${RESULTS[$route]:-} $rps"
    printf 'round %s  /%-10s %10s req/s  %s\n' "$round" "$route" "$rps" "$codes"
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
printf '%-12s %12s %10s\n' route "median req/s" "vs /open"
base=$(median <<<"${RESULTS[open]}")
for route in open local redis local-429; do
  m=$(median <<<"${RESULTS[$route]}")
  printf '/%-11s %12s %9.2fx\n' "$route" "$m" "$(awk -v a="$m" -v b="$base" 'BEGIN {print a / b}')"
done
