# syntax=docker/dockerfile:1.7@sha256:a57df69d0ea827fb7266491f2813635de6f17269be881f696fbfdf2d83dda33e
# star1 images: one Dockerfile, two targets, both run as uid 1000 (non-root). Both install their dependencies
# from hash-locked files (requirements/*.lock.txt, `pip install --require-hashes`) generated from
# constraints.txt — the file scripts/setup.sh installs from — so the cluster's Ray is the client's Ray.
# Regenerate the locks with `make lock` (scripts/lock.sh) whenever pyproject.toml or constraints.txt changes.
#
#   docker build --target gpu -t ghcr.io/star1-project/star1:0.1.0 .      # every job; GPU pools (default)
#   docker build --target cpu -t ghcr.io/star1-project/star1:0.1.0-cpu .  # API-bound stages, job heads, nightly
#
# gpu: CUDA 13.0 (base image + the CUDA wheels torch 2.13.0 pins), torch, Ray, vLLM, DeepSpeed with its ops
#      compiled in the build stage, and the toolchain vLLM's own runtime image keeps for the kernels that
#      compile at first use (Triton's launchers, FlashInfer, DeepGEMM): gcc/g++, nvcc, the CUDA runtime,
#      NVRTC, cuBLAS and NCCL headers, Python's headers. CUDA 13 needs an R580 or newer NVIDIA driver on the
#      GPU nodes (the base image's NVIDIA_REQUIRE_CUDA refuses to start on older ones).
# cpu: CPU torch, Ray, star1; no CUDA, no vLLM, no compiler.
# Layers: constraints + lock files, then the dependency install, then the project (pyproject, README, the
# chart, the code): editing code, docs or the chart reinstalls star1 alone (`--no-deps`), never the gigabytes.
# RAY_VERSION must equal the `ray==` pin in constraints.txt (checked by tests/test_dockerfile.py; pip also
# refuses to build when they disagree).
#
# Base images are pinned by digest (the multi-architecture index, as `docker buildx imagetools inspect
# IMAGE:TAG` prints it); a tag bump needs the new digest too (docs/kubernetes.md, "The images").

ARG PYTHON_VERSION=3.11.14
ARG RAY_VERSION=2.60.0
ARG VLLM_VERSION=0.32.0
ARG DEEPSPEED_VERSION=0.19.8
ARG CUDA_VERSION=13.0.2
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.0@sha256:cdc6093146eb3ff6a40107b38f008b789e050e77ad87865e381d9917da55a168
ARG CUDA_DEVEL_IMAGE=nvidia/cuda:13.0.2-devel-ubuntu24.04@sha256:5dc1bca23d05bd37b011be68ec470c03b403a5da07ec3a86e41af9470e9d0cc6
ARG CUDA_BASE_IMAGE=nvidia/cuda:13.0.2-base-ubuntu24.04@sha256:2ab6381d970b211fb93853796dc6707eb8a72575a375c422b17cf4d8b2641701
# DeepSpeed ops are compiled for these GPU generations (A100, A10/L4, L40S/4090, H100/H200, B200, RTX PRO).
ARG TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0;10.0;12.0"

# ---------------------------------------------------------------------------------------------- cpu
FROM ${PYTHON_IMAGE} AS cpu-build
ARG RAY_VERSION
ENV VIRTUAL_ENV=/opt/star1/venv PATH=/opt/star1/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv $VIRTUAL_ENV
WORKDIR /opt/star1/app
COPY constraints.txt ./
COPY requirements/cpu.lock.txt ./requirements/
# Dependencies in their own layer, from the lock alone (code, README or chart changes do not reinstall them):
# star1's dependencies and ray[default,train]==RAY_VERSION, every file hash-checked. CPU torch (+cpu) from
# PyTorch's CPU index; DS_BUILD_OPS=0: DeepSpeed (a core dependency) installs as pure Python, no compiler.
RUN DS_BUILD_OPS=0 pip install --require-hashes -c constraints.txt \
        --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple \
        -r requirements/cpu.lock.txt \
 && python -c "from importlib.metadata import version as v; assert v('ray') == '${RAY_VERSION}', v('ray')"
# star1 itself: its wheel carries the chart (setup.py maps helm/star1 and helm/examples into star1/deploy/helm).
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY helm/star1 ./helm/star1
COPY helm/examples ./helm/examples
COPY star1 ./star1
COPY jobs ./jobs
RUN pip install --no-deps -c constraints.txt . && python -m star1 version

FROM ${PYTHON_IMAGE} AS cpu
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
FROM ${UV_IMAGE} AS uv

