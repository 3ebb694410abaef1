#!/usr/bin/env bash
# Failover test of two weir balancers sharing a VIP with keepalived (VRRP).
#
# Builds, in network namespaces it creates (nothing leaves them):
#   weirha-sw  a bridge (the "switch")
#   weirha-c   the client            192.0.2.10
#   weirha-b1  balancer 1 (MASTER)   192.0.2.11   weir + keepalived
#   weirha-b2  balancer 2 (BACKUP)   192.0.2.12   weir + keepalived
#   weirha-up  two upstreams         192.0.2.21:8080, 192.0.2.22:8080
#   VIP 192.0.2.100 (port 8080), held by whichever balancer is MASTER.
# Then: a sticky cookie from balancer 1, `hey` and a timestamped curl loop
# against the VIP, kill balancer 1's weir, and assert that the VIP moved to
# balancer 2, that the client's largest gap without an answer stayed below
# MAX_GAP seconds, and that balancer 2 honors balancer 1's cookie.
#
# Needs root, iproute2 (ip netns), keepalived, curl, hey, python3.
# Usage: sudo examples/ha/failover-test.sh   (WEIR_BIN=path to use a built weir)
set -euo pipefail
cd "$(dirname "$0")/../.."

MAX_GAP=${MAX_GAP:-5}
VIP=192.0.2.100
P=weirha
WORK=$(mktemp -d /tmp/weirha.XXXXXX)
NS=("$P-sw" "$P-c" "$P-b1" "$P-b2" "$P-up")
PIDS=()

