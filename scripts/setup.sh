#!/usr/bin/env bash
# Set up anchorlab on a fresh machine: system packages, the CPU torch build, the package + test deps.
# Idempotent: a second run only checks what is already there. `--system-only`: the Debian step alone.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# WordNet 3.0 (answer entity dictionary candidates) from Debian; nltk.download users need none of it.
# WORDNET_DIR moves where it is looked for (the tests point it at an empty folder).
source scripts/debian.sh
WORDNET_DIR=${WORDNET_DIR:-/usr/share/wordnet}
need_debian "$WORDNET_DIR/data.noun" wordnet-base
need_debian "$WORDNET_DIR/index.sense" wordnet-sense-index
[ "${1:-}" = "--system-only" ] && exit 0

# torch first and pinned: an unpinned torch pulls gigabytes of CUDA packages here.
"$PY" -m pip install -q torch==2.13.0
"$PY" -m pip install -q -e ".[test]"
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
# Make WordNet readable by NLTK now (copies Debian's files + lexnames into anchorlab's cache once).
"$PY" -c "from anchorlab.dictionary.wordnet import locate; print('WordNet:', locate()[1])"
