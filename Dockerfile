# One image for every star1 job (Ray + vLLM + DeepSpeed), run as a non-root user.
# Build: docker build -t star1:0.1.0 .   (GPU nodes: the CUDA wheels of torch/vLLM come with the `gpu` extra)
FROM rayproject/ray:2.60.0-py311-cu128

USER root
RUN apt-get update && apt-get install -y --no-install-recommends build-essential git \
    && rm -rf /var/lib/apt/lists/*
USER ray
WORKDIR /home/ray/star1

COPY --chown=ray:users pyproject.toml README.md constraints.txt ./
COPY --chown=ray:users star1 ./star1
COPY --chown=ray:users jobs ./jobs
# CUDA build of torch and vLLM for GPU pools; DeepSpeed ops are JIT-compiled on first use.
RUN DS_BUILD_OPS=0 pip install --no-cache-dir -e ".[gpu]"

ENV HF_HUB_DISABLE_TELEMETRY=1 \
    PYTHONUNBUFFERED=1
ENTRYPOINT []
CMD ["star1", "--help"]
