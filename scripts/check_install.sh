#!/usr/bin/env bash
# CI's proof that the set-up's system step installs, not just finds: WordNet is hidden under an empty
# tmpfs in a private mount namespace (the machine's own copy is untouched), `setup.sh --system-only`
# must bring it back there, and the files must be readable afterwards. Needs root (CI runs as root).
set -euo pipefail
cd "$(dirname "$0")/.."
unshare --mount --propagation private bash -euo pipefail -c '
  mkdir -p /usr/share/wordnet
  mount -t tmpfs anchorlab-no-wordnet /usr/share/wordnet
  if [ -e /usr/share/wordnet/data.noun ]; then echo "check_install: WordNet is not hidden" >&2; exit 1; fi
  bash scripts/setup.sh --system-only
  for f in data.noun index.sense; do
    [ -s "/usr/share/wordnet/$f" ] || { echo "check_install: setup left /usr/share/wordnet/$f missing" >&2; exit 1; }
  done
  echo "check_install: the system step installed WordNet into an empty /usr/share/wordnet"
'
