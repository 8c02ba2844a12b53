# shellcheck shell=bash
# Shared setup for scripts/run and scripts/test. Source it; it defines functions and sets VB_ROOT.
#
#   vb_bootstrap_venv        create/update .venv with the pinned deps and the six local dists (editable)
#   vb_ensure_apt PKG:BIN..  apt-get install PKG when BIN is missing (root only)
#   vb_section TITLE         print a section header
#
# Knobs: PYTHON (interpreter to build the venv from), VB_VENV (default $VB_ROOT/.venv),
# VB_FORCE_INSTALL=1 (ignore the stamp and run pip anyway).

VB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VB_VENV="${VB_VENV:-$VB_ROOT/.venv}"
VB_PY="$VB_VENV/bin/python"
VB_STAMP="$VB_VENV/.voicebridge-install-stamp"

# The local dists, in install order. bench (the media benchmarks) brings scipy/pesq.
VB_LOCAL_DISTS=(proto/python libs/runtime services/media services/agent services/edge sim bench)

vb_section() {
  printf '\n\033[1m==> %s\033[0m\n' "$*"
}

vb_log() {
  printf '[bootstrap] %s\n' "$*" >&2
}

vb_die() {
  printf '[bootstrap] ERROR: %s\n' "$*" >&2
  exit 1
}

vb_is_root() {
  [ "$(id -u)" -eq 0 ]
}

VB_APT_UPDATED=0
vb_apt_install() {
  # vb_apt_install PKG... : install Debian packages (root only), apt-get update once per run.
  if ! command -v apt-get >/dev/null 2>&1; then
    vb_log "apt-get not found: install these packages by hand: $*"
    return 1
  fi
  if ! vb_is_root; then
    vb_log "not root: cannot install $*. Run: sudo apt-get install -y --no-install-recommends $*"
    return 1
  fi
  if [ "$VB_APT_UPDATED" -eq 0 ]; then
    vb_log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
    VB_APT_UPDATED=1
  fi
  vb_log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" || return 1
}

vb_ensure_apt() {
  # vb_ensure_apt PKG:BIN ... : install PKG only when BIN is not on PATH. Returns 1 if any stays missing.
  local spec pkg bin missing_pkgs=() still_missing=()
  for spec in "$@"; do
    pkg="${spec%%:*}"
    bin="${spec##*:}"
    command -v "$bin" >/dev/null 2>&1 || missing_pkgs+=("$pkg")
  done
  if [ "${#missing_pkgs[@]}" -eq 0 ]; then
    vb_log "system packages present: $*"
    return 0
  fi
  vb_apt_install "${missing_pkgs[@]}" || true
  for spec in "$@"; do
    bin="${spec##*:}"
    command -v "$bin" >/dev/null 2>&1 || still_missing+=("$bin")
  done
  if [ "${#still_missing[@]}" -gt 0 ]; then
    vb_log "still missing: ${still_missing[*]}"
    return 1
  fi
}

vb_pick_python() {
  # A Python 3.11-3.13 to build the venv from: $PYTHON, else python3.11, else python3.
  local cand
  for cand in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$cand" ] || continue
    command -v "$cand" >/dev/null 2>&1 || continue
    if "$cand" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 14) else 1)' 2>/dev/null; then
      command -v "$cand"
      return 0
    fi
  done
  return 1
}

vb_install_hash() {
  # Everything that decides what pip installs: pins, dev tools, the seven pyprojects, this script, Python.
  (
    cd "$VB_ROOT" || exit 1
    "$VB_PY" -c 'import sys; print(sys.version)'
    cat requirements/constraints.txt requirements/dev.txt \
      proto/python/pyproject.toml libs/runtime/pyproject.toml services/media/pyproject.toml \
      services/agent/pyproject.toml services/edge/pyproject.toml sim/pyproject.toml bench/pyproject.toml \
      scripts/lib/bootstrap.sh
  ) | sha256sum | cut -d' ' -f1
}

vb_create_venv() {
  local py
  py="$(vb_pick_python)" || vb_die "no Python 3.11+ found (set PYTHON=/path/to/python3.11)"
  vb_log "creating $VB_VENV with $py ($("$py" -V 2>&1))"
  rm -rf "$VB_VENV"
  if ! "$py" -m venv "$VB_VENV" 2>/dev/null; then
    # Debian's python3 ships venv/ensurepip separately.
    rm -rf "$VB_VENV"
    vb_log "'$py -m venv' failed; installing Debian's python3-venv"
    vb_apt_install python3-venv || vb_die "cannot create a venv: install python3-venv"
    "$py" -m venv "$VB_VENV" || vb_die "cannot create a venv with $py"
  fi
}

vb_bootstrap_venv() {
  local started want have
  started=$(date +%s)
  if [ ! -x "$VB_PY" ] || ! "$VB_PY" -c 'import sys' >/dev/null 2>&1; then
    vb_create_venv
  fi
  want="$(vb_install_hash)"
  have="$(cat "$VB_STAMP" 2>/dev/null || true)"
  if [ "$want" = "$have" ] && [ "${VB_FORCE_INSTALL:-0}" != "1" ]; then
    vb_log "venv up to date ($VB_VENV)"
    return 0
  fi
  vb_log "installing pinned dependencies and local dists into $VB_VENV"
  # pesq (bench) ships only an sdist: building it needs a C compiler and Python's headers.
  command -v cc >/dev/null 2>&1 || vb_apt_install gcc libc6-dev || vb_log "no C compiler: pesq may fail to build"
  if ! "$VB_PY" -c 'import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)'; then
    vb_apt_install python3-dev || vb_log "no Python headers: pesq may fail to build"
  fi
  local dist args=()
  for dist in "${VB_LOCAL_DISTS[@]}"; do
    args+=(-e "$dist")
  done
  (
    cd "$VB_ROOT" || exit 1
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off \
      "$VB_PY" -m pip install -q -c requirements/constraints.txt -r requirements/dev.txt "${args[@]}"
  ) || vb_die "pip install failed"
  echo "$want" >"$VB_STAMP"
  vb_log "venv ready in $(($(date +%s) - started))s"
}

# checkov in its own venv (.venv-checkov): its pins clash with requirements/constraints.txt
# (requirements/checkov.txt says which). Reinstalled only when that file changes.
VB_CHECKOV_VENV="${VB_CHECKOV_VENV:-$VB_ROOT/.venv-checkov}"
vb_bootstrap_checkov_venv() {
  local py want stamp="$VB_CHECKOV_VENV/.voicebridge-install-stamp"
  want="$(sha256sum "$VB_ROOT/requirements/checkov.txt" | cut -d' ' -f1)"
  if [ -x "$VB_CHECKOV_VENV/bin/checkov" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    vb_log "checkov venv up to date ($VB_CHECKOV_VENV)"
    return 0
  fi
  py="$(vb_pick_python)" || vb_die "no Python 3.11-3.13 for the checkov venv"
  vb_log "installing checkov (pinned, requirements/checkov.txt) into $VB_CHECKOV_VENV"
  "$py" -m venv "$VB_CHECKOV_VENV" || return 1
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off \
    "$VB_CHECKOV_VENV/bin/python" -m pip install -q -r "$VB_ROOT/requirements/checkov.txt" || return 1
  echo "$want" >"$stamp"
}
