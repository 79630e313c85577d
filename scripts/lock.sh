#!/usr/bin/env bash
# Regenerate the images' hash-locked requirements from pyproject.toml and constraints.txt (`make lock`):
#   requirements/cpu.lock.txt           target cpu: star1's dependencies + Ray, CPU torch (PyTorch's CPU index)
#   requirements/gpu.lock.txt           target gpu: the same + the gpu extra (vLLM) + DeepSpeed's build tools,
#                                       CUDA torch from PyPI; everything but DeepSpeed itself
#   requirements/gpu-deepspeed.lock.txt target gpu: DeepSpeed alone (built after torch is installed)
# The Dockerfile installs them with `pip install --require-hashes`. Resolved by uv for the images' Python
# (3.11, linux x86_64, manylinux_2_28), whatever machine runs this.
#
# Needs uv (UV=/path/to/uv, or on PATH: `pip install uv` into any venv) and PyPI. The PyTorch CPU index
# (TORCH_CPU_INDEX) must be reachable for cpu.lock.txt; where it is not, TORCH_CPU_WHEELS=DIR takes the CPU
# torch wheel from a local folder instead (the file's own hash is recorded: it must be PyTorch's wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-uv}
PYPI=${PYPI_INDEX:-https://pypi.org/simple}
TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
PY=${LOCK_PYTHON:-python3}
only=${1:-all}  # all | cpu | gpu

command -v "$UV" >/dev/null 2>&1 || {
  echo "lock: uv not found; install it (python3 -m venv /tmp/uvenv && /tmp/uvenv/bin/pip install uv) and" \
    "run UV=/tmp/uvenv/bin/uv make lock" >&2
  exit 1
}
pin() { sed -n "s/^$1==\([^ #]*\).*/\1/p" constraints.txt; }
RAY=$(pin ray) TORCH=$(pin torch) VLLM=$(pin vllm) DEEPSPEED=$(pin deepspeed)
for v in RAY TORCH VLLM DEEPSPEED; do
  [ -n "${!v}" ] || { echo "lock: constraints.txt has no ${v,,}== pin" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap '[ -n "${LOCK_KEEP_TMP:-}" ] || rm -rf "$tmp"' EXIT
# pyproject's [project.dependencies] (+ the named extras), one per line
deps() {
  "$PY" - "$@" <<'EOF'
import sys, tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(p["dependencies"] + [d for e in sys.argv[1:] for d in p["optional-dependencies"][e]]))
EOF
}

compile() {  # compile OUT IN [uv args...]
  local out=$1 in=$2
  shift 2
  "$UV" pip compile --no-config --quiet --generate-hashes --python-version 3.11 \
    --python-platform x86_64-manylinux_2_28 --constraint constraints.txt \
    --custom-compile-command "make lock" --output-file "$out" "$@" "$in"
  sed -i "s#$tmp/##" "$out"  # `# via -r cpu.in`, not a temporary path
}

mkdir -p requirements
if [ "$only" = all ] || [ "$only" = cpu ]; then
  { deps; echo "ray[default,train]==$RAY"; echo "torch==$TORCH+cpu"; } > "$tmp/cpu.in"
  if [ -n "${TORCH_CPU_WHEELS:-}" ]; then
    torch_src=(--index-url "$PYPI" --find-links "$TORCH_CPU_WHEELS")
  else
    torch_src=(--index-url "$TORCH_CPU_INDEX" --extra-index-url "$PYPI" --index-strategy unsafe-best-match)
  fi
  DS_BUILD_OPS=0 compile requirements/cpu.lock.txt "$tmp/cpu.in" "${torch_src[@]}"
  echo "lock: requirements/cpu.lock.txt"
fi
if [ "$only" = all ] || [ "$only" = gpu ]; then
  { deps gpu; echo "ray[default,train]==$RAY"; echo "vllm==$VLLM"; printf '%s\n' ninja setuptools wheel; } \
    > "$tmp/gpu.in"
  DS_BUILD_OPS=0 compile "$tmp/gpu-all.lock.txt" "$tmp/gpu.in" --index-url "$PYPI"
  # DeepSpeed is built against the installed torch, so it goes in a second install: split its entry off.
  "$PY" - "$tmp/gpu-all.lock.txt" <<'EOF'
import sys
lines = open(sys.argv[1]).read().splitlines()
n = next(i for i, x in enumerate(lines) if x and not x.startswith("#"))
head, blocks = lines[:n], []
for x in lines[n:]:  # an entry: `name==version \` at column 0, then its indented hashes and `# via` notes
    if x and not x[0].isspace():
        blocks.append([])
    blocks[-1].append(x)
ds = [b for b in blocks if b[0].lower().startswith("deepspeed==")]
if len(ds) != 1:
    sys.exit("lock: expected one deepspeed entry in the GPU lock")
note = "# The GPU image installs this after gpu.lock.txt: DeepSpeed's ops compile against the installed torch."
with open("requirements/gpu.lock.txt", "w") as f:
    f.write("\n".join(head + [x for b in blocks if b is not ds[0] for x in b]) + "\n")
with open("requirements/gpu-deepspeed.lock.txt", "w") as f:
    f.write("\n".join([*head, note, *ds[0]]) + "\n")
EOF
  echo "lock: requirements/gpu.lock.txt requirements/gpu-deepspeed.lock.txt"
fi
