#!/usr/bin/env bash
# Start a local NDIF stack (redis, an S3 store, a Ray head with NDIF's controller, NDIF's API) for
# integration tests, isolated twice over: a network namespace with only loopback (Ray, gunicorn and
# the dashboard bind every interface whatever they are told) and a PID namespace (so stop.sh ends
# every process of the stack, daemonized Ray included, and nothing else). Needs root (ip netns).
# Prints the host to use: NDIF_HOST=http://127.0.0.1:PORT, reachable only via scripts/ndif/exec.sh.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/env.sh"

if [ -f "$NDIF_STATE/stack.pid" ] && kill -0 "$(cat "$NDIF_STATE/stack.pid")" 2>/dev/null; then
  echo "error: a stack is already running (pid $(cat "$NDIF_STATE/stack.pid")); scripts/ndif/stop.sh first" >&2
  exit 1
fi
bash "$HERE/install.sh"
for tool in ip unshare setsid; do
  command -v "$tool" >/dev/null || { echo "error: '$tool' not found (iproute2 / util-linux)" >&2; exit 3; }
done
if ! ip netns list | grep -qw "$NDIF_NETNS"; then
  ip netns add "$NDIF_NETNS" || { echo "error: cannot create network namespace $NDIF_NETNS (needs root)" >&2; exit 3; }
fi
ip netns exec "$NDIF_NETNS" ip link set lo up
rm -rf "$NDIF_STATE"
mkdir -p "$NDIF_STATE"

started=$(date +%s%N)
setsid ip netns exec "$NDIF_NETNS" unshare --pid --fork --kill-child --mount-proc \
  bash "$HERE/stack.sh" > "$NDIF_STATE/stack.log" 2>&1 < /dev/null &
echo $! > "$NDIF_STATE/stack.pid"
deadline=$(( $(date +%s) + NDIF_START_TIMEOUT ))
until [ -f "$NDIF_STATE/ready" ]; do
  if ! kill -0 "$(cat "$NDIF_STATE/stack.pid")" 2>/dev/null || [ "$(date +%s)" -gt "$deadline" ]; then
    echo "error: the NDIF stack did not come up; its log:" >&2
    tail -n 30 "$NDIF_STATE"/stack.log "$NDIF_STATE"/*.log >&2 2>/dev/null || true
    bash "$HERE/stop.sh" >&2 || true
    exit 1
  fi
  sleep 1
done
echo "NDIF stack up in $(( ($(date +%s%N) - started) / 1000000 )) ms (pid $(cat "$NDIF_STATE/stack.pid"), namespace $NDIF_NETNS, logs $NDIF_STATE)"
echo "NDIF_HOST=http://127.0.0.1:$NDIF_PORT"
