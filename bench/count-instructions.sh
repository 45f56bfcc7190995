#!/bin/bash
# User-space instructions per tunnel of one clawbox gateway process, counted by callgrind: a figure that repeats to
# about 1 % from run to run, for comparing two builds where timings on a shared 2-core machine drift 5-8 % a round.
#
#   sudo bench/count-instructions.sh [DIST [TUNNELS]]    # DIST: a build (default: ./dist); TUNNELS: default 2000
#
# Needs valgrind (apt-get install valgrind) and the bench's C programs (`npm run bench` builds bench/.build). The
# echo upstream listens on 198.18.1.1, a loopback alias added here and removed on exit; nothing leaves the machine.
# CONNECT + 64 B echo + close from 4 clients: 3,000 tunnels of warm-up, then the counted ones.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dist=$(cd "${1:-$here/../dist}" && pwd)
tunnels=${2:-2000}
build=$here/.build
command -v valgrind >/dev/null || { echo "count-instructions: valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
[ -x "$build/loadgen" ] || { echo "count-instructions: $build/loadgen is missing: run npm run bench once" >&2; exit 2; }

work=$(mktemp -d /tmp/clawbox-count-XXXXXX)
upstream='' gateway='' alias_added=''
cleanup() {
  [ -n "$gateway" ] && kill -INT "$gateway" 2>/dev/null && sleep 2 && kill "$gateway" 2>/dev/null || true
  [ -n "$upstream" ] && kill "$upstream" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "$alias_added" ] && ip addr del 198.18.1.1/32 dev lo 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

ip addr add 198.18.1.1/32 dev lo && alias_added=1
"$build/upstreams" echo 198.18.1.1:7007 64 > /dev/null 2>&1 & upstream=$!
cat > "$work/config.yml" <<YAML
sandbox:
  network_policy: deny-by-default
  allowed_hosts:
    - "198.18.1.1:7007"
  logging:
    level: info
    audit_trail: $work/audit.log
YAML
valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.%p" --smc-check=all-non-file --dump-instr=no \
  node "$dist/src/cli/main.js" proxy --config "$work/config.yml" --http 127.0.0.1:13129 --socks 127.0.0.1:0 \
  --dns 127.0.0.1:0 --workers 1 > "$work/gateway.log" 2>&1 & gateway=$!
for _ in $(seq 240); do grep -q 'gateway listening' "$work/gateway.log" && break; sleep 0.5; done
grep -q 'gateway listening' "$work/gateway.log" || { echo "count-instructions: the gateway did not start:" >&2; cat "$work/gateway.log" >&2; exit 1; }

load() { "$build/loadgen" rate proto=connect target=198.18.1.1:7007 proxy=127.0.0.1:13129 conc=4 count="$1" payload=64 2>/dev/null; }
load 3000 > /dev/null
callgrind_control --zero "$gateway" > /dev/null 2>&1
ok=$(load "$tunnels" | grep -o '"ok":[0-9]*' | cut -d: -f2)
callgrind_control --dump "$gateway" > /dev/null 2>&1
sleep 1
dump=$(ls -t "$work"/callgrind.* | head -1)
total=$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")
[ "$ok" = "$tunnels" ] || { echo "count-instructions: only $ok of $tunnels tunnels succeeded" >&2; exit 1; }
echo "$dist: $((total / tunnels)) user-space instructions per tunnel ($tunnels tunnels)"
