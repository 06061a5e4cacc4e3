#!/usr/bin/env bash
# Build the local NDIF server's own virtual environment (outside the repo, ~1.7 GB with Ray), so the
# user's anchorlab install stays light. Idempotent: a complete venv (marker file) is left as it is.
#
# Why these steps: ndif 0.1.2 declares Python >= 3.12 but runs on 3.11, so it goes in with
# --no-deps --ignore-requires-python and its dependencies are installed normally afterwards
# (--ignore-requires-python on the whole set makes pip pick a numpy that fails to build). torch,
# transformers and nnsight are pinned to the client's versions: nnsight ships code between them.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/env.sh"
PY=${PYTHON:-python3}

if [ -f "$NDIF_VENV/.anchorlab-complete" ] && [ "$(cat "$NDIF_VENV/.anchorlab-complete")" = "$NDIF_VENV_STAMP" ]; then
  echo "ndif venv ready: $NDIF_VENV"
  exit 0
fi

# redis-server comes from Debian (no PyPI build of the server itself).
source "$HERE/../debian.sh"
command -v redis-server >/dev/null 2>&1 || need_debian /usr/bin/redis-server redis-server

rm -rf "$NDIF_VENV"
"$PY" -m venv "$NDIF_VENV"
VPY="$NDIF_VENV/bin/python"
"$VPY" -m pip install -q --upgrade pip
versions=$("$PY" - <<'PYEOF'
from importlib.metadata import version
print(" ".join(f"{p}=={version(p).split('+')[0]}" for p in ("torch", "transformers", "nnsight")))
PYEOF
)
echo "ndif venv: $versions (the client's versions)"
"$VPY" -m pip install -q $versions
"$VPY" -m pip install -q --no-deps --ignore-requires-python "ndif==$NDIF_VERSION"
# ndif's own requirements (base + api + ray extras), resolved normally; moto[server] is the S3 store
"$VPY" -m pip install -q $versions pydantic redis click python-dotenv pyyaml boto3 \
  fastapi "uvicorn[standard]" gunicorn python-multipart "ray[default]" accelerate numpy zstandard peft \
  einops pillow "moto[server]"
echo "$NDIF_VENV_STAMP" > "$NDIF_VENV/.anchorlab-complete"
echo "ndif venv ready: $NDIF_VENV ($(du -sh "$NDIF_VENV" | cut -f1))"
