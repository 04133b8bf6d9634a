#!/usr/bin/env bash
# Create the optional virtualenvs for the yadage/REANA export tests (yadage's schemas pin jsonschema<=4.9.1,
# which conflicts with pyhf and kubernetes-validate in the main venv, so each tool gets its own venv).
#   scripts/setup-yadage-env.sh            -> .venv-yadage (yadage 0.21.2) and .venv-reana (reana-client 0.9.6)
#   scripts/setup-yadage-env.sh yadage     -> only .venv-yadage
# Idempotent: a venv whose stamp exists is kept. Takes ~10 s (yadage) and ~40 s (reana-client).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
want="${1:-all}"

make_venv() {  # name, packages...
  local dir="$1"; shift
  if [ -f "$dir/.installed" ]; then return; fi
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check "$@"
  touch "$dir/.installed"
}

if [ "$want" = all ] || [ "$want" = yadage ]; then
  make_venv .venv-yadage 'yadage==0.21.2' 'jsonschema<=4.9.1'
fi
if [ "$want" = all ] || [ "$want" = reana ]; then
  make_venv .venv-reana 'reana-client==0.9.6'
fi
