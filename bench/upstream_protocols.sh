#!/usr/bin/env bash
# The cost of TLS and HTTP/2 towards the servers: req/s of weir, nginx and
# HAProxy, each proxying to the same nginx backend over
#   h1      plain HTTP/1.1 (keep-alive pool)
#   tls-h1  HTTP/1.1 over TLS (pooled, session reuse)
#   h2c     HTTP/2 with prior knowledge (nginx: grpc_pass, the only HTTP/2 it
#           speaks upstream; HAProxy: `proto h2`)
#   tls-h2  HTTP/2 over TLS by ALPN (nginx: grpc_pass grpcs://; HAProxy:
#           `ssl alpn h2`)
# Clients speak plain HTTP/1.1 to the proxy (wrk). One worker each (nginx
# `worker_processes 1`, HAProxy `nbthread 1`, weir `--threads 1`), defaults
# otherwise, access logs off; one nginx backend worker; all on loopback.
#
#   bash bench/upstream_protocols.sh                 # 3 s per case, 1 round
#   DURATION=5 ROUNDS=3 bash bench/upstream_protocols.sh
#
# The machine has 2 cores shared by the client, the proxy and the backend
# (and, while developing, other builds): numbers are noisy; compare columns
# of one run, not runs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-1}
CONNS=${CONNS:-32}

for bin in wrk nginx haproxy; do
  command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || {
    echo "needs $bin (apt-get install -y $bin)" >&2
    exit 1
  }
done
export PATH=$PATH:/usr/sbin
cargo build --release --quiet --bin weir

WORK=$(mktemp -d /tmp/weir-upbench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/backend.pid" ] && kill "$(cat "$WORK/backend.pid")" 2>/dev/null || true
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  sleep 0.3
  rm -rf "$WORK"
}
trap cleanup EXIT

CRT=$ROOT/certs-dev/localhost.crt
KEY=$ROOT/certs-dev/localhost.key
CA=$ROOT/certs-dev/ca.crt
# Backend ports: plain h1, TLS h1, h2c, TLS h2.
B_H1=19001; B_TLS=19002; B_H2C=19003; B_TLSH2=19004
declare -A PORT=([weir]=19101 [nginx]=19102 [haproxy]=19103)

head -c 128 /dev/zero | tr '\0' 'x' > "$WORK/index.html"
cat > "$WORK/backend.conf" <<CONF
worker_processes 1;
pid $WORK/backend.pid;
error_log $WORK/backend.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  ssl_certificate $CRT;
  ssl_certificate_key $KEY;
  server {
    listen 127.0.0.1:$B_H1;
    listen 127.0.0.1:$B_TLS ssl;
    root $WORK; location / { try_files /index.html =404; }
  }
  server {
    listen 127.0.0.1:$B_H2C http2;
    listen 127.0.0.1:$B_TLSH2 ssl http2;
    root $WORK; location / { try_files /index.html =404; }
  }
}
CONF
nginx -c "$WORK/backend.conf" -p "$WORK"

cat > "$WORK/weir.yaml" <<CONF
access_log:
  enabled: false
listeners:
  - address: "127.0.0.1:${PORT[weir]}"
routes:
  - { match: { path_prefix: /h1 }, group: h1 }
  - { match: { path_prefix: /tls-h1 }, group: tls_h1 }
  - { match: { path_prefix: /h2c }, group: h2c }
  - { match: { path_prefix: /tls-h2 }, group: tls_h2 }
groups:
  h1:
    servers: [ { address: "127.0.0.1:$B_H1" } ]
  tls_h1:
    tls: { ca: $CA, server_name: localhost }
    servers: [ { address: "127.0.0.1:$B_TLS" } ]
  h2c:
    protocol: http2
    servers: [ { address: "127.0.0.1:$B_H2C" } ]
  tls_h2:
    protocol: http2
    tls: { ca: $CA, server_name: localhost }
    servers: [ { address: "127.0.0.1:$B_TLSH2" } ]
CONF

cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream h1 { server 127.0.0.1:$B_H1; keepalive 64; }
  upstream tls_h1 { server 127.0.0.1:$B_TLS; keepalive 64; }
  upstream h2c { server 127.0.0.1:$B_H2C; keepalive 64; }
  upstream tls_h2 { server 127.0.0.1:$B_TLSH2; keepalive 64; }
  server {
    listen 127.0.0.1:${PORT[nginx]};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    location /h1 { proxy_pass http://h1; }
    location /tls-h1 { proxy_pass https://tls_h1; proxy_ssl_session_reuse on; }
    location /h2c { grpc_pass grpc://h2c; }
    location /tls-h2 { grpc_pass grpcs://tls_h2; }
  }
}
CONF
nginx -c "$WORK/nginx.conf" -p "$WORK"

cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
defaults
  mode http
  timeout connect 3s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:${PORT[haproxy]}
  use_backend tls_h1 if { path_beg /tls-h1 }
  use_backend h2c if { path_beg /h2c }
  use_backend tls_h2 if { path_beg /tls-h2 }
  default_backend h1
backend h1
  server s1 127.0.0.1:$B_H1
backend tls_h1
  server s1 127.0.0.1:$B_TLS ssl verify none
backend h2c
  server s1 127.0.0.1:$B_H2C proto h2
backend tls_h2
  server s1 127.0.0.1:$B_TLSH2 ssl verify none alpn h2
CONF
haproxy -f "$WORK/haproxy.cfg" -q &
PIDS+=($!)
target/release/weir --threads 1 --config "$WORK/weir.yaml" 2>"$WORK/weir.err" &
PIDS+=($!)
sleep 1

CASES="h1 tls-h1 h2c tls-h2"
printf '%-8s' case; for p in weir nginx haproxy; do printf ' %12s' "$p"; done; echo
declare -A RESULT
for round in $(seq 1 "$ROUNDS"); do
  for c in $CASES; do
    for p in weir nginx haproxy; do
      url="http://127.0.0.1:${PORT[$p]}/$c"
      code=$(curl -s -o /dev/null -w '%{http_code}' "$url" || echo 000)
      if [ "$code" != 200 ]; then RESULT[$c.$p]+=" err$code"; continue; fi
      rps=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url" | awk '/Requests\/sec/ {print int($2)}')
      errs=$(wrk -t1 -c1 -d1s "$url" | awk '/Non-2xx/ {print $NF}')
      RESULT[$c.$p]+=" $rps${errs:+(non2xx:$errs)}"
    done
  done
done
for c in $CASES; do
  printf '%-8s' "$c"
  for p in weir nginx haproxy; do
    # median of the rounds
    med=$(echo "${RESULT[$c.$p]}" | tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}')
    printf ' %12s' "$med"
  done
  echo
done
echo "(req/s, wrk -t1 -c$CONNS -d${DURATION}s, median of $ROUNDS round(s); 2 shared cores: noisy)"
