#!/usr/bin/env bash
# Compression benchmark (issue 16): what compressing a 20 KB JSON route costs.
#
#   bash bench/compression.sh                  # ~2 minutes
#   DURATION=3 SKIP_CRITERION=1 bash bench/compression.sh
#
# 1. MB/s compressed per core for each coding: `cargo bench --bench
#    compression` (weir's streaming encoder on one thread, 20 KB JSON).
# 2. Throughput (wrk, req/s) of a 20 KB JSON route through weir without
#    compression, and with it for a client asking gzip, br or zstd, against
#    nginx proxying the same backend with and without `gzip on` (level 6,
#    weir's gzip level). One worker each (`workers: 1`, `worker_processes 1`):
#    per-core numbers. The backend is nginx serving the file. Every address is
#    127.0.0.1, every load run is DURATION seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}

need=()
for pair in wrk:wrk nginx:nginx curl:curl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
cargo build --release --quiet --bin weir

if [ -z "${SKIP_CRITERION:-}" ]; then
  echo "== encoder speed, one core (criterion) =="
  cargo bench --quiet --bench compression -- --warm-up-time 1 --measurement-time 3 2>&1 \
    | grep -E "bytes$|^compress_20k_json|thrpt" || true
fi

WORK=$(mktemp -d /tmp/weir-compress-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/backend.pid" ] && kill "$(cat "$WORK/backend.pid")" 2>/dev/null || true
  [ -f "$WORK/proxy.pid" ] && kill "$(cat "$WORK/proxy.pid")" 2>/dev/null || true
  sleep 0.3
  rm -rf "$WORK"
}
trap cleanup EXIT

BACKEND=127.0.0.1:18600
mkdir -p "$WORK/www"
python3 - "$WORK/www/data.json" <<'PY'
import sys
items, i = [], 0
s = "["
while len(s) < 20000:
    if i:
        s += ","
    s += '{"id":%d,"name":"user-%d","email":"user%d@example.com","active":%s,"score":%d}' % (
        i, i * 7919 % 10007, i * 31 % 997, "true" if i % 3 == 0 else "false", (i * 2654435761) % 100000)
    i += 1
s += "]"
open(sys.argv[1], "w").write(s)
PY
cat > "$WORK/backend.conf" <<CONF
worker_processes 1;
pid $WORK/backend.pid;
error_log $WORK/backend.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  types { application/json json; }
  server { listen $BACKEND; root $WORK/www; }
}
CONF
nginx -c "$WORK/backend.conf" -p "$WORK"

for mode in off on; do
  {
    printf 'workers: 1\naccess_log:\n  enabled: false\nlisteners:\n'
    if [ $mode = off ]; then printf '  - name: http\n    address: "127.0.0.1:18601"\n'
    else printf '  - name: http\n    address: "127.0.0.1:18602"\n'; fi
    printf 'routes:\n  - group: backend\n'
    [ $mode = on ] && printf '    compression: {}\n'
    printf 'groups:\n  backend:\n    servers:\n      - address: %s\n' "$BACKEND"
  } > "$WORK/weir-$mode.yaml"
  "$ROOT/target/release/weir" --config "$WORK/weir-$mode.yaml" --log warn 2>"/tmp/weir-bench-$mode.err" &
  PIDS+=($!)
done

cat > "$WORK/proxy.conf" <<CONF
worker_processes 1;
pid $WORK/proxy.pid;
error_log $WORK/proxy.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream backend { server $BACKEND; keepalive 64; }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  server {
    listen 127.0.0.1:18603;
    location / { proxy_pass http://backend; }
  }
  server {
    listen 127.0.0.1:18604;
    gzip on;
    gzip_comp_level 6;
    gzip_min_length 1024;
    gzip_proxied any;
    gzip_types application/json;
    gzip_vary on;
    location / { proxy_pass http://backend; }
  }
}
CONF
nginx -c "$WORK/proxy.conf" -p "$WORK"

for port in 18600 18601 18602 18603 18604; do
  for _ in $(seq 1 50); do curl -fso /dev/null "http://127.0.0.1:$port/data.json" && break; sleep 0.1; done
done

size() { curl -s -H "Accept-Encoding: $2" "http://127.0.0.1:$1/data.json" | wc -c; }
run() {
  local name=$1 port=$2 enc=$3 hdr=()
  [ -n "$enc" ] && hdr=(-H "Accept-Encoding: $enc")
  local rps
  rps=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" "${hdr[@]}" "http://127.0.0.1:$port/data.json" \
    | awk '/Requests\/sec/ {print $2}' || true)
  printf '| %-28s | %-8s | %7s | %10s |\n' "$name" "${enc:-none}" "$(size "$port" "${enc:-identity}")" "$rps"
}

echo
echo "== throughput, 20 KB JSON, one proxy worker, wrk -t1 -c$CONNS -d${DURATION}s =="
echo "| proxy                        | coding   | bytes   | req/s      |"
echo "| ---------------------------- | -------- | ------- | ---------- |"
run "weir, no compression" 18601 ""
run "weir compression, no A-E" 18602 ""
run "weir compression" 18602 gzip
run "weir compression" 18602 br
run "weir compression" 18602 zstd
run "nginx, no gzip" 18603 ""
run "nginx gzip on (level 6)" 18604 gzip
echo
echo "machine: $(nproc) cores, shared; numbers are noisy (one run each)."
