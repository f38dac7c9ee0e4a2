#!/usr/bin/env bash
# Create (idempotently) .venv-mergekit: a separate virtualenv holding the real mergekit, the reference
# that tests/parity/test_parity.py compares evomerge against, tensor by tensor.
#
#   bash tests/parity/setup_mergekit.sh          # create or reuse
#   FORCE=1 bash tests/parity/setup_mergekit.sh  # rebuild from scratch
#
# It runs offline apart from PyPI (mergekit and its dependencies); torch is pinned through
# tests/parity/constraints.txt to the CPU wheel the main venv uses.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${MERGEKIT_VENV:-$ROOT/.venv-mergekit}"
PYTHON="${PYTHON:-python3}"
MERGEKIT_VERSION="0.1.5"
CONSTRAINTS="$ROOT/tests/parity/constraints.txt"
STAMP="$VENV/.parity-stamp"

want_stamp() {
    # Changes whenever the pinned versions or this script change, so a stale venv is rebuilt.
    cat "$CONSTRAINTS" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1
    echo "mergekit==$MERGEKIT_VERSION"
}

if [[ -z "${FORCE:-}" && -f "$STAMP" && "$(cat "$STAMP")" == "$(want_stamp)" ]] \
    && "$VENV/bin/python" -c "import mergekit.merge" 2>/dev/null; then
    echo "setup_mergekit: $VENV is up to date (mergekit $MERGEKIT_VERSION)"
    exit 0
fi

start=$(date +%s)
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c "$CONSTRAINTS" "mergekit==$MERGEKIT_VERSION"

# Sanity: the pinned CPU torch, mergekit importable, and its CLI present.
HF_HUB_OFFLINE=1 "$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import torch
import mergekit.merge  # noqa: F401
assert md.version("mergekit") == "0.1.5", md.version("mergekit")
assert torch.__version__.startswith("2.13.0"), torch.__version__
print(f"setup_mergekit: mergekit {md.version('mergekit')}, torch {torch.__version__}, "
      f"transformers {md.version('transformers')}, numpy {md.version('numpy')}")
PY
test -x "$VENV/bin/mergekit-yaml"
want_stamp > "$STAMP"
echo "setup_mergekit: installed into $VENV in $(( $(date +%s) - start )) s"
