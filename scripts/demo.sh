#!/usr/bin/env bash
# Starts `cod devstack`, runs the two-stage chained job from a contract, prints the result, stops.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=.devstack
out=$(mktemp)
.venv/bin/cod devstack --state-dir "$STATE" >"$out" 2>&1 &
stack=$!
trap 'kill -TERM $stack 2>/dev/null; wait $stack 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 1 180); do
  grep -q "ready" "$out" && break
  kill -0 $stack 2>/dev/null || { cat "$out"; echo "devstack failed to start" >&2; exit 1; }
  sleep 1
done
grep -q "ready" "$out" || { cat "$out"; echo "devstack not ready after 180 s" >&2; exit 1; }
cat "$out"
# shellcheck disable=SC1091
source "$STATE/env"
.venv/bin/cod demo "$@"