log() { printf '[failover-test %s] %s\n' "$(date +%T)" "$*"; }
fail() {
  log "FAIL: $*"
  for f in "$WORK"/*.log; do
    [ -f "$f" ] && { echo "--- $f"; tail -n 40 "$f"; }
  done
  exit 1
}

cleanup() {
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 0.3
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
  # Anything still running inside our namespaces (started by this script).
  for ns in "${NS[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

[ "$(id -u)" -eq 0 ] || { echo "needs root (ip netns)"; exit 1; }
for bin in ip keepalived curl hey python3; do
  command -v "$bin" >/dev/null || { echo "missing $bin"; exit 1; }
done
WEIR_BIN=${WEIR_BIN:-target/debug/weir}
if [ ! -x "$WEIR_BIN" ]; then cargo build --quiet --bin weir; fi
WEIR_BIN=$(realpath "$WEIR_BIN")
PYTHON=$(command -v python3)
KEEPALIVED=$(command -v keepalived)

# Leftovers of an interrupted run.
for ns in "${NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done

log "namespaces and bridge"
for ns in "${NS[@]}"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
ip -n "$P-sw" link add br0 type bridge
ip -n "$P-sw" link set br0 up
attach() { # ns, address/prefix...
  local ns=$1; shift
  ip -n "$P-sw" link add "v-${ns#"$P"-}" type veth peer name eth0 netns "$ns"
  ip -n "$P-sw" link set "v-${ns#"$P"-}" master br0 up
  for a in "$@"; do ip -n "$ns" addr add "$a" dev eth0; done
  ip -n "$ns" link set eth0 up
}
attach "$P-c" 192.0.2.10/24
attach "$P-b1" 192.0.2.11/24
attach "$P-b2" 192.0.2.12/24
attach "$P-up" 192.0.2.21/24 192.0.2.22/24
inns() { local ns=$1; shift; ip netns exec "$P-$ns" "$@"; }

log "upstreams"
for n in 1 2; do
  mkdir -p "$WORK/app$n"
  echo "app$n" >"$WORK/app$n/index.html"
  inns up "$PYTHON" -m http.server 8080 --bind "192.0.2.2$n" --directory "$WORK/app$n" \
    >"$WORK/app$n.log" 2>&1 &
  PIDS+=($!)
done

export WEIR_AFFINITY_SECRET=failover-test-shared-secret-0123456789
start_weir() { # n
  # `ip netns exec` execs weir: $! is weir's pid.
  ip netns exec "$P-b$1" "$WEIR_BIN" --config examples/ha/weir.yaml >"$WORK/weir-b$1.log" 2>&1 &
  PIDS+=($!)
  eval "WEIR_B$1=$!"
}
start_weir 1
start_weir 2

render() { # n state priority src peer
  sed -e "s/@ROUTER_ID@/weir_b$1/" -e "s/@STATE@/$2/" -e "s/@PRIORITY@/$3/" \
    -e "s/@IFACE@/eth0/" -e "s/@SRC@/$4/" -e "s/@PEER@/$5/" -e "s,@VIP@,$VIP/24," \
    examples/ha/keepalived.conf.in >"$WORK/keepalived-b$1.conf"
}
render 1 MASTER 150 192.0.2.11 192.0.2.12
render 2 BACKUP 100 192.0.2.12 192.0.2.11
for n in 1 2; do
  inns "b$n" "$KEEPALIVED" --dont-fork --log-console --vrrp \
    --use-file "$WORK/keepalived-b$n.conf" \
    --pid "$WORK/keepalived-b$n.pid" --vrrp_pid "$WORK/vrrp-b$n.pid" \
    >"$WORK/keepalived-b$n.log" 2>&1 &
  PIDS+=($!)
done

has_vip() { ip -n "$P-$1" -4 addr show dev eth0 | grep -q "inet $VIP/"; }
wait_for() { # seconds, description, command...
  local until=$((SECONDS + $1)) what=$2; shift 2
  until "$@"; do
    [ $SECONDS -lt $until ] || fail "$what: not within the time limit"
    sleep 0.1
  done
}
answers() { inns c curl -fsS -m 1 -o /dev/null "http://$VIP:8080/"; }

log "waiting for the VIP on b1"
wait_for 20 "VIP on b1" has_vip b1
has_vip b2 && fail "VIP on both balancers"
wait_for 10 "weir answers on the VIP" answers

log "sticky cookie from b1"
COOKIES="$WORK/cookies"
PINNED=$(inns c curl -fsS -m 2 -c "$COOKIES" "http://$VIP:8080/")
grep -q weir_srv "$COOKIES" || fail "no weir_srv cookie from b1"
log "b1 pinned the client to $PINNED"

log "load (hey) and a timestamped curl loop against the VIP"
inns c hey -z 8s -c 8 -t 2 "http://$VIP:8080/" >"$WORK/hey.log" 2>&1 &
HEY=$!
PIDS+=($HEY)
OK="$WORK/ok.times"
: >"$OK"
inns c bash -c "while [ ! -e '$WORK/stop' ]; do
    if curl -fsS -m 1 -o /dev/null 'http://$VIP:8080/'; then date +%s.%N >>'$OK'; fi
    sleep 0.05
  done" >/dev/null 2>&1 &
LOOP=$!
PIDS+=($LOOP)

sleep 2
KILLED_AT=$(date +%s.%N)
log "killing b1's weir (pid $WEIR_B1)"
kill -9 "$WEIR_B1"

wait_for 15 "VIP moved to b2" has_vip b2
MOVED_AT=$(date +%s.%N)
has_vip b1 && fail "VIP still on b1 after the move"
log "VIP on b2 after $(awk "BEGIN{printf \"%.2f\", $MOVED_AT-$KILLED_AT}") s"

sleep 3
touch "$WORK/stop"
wait "$LOOP" 2>/dev/null || true
wait "$HEY" 2>/dev/null || true

TOTAL=$(wc -l <"$OK")
AFTER=$(awk -v t="$MOVED_AT" '$1 > t' "$OK" | wc -l)
GAP=$(sort -n "$OK" | awk 'NR > 1 { g = $1 - p; if (g > m) m = g } { p = $1 } END { printf "%.2f", m }')
log "curl loop: $TOTAL answers, $AFTER after the move, largest gap ${GAP}s (limit ${MAX_GAP}s)"
[ "$AFTER" -gt 0 ] || fail "no answers after the VIP moved"
awk -v g="$GAP" -v m="$MAX_GAP" 'BEGIN { exit !(g < m) }' || fail "gap ${GAP}s >= ${MAX_GAP}s"
grep -E "Requests/sec|\[200\]|Error distribution" -A3 "$WORK/hey.log" | head -n 12 || true

log "b2 honors b1's cookie"
for i in 1 2 3 4 5 6; do
  GOT=$(inns c curl -fsS -m 2 -b "$COOKIES" "http://$VIP:8080/")
  [ "$GOT" = "$PINNED" ] || fail "request $i with b1's cookie went to $GOT, not $PINNED"
done
# Without the cookie b2 balances over both (so the pin above is the cookie's doing).
SEEN=$(for i in 1 2 3 4; do inns c curl -fsS -m 2 "http://$VIP:8080/"; done | sort -u | wc -l)
[ "$SEEN" -eq 2 ] || fail "without a cookie b2 answered from $SEEN server(s), expected 2"

log "PASS (VIP moved, largest gap ${GAP}s, sticky cookie honored by b2)"
