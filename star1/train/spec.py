"""What the driver hands every worker: everything resolved (paths, geometry, template, DeepSpeed config), so
a worker decides nothing the driver has not validated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WorkerSpec:
    run: str
    fingerprint: str  # of the stage run; a checkpoint from another fingerprint is refused
    store: dict[str, str | None]  # uri, endpoint_url, region
    tokens_path: str  # store-relative TOKENS table
    model: str  # HF folder: local path or s3://
    chat_template: str  # the patched template, saved with the exported tokenizer
    recipe: dict[str, Any]  # RecipeConfig values
    geometry: dict[str, Any]  # batching.Geometry values
    strategy: str  # ddp | zero3 | zero3_offload
    ds_config: dict[str, Any] | None  # the run's own DeepSpeed config ("auto" values filled on the worker)
    precision: str  # bf16 | fp32 (resolved)
    attn_implementation: str  # resolved on the worker when "auto"
    max_length: int
    checkpoint_every: int | None  # optimizer steps; None: at each step in which an epoch ends
    checkpoint_upload: str  # sync | async
    log_every: int
    peak_tflops: float | None
    export_path: str  # store-relative folder of the final HF model
    export_dtype: str
    metrics_path: str  # store-relative JSON of the metric history
    progress: Any = None  # ProgressBoard actor handle (or None)
