# syntax=docker/dockerfile:1.7
# star1 images: one Dockerfile, two targets, both run as uid 1000 (non-root). Both install their dependencies
# from hash-locked files (requirements/*.lock.txt, `pip install --require-hashes`) generated from
# constraints.txt — the file scripts/setup.sh installs from — so the cluster's Ray is the client's Ray.
# Regenerate the locks with `make lock` (scripts/lock.sh) whenever pyproject.toml or constraints.txt changes.
#
#   docker build --target gpu -t ghcr.io/star1-project/star1:0.1.0 .      # every job; GPU pools (default)
#   docker build --target cpu -t ghcr.io/star1-project/star1:0.1.0-cpu .  # API-bound stages, nightly creator
#
# gpu: CUDA 13.0 runtime (base image + the CUDA wheels torch 2.13.0 pins), torch, Ray, vLLM, DeepSpeed with its
#      ops compiled in the build stage, so the final image carries no compiler.
# cpu: CPU torch, Ray, star1; no CUDA, no vLLM, no compiler.
# RAY_VERSION must equal the `ray==` pin in constraints.txt (checked by tests/test_dockerfile.py; pip also
# refuses to build when they disagree).

ARG PYTHON_VERSION=3.11.14
ARG RAY_VERSION=2.60.0
ARG VLLM_VERSION=0.32.0
ARG DEEPSPEED_VERSION=0.19.8
ARG UV_VERSION=0.13.9
ARG CUDA_VERSION=13.0.2
ARG UBUNTU=ubuntu24.04
# DeepSpeed ops are compiled for these GPU generations (A100, A10/L4, L40S/4090, H100/H200, B200, RTX PRO).
ARG TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0;10.0;12.0"

# ---------------------------------------------------------------------------------------------- cpu
FROM python:${PYTHON_VERSION}-slim-bookworm AS cpu-build
ARG RAY_VERSION
ENV VIRTUAL_ENV=/opt/star1/venv PATH=/opt/star1/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv $VIRTUAL_ENV
WORKDIR /opt/star1/app
COPY constraints.txt pyproject.toml README.md ./
COPY requirements/cpu.lock.txt ./requirements/
# Dependencies in their own layer (code changes do not reinstall them): star1's dependencies and
# ray[default,train]==RAY_VERSION, every file hash-checked. CPU torch (+cpu) from PyTorch's CPU index;
# DS_BUILD_OPS=0: DeepSpeed (a core dependency) installs as pure Python, no compiler needed.
RUN DS_BUILD_OPS=0 pip install --require-hashes -c constraints.txt \
        --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple \
        -r requirements/cpu.lock.txt \
 && python -c "from importlib.metadata import version as v; assert v('ray') == '${RAY_VERSION}', v('ray')"
COPY star1 ./star1
COPY jobs ./jobs
RUN pip install --no-deps -c constraints.txt . && python -m star1 version

FROM python:${PYTHON_VERSION}-slim-bookworm AS cpu
# bubblewrap: OS isolation for generated code (star1/evals/sandbox); it needs unprivileged user namespaces,
# which many clusters deny to pods: there the chart's sandbox worker group is the boundary instead.
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1000 star1 && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash star1
COPY --from=cpu-build /opt/star1 /opt/star1
ENV PATH=/opt/star1/venv/bin:$PATH VIRTUAL_ENV=/opt/star1/venv \
    PYTHONUNBUFFERED=1 HF_HUB_DISABLE_TELEMETRY=1 XDG_CACHE_HOME=/home/star1/.cache
WORKDIR /opt/star1/app
USER 1000:1000
CMD ["star1", "--help"]

# ---------------------------------------------------------------------------------------------- gpu
FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS gpu-build
ARG PYTHON_VERSION
ARG RAY_VERSION
ARG VLLM_VERSION
ARG DEEPSPEED_VERSION
ARG TORCH_CUDA_ARCH_LIST
# The compiler lives in this stage only: it builds DeepSpeed's CUDA and CPU ops.
RUN apt-get update && apt-get install -y --no-install-recommends build-essential ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=uv /uv /usr/local/bin/uv
# A relocatable CPython (python-build-standalone) at a fixed path, copied as-is into the runtime stage.
ENV UV_PYTHON_INSTALL_DIR=/opt/python VIRTUAL_ENV=/opt/star1/venv PATH=/opt/star1/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN uv python install ${PYTHON_VERSION} \
 && "$(uv python find ${PYTHON_VERSION})" -m venv $VIRTUAL_ENV
WORKDIR /opt/star1/app
COPY constraints.txt pyproject.toml README.md ./
COPY requirements/gpu.lock.txt requirements/gpu-deepspeed.lock.txt ./requirements/
# CUDA torch (13.0 wheels), vLLM, Ray and star1's other dependencies from PyPI, hash-checked; DeepSpeed
# afterwards (its own lock), built against that torch with its fused Adam / CPU Adam / utils ops compiled now
# instead of JIT-compiled on a GPU node.
RUN pip install --require-hashes -c constraints.txt -r requirements/gpu.lock.txt \
 && python -c "from importlib.metadata import version as v; \
assert (v('ray'), v('vllm')) == ('${RAY_VERSION}', '${VLLM_VERSION}'), (v('ray'), v('vllm'))"
RUN DS_BUILD_OPS=0 DS_BUILD_FUSED_ADAM=1 DS_BUILD_CPU_ADAM=1 DS_BUILD_UTILS=1 \
    TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST}" \
    pip install --require-hashes --no-build-isolation -c constraints.txt -r requirements/gpu-deepspeed.lock.txt \
 && python -c "from importlib.metadata import version as v; assert v('deepspeed') == '${DEEPSPEED_VERSION}'"
COPY star1 ./star1
COPY jobs ./jobs
RUN pip install --no-deps -c constraints.txt . && python -m star1 version

FROM nvidia/cuda:${CUDA_VERSION}-base-${UBUNTU} AS gpu
# Ubuntu images ship a user `ubuntu` with uid 1000; star1 takes that uid.
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap && rm -rf /var/lib/apt/lists/* \
 && (userdel --remove ubuntu 2>/dev/null || true) \
 && groupadd --gid 1000 star1 && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash star1
COPY --from=gpu-build /opt/python /opt/python
COPY --from=gpu-build /opt/star1 /opt/star1
ENV PATH=/opt/star1/venv/bin:$PATH VIRTUAL_ENV=/opt/star1/venv \
    PYTHONUNBUFFERED=1 HF_HUB_DISABLE_TELEMETRY=1 XDG_CACHE_HOME=/home/star1/.cache \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /opt/star1/app
USER 1000:1000
CMD ["star1", "--help"]
