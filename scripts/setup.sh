#!/usr/bin/env bash
# Set up anchorlab on a fresh machine: system packages, the CPU torch build, the package + test deps.
# Idempotent: a second run only checks what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# WordNet 3.0 (answer entity dictionary candidates) from Debian; nltk.download users need none of it.
if { [ ! -f /usr/share/wordnet/data.noun ] || [ ! -f /usr/share/wordnet/index.sense ]; } && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base wordnet-sense-index >/dev/null
fi

# torch first and pinned: an unpinned torch pulls gigabytes of CUDA packages here.
"$PY" -m pip install -q torch==2.13.0
"$PY" -m pip install -q -e ".[test]"
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
# Make WordNet readable by NLTK now (copies Debian's files + lexnames into anchorlab's cache once).
"$PY" -c "from anchorlab.wordnet import locate; print('WordNet:', locate()[1])" || true
