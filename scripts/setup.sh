#!/usr/bin/env bash
# Idempotent setup: a virtualenv in .venv with star1 and what its tests need, CPU-only torch.
# Re-running is a no-op unless pyproject.toml / constraints.txt changed. Extras: STAR1_EXTRAS (default "dev").
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${STAR1_VENV:-.venv}
EXTRAS=${STAR1_EXTRAS:-dev}
PY=${PYTHON:-python3}
stamp="$VENV/.star1-setup"
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)-$EXTRAS
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
# DS_BUILD_OPS=0: DeepSpeed compiles its ops lazily (JIT) instead of at install time.
DS_BUILD_OPS=0 "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[$EXTRAS]"
echo "$want" > "$stamp"
echo "setup: $VENV ready ($("$VENV/bin/python" -c 'import star1; print("star1", star1.__version__)'))"
