# Settings shared by the local NDIF stack scripts (sourced, not run). Every port lives inside the
# stack's own network namespace (loopback only), so none of them is reachable from outside it.
NDIF_VERSION=0.1.2
NDIF_VENV=${NDIF_VENV:-$HOME/.cache/anchorlab/ndif-venv}
NDIF_VENV_STAMP="ndif==$NDIF_VERSION py$(${PYTHON:-python3} -c 'import sys;print("%d.%d" % sys.version_info[:2])')"
NDIF_STATE=${NDIF_STATE:-/tmp/anchorlab-ndif}   # short: Ray's unix socket paths must stay < 108 chars
NDIF_NETNS=${NDIF_NETNS:-anchorlab-ndif}
NDIF_PORT=${NDIF_PORT:-5001}
NDIF_START_TIMEOUT=${NDIF_START_TIMEOUT:-240}
NDIF_ACTOR_CLASS=anchorlab_ndif_actor.CPUModelActor
# the environment every stack process (and `ndif deploy`) reads
ndif_env() {
  export PATH="$NDIF_VENV/bin:$PATH"
  export NDIF_HOME="$NDIF_STATE/home"
  export NDIF_REDIS_URL=redis://127.0.0.1:6379
  export NDIF_OBJECT_STORE_URL=http://127.0.0.1:9000
  export NDIF_OBJECT_STORE_ACCESS_KEY=anchorlab NDIF_OBJECT_STORE_SECRET_KEY=anchorlab
  export NDIF_RAY_ADDRESS=ray://127.0.0.1:10001
  export NDIF_RAY_HEAD_PORT=6385
  export NDIF_API_URL=http://127.0.0.1:$NDIF_PORT NDIF_API_PORT=$NDIF_PORT
  export NDIF_MODEL_IMPORT_PATH=$NDIF_ACTOR_CLASS
  export NDIF_MINIMUM_DEPLOYMENT_TIME_SECONDS=0
  export RAY_USAGE_STATS_ENABLED=0 GRPC_ENABLE_FORK_SUPPORT=0 TOKENIZERS_PARALLELISM=false
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
  export AWS_ACCESS_KEY_ID=anchorlab AWS_SECRET_ACCESS_KEY=anchorlab AWS_DEFAULT_REGION=us-east-1
}