FROM ${CUDA_DEVEL_IMAGE} AS gpu-build
ARG PYTHON_VERSION
ARG RAY_VERSION
ARG VLLM_VERSION
ARG DEEPSPEED_VERSION
ARG TORCH_CUDA_ARCH_LIST
# The full toolkit lives in this stage only: it builds DeepSpeed's CUDA and CPU ops.
RUN apt-get update && apt-get install -y --no-install-recommends build-essential ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=uv /uv /usr/local/bin/uv
# A relocatable CPython (python-build-standalone, headers included) at a fixed path, copied as-is into the
# runtime stage. Same PYTHON_VERSION as the cpu image: a Ray head on that image drives these workers.
ENV UV_PYTHON_INSTALL_DIR=/opt/python VIRTUAL_ENV=/opt/star1/venv PATH=/opt/star1/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN uv python install ${PYTHON_VERSION} \
 && "$(uv python find ${PYTHON_VERSION})" -m venv $VIRTUAL_ENV
WORKDIR /opt/star1/app
COPY constraints.txt ./
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
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY helm/star1 ./helm/star1
COPY helm/examples ./helm/examples
COPY star1 ./star1
COPY jobs ./jobs
RUN pip install --no-deps -c constraints.txt . && python -m star1 version

# Why not FROM vllm/vllm-openai:v0.32.0: that image is Python 3.12 (star1's locks and the cpu image are
# 3.11, and a Ray head and its workers must run the same Python), runs as root, and carries its own torch and
# vLLM in /opt/venv, so star1's hash-locked environment would sit beside a second copy of torch + CUDA wheels
# (~20 GB before star1; vLLM PR #29270 measured 19.7 GB). Instead this stage does what vLLM's runtime stage
# does since that PR: the CUDA *base* image plus only the JIT toolchain (a few GB less than `-devel`, whose
# full toolkit stays in gpu-build).
FROM ${CUDA_BASE_IMAGE} AS gpu
ARG CUDA_VERSION
# JIT toolchain, from NVIDIA's apt repository the base image already trusts, pinned to its CUDA major.minor
# (13-0): gcc/g++ (Triton compiles a C launcher per kernel; nvcc's host compiler), cuda-nvcc, the CUDA
# runtime + CCCL headers, NVRTC (DeepGEMM/FlashInfer compile through it), cuBLAS (headers and the
# unversioned libcublas.so/libcublasLt.so that FlashInfer links against), NCCL headers (nccl.h; the NCCL
# torch loads is its own nvidia-nccl wheel). Python.h comes with the relocatable CPython copied below.
# Ubuntu images ship a user `ubuntu` with uid 1000; star1 takes that uid.
RUN CUDA_MM=$(echo "${CUDA_VERSION}" | cut -d. -f1,2 | tr . -) \
 && apt-get update && apt-get install -y --no-install-recommends bubblewrap gcc g++ libc6-dev \
        cuda-nvcc-${CUDA_MM} cuda-cudart-dev-${CUDA_MM} cuda-cccl-${CUDA_MM} cuda-nvrtc-dev-${CUDA_MM} \
        libcublas-dev-${CUDA_MM} libnccl-dev \
 && rm -rf /var/lib/apt/lists/* \
 && (userdel --remove ubuntu 2>/dev/null || true) \
 && groupadd --gid 1000 star1 && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash star1
COPY --from=gpu-build /opt/python /opt/python
COPY --from=gpu-build /opt/star1 /opt/star1
# One writable cache folder for every JIT cache (Triton, DeepGEMM; FlashInfer, vLLM and torch extensions
# already use ~/.cache): mount it as a volume where the root filesystem is read-only.
ENV PATH=/opt/star1/venv/bin:/usr/local/cuda/bin:$PATH VIRTUAL_ENV=/opt/star1/venv CUDA_HOME=/usr/local/cuda \
    PYTHONUNBUFFERED=1 HF_HUB_DISABLE_TELEMETRY=1 XDG_CACHE_HOME=/home/star1/.cache \
    TRITON_CACHE_DIR=/home/star1/.cache/triton DG_JIT_CACHE_DIR=/home/star1/.cache/deep_gemm \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
# The toolchain works without a GPU: compile what the JIT paths include (a C file against Python.h, a CUDA
# file against the runtime, NVRTC, cuBLAS and NCCL headers) so a missing piece fails the build, not a pod.
RUN printf '#include <Python.h>\nint main(void){return Py_IsInitialized();}\n' > /tmp/py.c \
 && gcc -c /tmp/py.c -o /tmp/py.o -I"$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
 && printf '#include <cuda_runtime.h>\n#include <nvrtc.h>\n#include <cublas_v2.h>\n#include <nccl.h>\n__global__ void k(float *x){x[threadIdx.x] += 1.f;}\n' > /tmp/k.cu \
 && nvcc -c /tmp/k.cu -o /tmp/k.o \
 && rm -f /tmp/py.c /tmp/py.o /tmp/k.cu /tmp/k.o && python -m star1 version
WORKDIR /opt/star1/app
USER 1000:1000
CMD ["star1", "--help"]
