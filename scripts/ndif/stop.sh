#!/usr/bin/env bash
# Stop the local NDIF stack started by start.sh: only its recorded process group / PID namespace
# (never `ndif stop` or `ray stop --force`, which kill every Ray process on the machine by name).
# Exits non-zero if any process of the stack is left behind.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/env.sh"

pidfile="$NDIF_STATE/stack.pid"
if [ -f "$pidfile" ]; then
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    # the namespace's init (the stack script, child of unshare) shuts its services down gracefully
    init=$(ps -o pid= --ppid "$pid" | head -n1 | tr -d ' ')
    [ -n "$init" ] && kill -TERM "$init" 2>/dev/null
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    # whatever is left: the whole recorded process group (unshare's death kills the namespace)
    kill -0 "$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  fi
  rm -f "$pidfile"
fi
left=""
if ip netns list 2>/dev/null | grep -qw "$NDIF_NETNS"; then
  for _ in $(seq 20); do left=$(ip netns pids "$NDIF_NETNS" 2>/dev/null | tr '\n' ' '); [ -z "$left" ] && break; sleep 0.25; done
  [ -z "$left" ] && ip netns delete "$NDIF_NETNS"
fi
if [ -n "$left" ]; then
  echo "error: processes left in namespace $NDIF_NETNS: $left" >&2
  ps -o pid,pgid,cmd -p "${left// /,}" >&2 || true
  exit 1
fi
echo "NDIF stack stopped; no process left"
