#!/usr/bin/env bash
# Creates .venv with the pinned dependencies and puts every src/ directory of the monorepo on its path.
# Idempotent: reinstalls only when requirements.lock changed.
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
STAMP=.venv/.installed
if [[ ! -x .venv/bin/python ]]; then
  echo "==> creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
# pip warns about every local index directory that lacks a package: noise, not news.
quiet_pip() { .venv/bin/python -m pip "$@" 2> >(grep -v "^WARNING: Location" >&2); }
if [[ ! -f $STAMP ]] || ! cmp -s requirements.lock "$STAMP"; then
  echo "==> installing pinned dependencies (requirements.lock)"
  quiet_pip install -q --disable-pip-version-check pip==26.3
  # torch first, from the local CPU wheel: letting a resolver pick torch would pull a multi-GB CUDA build.
  quiet_pip install -q --disable-pip-version-check "$(grep '^torch==' requirements.lock)"
  quiet_pip install -q --disable-pip-version-check -r requirements.lock
  cp requirements.lock "$STAMP"
fi
SITE="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
{
  echo "$PWD/libs/common/src"
  for d in services/*/src; do echo "$PWD/$d"; done
  echo "$PWD/tools"
} > "$SITE/pdfchat-monorepo.pth"
