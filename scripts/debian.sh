# Sourced by the set-up scripts: install Debian packages that provide a file, as root or through sudo.
#
# need_debian FILE PKG...: nothing to do when FILE exists; otherwise install PKG... (--reinstall, so
# files deleted or hidden under an installed package come back) and fail unless FILE is then there.
# As root apt-get runs directly, otherwise through sudo; `env` sets DEBIAN_FRONTEND in both cases (a
# bare `VAR=x cmd` after an empty "$SUDO" expansion is not an assignment: bash runs `VAR=x` as a
# command and exits 127, the bug that broke both README commands on a fresh machine as root).
need_debian() {
  local file=$1; shift
  [ -e "$file" ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: $file is missing and this machine has no apt-get; install $* (Debian names) by hand" >&2
    return 1
  fi
  local -a sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "setup: $file is missing; installing $* needs root or sudo" >&2; return 1; }
    sudo=(sudo)
  fi
  echo "setup: installing Debian packages $* (for $file)"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall "$@" >/dev/null
  [ -e "$file" ] || { echo "setup: installed $* but $file is still missing" >&2; return 1; }
}
