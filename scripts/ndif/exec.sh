#!/usr/bin/env bash
# Run a command inside the local NDIF stack's network namespace, with NDIF_HOST pointing at it
# (the stack is reachable nowhere else). Example: scripts/ndif/exec.sh anchorlab run R --remote
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/env.sh"
exec ip netns exec "$NDIF_NETNS" env NDIF_HOST="http://127.0.0.1:$NDIF_PORT" "$@"
