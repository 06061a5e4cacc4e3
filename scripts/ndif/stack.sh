#!/usr/bin/env bash
# The local NDIF stack itself: PID 1 of its own PID namespace, inside a loopback-only network
# namespace (started by start.sh, never directly). Everything it starts dies with it: when this
# process exits the kernel kills every process left in the namespace, daemonized Ray included.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/env.sh"
ndif_env
cd "$NDIF_STATE"
mkdir -p "$NDIF_HOME"

shutdown() {
  echo "stack: stopping"
  kill -TERM -1 2>/dev/null   # every process in this PID namespace (only ours) but this one
  for _ in $(seq 20); do [ -z "$(jobs -pr)" ] && break; sleep 0.5; done
  exit 0
}
trap shutdown TERM INT

wait_port() {  # wait_port PORT NAME
  for _ in $(seq 120); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.5; done
  echo "stack: $2 did not open port $1" >&2; exit 1
}

redis-server --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir "$NDIF_STATE" > redis.log 2>&1 &
moto_server -H 127.0.0.1 -p 9000 > s3.log 2>&1 &
wait_port 6379 redis
wait_port 9000 s3
# create the results bucket now: otherwise the first non-blocking request can race its creation
python -c "import boto3; boto3.client('s3', endpoint_url='$NDIF_OBJECT_STORE_URL').create_bucket(Bucket='ndif-results')"
echo "stack: redis + s3 up"

# one logical GPU: ndif's controller only places models on nodes with a GPU resource
mem=$((8 * 1024 * 1024 * 1024))
PYTHONPATH="$HERE/server" ray start --head --num-cpus=4 --num-gpus=1 \
  --resources="{\"head\": 10, \"cuda_memory_bytes\": $mem, \"cpu_memory_bytes\": $mem}" \
  --node-ip-address=127.0.0.1 --port=6385 --ray-client-server-port=10001 \
  --include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port=8265 \
  --object-store-memory=200000000 --temp-dir="$NDIF_STATE/ray" --disable-usage-stats > ray.log 2>&1 \
  || { echo "stack: ray failed to start (see $NDIF_STATE/ray.log)" >&2; exit 1; }
echo "stack: ray up"
RAY_ADDRESS=127.0.0.1:6385 PYTHONPATH="$HERE/server" python -m ndif.services.ray.deployments.controller.controller \
  > controller.log 2>&1 || { echo "stack: controller failed (see $NDIF_STATE/controller.log)" >&2; exit 1; }
echo "stack: controller up"
NDIF_SERVICE=api gunicorn --config python:ndif.services.api.gunicorn_conf ndif.services.api.app:app > api.log 2>&1 &
for _ in $(seq 120); do
  python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$NDIF_PORT/ping', timeout=2)" 2>/dev/null && break
  sleep 0.5
done
python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$NDIF_PORT/ping', timeout=2)" \
  || { echo "stack: API did not answer /ping (see $NDIF_STATE/api.log)" >&2; exit 1; }
echo "stack: api up on 127.0.0.1:$NDIF_PORT"
touch "$NDIF_STATE/ready"
while true; do sleep 1 & wait $!; done
