#!/usr/bin/env bash
# Sets up clawbox on a fresh Debian 12 machine and runs a demonstration sandbox: one allowed request, two denied
# ones, and the audit lines they left. Everything stays on this machine: the "allowed API" is a small server on a
# loopback alias in 198.18.0.0/15 (the range reserved for benchmarks), removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/quickstart.sh: must run as root (it runs scripts/setup.sh and adds a loopback alias for its demo API); try: sudo scripts/quickstart.sh" >&2
  exit 1
fi

bash scripts/setup.sh

demo_ip=198.18.0.80
work="$(mktemp -d)"
ip addr add "$demo_ip/32" dev lo 2>/dev/null || true
node -e "require('http').createServer((q, s) => s.end('hello from the allowed demo API\n')).listen(80, '$demo_ip')" &
server=$!
# The demo's audit trail is its own, so its run gets a gateway of its own: remove that one (it mounts $work) too.
remove_demo_gateway() {
  local id
  for id in $(docker ps -aq --filter label=dev.clawbox.role=gateway 2>/dev/null); do
    if docker inspect -f '{{range .Mounts}}{{.Source}} {{end}}' "$id" 2>/dev/null | grep -qF "$work"; then
      docker rm -f "$id" >/dev/null 2>&1 || true
    fi
  done
}
cleanup() { kill "$server" 2>/dev/null || true; ip addr del "$demo_ip/32" dev lo 2>/dev/null || true; remove_demo_gateway; rm -rf "$work"; }
trap cleanup EXIT

cat >"$work/config.yml" <<YAML
sandbox:
  network_policy: deny-by-default
  allowed_hosts:
    - '$demo_ip'          # the demo API (an address of this host, so it must be named exactly)
  denied_hosts:
    - '169.254.169.254'
  logging:
    audit_trail: '$work/audit.log'
YAML

echo
echo "[quickstart] clawbox run -- sh -c '<three requests>'"
bin/clawbox run --config "$work/config.yml" -- sh -c "
  echo '--- allowed:  curl http://$demo_ip/';            curl -sS -m 10 http://$demo_ip/
  echo '--- denied:   curl http://169.254.169.254/ (cloud metadata)'; curl -sS -m 10 http://169.254.169.254/latest/meta-data/
  echo '--- denied:   curl http://api.example.com/ (not in allowed_hosts)'; curl -sS -m 10 http://api.example.com/
  true"

echo
echo "[quickstart] audit trail ($work/audit.log):"
node -e '
  const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => JSON.parse(l));
  for (const e of lines) {
    if (e.event === "decision") console.log(`${e.decision.toUpperCase().padEnd(5)} ${e.channel.padEnd(7)} ${(e.host + ":" + e.port).padEnd(22)} rule=${e.rule}  sandbox=${e.sandbox ?? "-"}`);
    else if (e.event === "close") console.log(`CLOSE ${e.channel.padEnd(7)} ${(e.host + ":" + e.port).padEnd(22)} up=${e.bytes_up}B down=${e.bytes_down}B ${e.duration_ms}ms`);
    else if (e.event === "run") console.log(`RUN   exit=${e.exit_code} ${e.duration_ms}ms allowed=${e.connections_allowed} denied=${e.connections_denied} peak_mem=${e.peak_memory_bytes}B`);
  }' "$work/audit.log"
