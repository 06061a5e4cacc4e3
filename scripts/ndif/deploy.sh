#!/usr/bin/env bash
# Deploy a model on the running local NDIF stack: deploy.sh [MODEL_ID] (default toy:arbiter; any
# anchorlab model id: a toy, a local folder). The model key is computed by anchorlab's own client
# code, so client and server agree on it for a local path; size and dtype are given up front (the
# hub cannot be asked offline; ndif's auto-deploy on first request fails with nnsight 0.8).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/env.sh"
MODEL=${1:-toy:arbiter}
DTYPE=${NDIF_DEPLOY_DTYPE:-float32}
PY=${PYTHON:-python3}

"$PY" - "$MODEL" "$DTYPE" "$NDIF_ACTOR_CLASS" > "$NDIF_STATE/models.yaml" <<'PYEOF'
import sys
from pathlib import Path
import transformers, yaml
from anchorlab.adapters import adapter_for
from anchorlab.backends.ndif import model_key, task_for
from anchorlab.models.loading import resolve_model_path
model, dtype, actor = sys.argv[1:4]
path = resolve_model_path(model)
if not Path(path, "config.json").is_file():
    sys.exit(f"deploy: {model} -> {path} has no config.json (shipped toy weights missing?)")
task = task_for(adapter_for(transformers.AutoConfig.from_pretrained(path)))
size = sum(f.stat().st_size for f in Path(path).glob("*.safetensors")) or 1
print(yaml.safe_dump({"models": [{"checkpoint": path, "model_key": model_key(path, None, task), "task": task,
                                  "dtype": dtype, "size_bytes": size, "actor_class": actor, "pinned": True}]}))
PYEOF
started=$(date +%s%N)
ip netns exec "$NDIF_NETNS" bash -c "source '$HERE/env.sh'; ndif_env; cd '$NDIF_STATE'; ndif deploy -f models.yaml"
# the API's status cache lags the controller: wait until the model shows as RUNNING there
ip netns exec "$NDIF_NETNS" "$PY" - "$NDIF_PORT" "$NDIF_STATE/models.yaml" <<'PYEOF'
import json, sys, time, urllib.request, yaml
port, config = sys.argv[1], yaml.safe_load(open(sys.argv[2]))
key = config["models"][0]["model_key"]
for _ in range(240):
    try:
        status = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10))
        if any((d.get("model_key") or name.split(":ModelActor:", 1)[-1]) == key and d.get("application_state") == "RUNNING"
               for name, d in status.get("deployments", {}).items()):
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit(f"deploy: {key} never showed as RUNNING in /status")
PYEOF
echo "deployed $MODEL in $(( ($(date +%s%N) - started) / 1000000 )) ms"
