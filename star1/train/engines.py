"""The two ways a worker updates the model: plain data parallel (DDP) for small runs and DeepSpeed ZeRO-3
(optionally with the optimizer offloaded to host memory) for large ones. Both take the same micro-batch loss,
step on the same schedule, save/load a resumable checkpoint and hand back a full state dict for export.

Gradients are averaged over workers by both (DDP and ZeRO), so each micro-batch loss is scaled by the world
size: with the per-token weights of `collate`, the sum over all workers and micro-batches is the mean loss.
"""

from __future__ import annotations

import contextlib
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from star1.train.spec import WorkerSpec

DS_TAG = "ds"


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: none on biases and norm weights (paper: bias, LayerNorm.weight)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        ndim = len(getattr(p, "ds_shape", p.shape))
        (decay if ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def schedule(optimizer: torch.optim.Optimizer, kind: str, warmup: int, total: int) -> Any:
    """transformers' schedules, as the paper's loop uses (`get_cosine_schedule_with_warmup`)."""
    from transformers import (
        get_constant_schedule_with_warmup,
        get_cosine_schedule_with_warmup,
        get_linear_schedule_with_warmup,
    )

    if kind == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)
    make = get_cosine_schedule_with_warmup if kind == "cosine" else get_linear_schedule_with_warmup
    return make(optimizer, warmup, total)


def count_params(model: torch.nn.Module) -> int:
    seen, n = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            n += int(getattr(p, "ds_numel", p.numel()))
    return n


def shipped_ds_config(strategy: str) -> dict[str, Any]:
    text = resources.files("star1.train").joinpath("deepspeed", f"{strategy}.json").read_text()
    return json.loads(text)


def fill_ds_config(cfg: dict[str, Any], spec: WorkerSpec, hidden_size: int, on_gpu: bool) -> dict[str, Any]:
    """Replace every "auto" with the run's value (as the HF Trainer integration does)."""
    r, g = spec.recipe, spec.geometry
    values = {
        "train_batch_size": g["effective_batch"],
        "train_micro_batch_size_per_gpu": g["per_device_batch"],
        "gradient_accumulation_steps": g["grad_accum"],
        "gradient_clipping": r["max_grad_norm"] or 0.0,
        "lr": r["lr"],
        "betas": list(r["betas"]),
        "eps": r["eps"],
        "weight_decay": r["weight_decay"],
        "torch_adam": not on_gpu,  # FusedAdam is a CUDA kernel
        "reduce_bucket_size": hidden_size * hidden_size,
        "stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
        "stage3_param_persistence_threshold": 10 * hidden_size,
    }

    def fill(node: Any, key: str | None = None) -> Any:
        if isinstance(node, dict):
            out = {k: fill(v, k) for k, v in node.items()}
            if key == "bf16" and out.get("enabled") == "auto":
                out["enabled"] = spec.precision == "bf16"
            return out
        if node == "auto" and key in values:
            return values[key]
        return node

    filled = fill(cfg)
    leftover = [k for k, v in _walk(filled) if v == "auto"]
    if leftover:
        raise ValueError(f"DeepSpeed config: no value for 'auto' in {leftover}")
    return filled


def _walk(node: Any, key: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [kv for k, v in node.items() for kv in _walk(v, f"{key}.{k}".strip("."))]
    return [(key, node)]


class DDPEngine:
    """torch DDP (through Ray Train's `prepare_model`), AdamW, the schedule, optional clipping."""

    def __init__(self, model: torch.nn.Module, spec: WorkerSpec, world: int, device: torch.device) -> None:
        import ray.train.torch

        r, g = spec.recipe, spec.geometry
        self.world, self.device, self.clip = world, device, r["max_grad_norm"]
        self.zero_stage = 0
        self.params = count_params(model)
        self.optimizer = torch.optim.AdamW(
            param_groups(model, r["weight_decay"]), lr=r["lr"], betas=tuple(r["betas"]), eps=r["eps"]
        )
        self.scheduler = schedule(self.optimizer, r["schedule"], g["warmup_steps"], g["total_steps"])
        self.model = ray.train.torch.prepare_model(model)
        self.module = getattr(self.model, "module", self.model)
        bf16 = spec.precision == "bf16"
        self.autocast = (
            (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
        )

    def backward(self, loss_of: Any, last: bool) -> float:
        sync = contextlib.nullcontext() if last or self.world == 1 else self.model.no_sync()
        with sync:
            with self.autocast():
                loss = loss_of(self.model)
            (loss * self.world).backward()
        return float(loss.detach())

    def step(self) -> float:
        params = [p for p in self.module.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, self.clip or math.inf)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    @property
    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def save(self, folder: Path, rank: int) -> bool:
        """Write this worker's part of a checkpoint; False when it has none (DDP: only rank 0 writes)."""
        if rank != 0:
            return False
        torch.save(self.module.state_dict(), folder / "model.pt")
        torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), folder / "scheduler.pt")
        return True

    def load(self, folder: Path) -> None:
        self.module.load_state_dict(
            torch.load(folder / "model.pt", map_location=self.device, weights_only=True)
        )
        self.optimizer.load_state_dict(
            torch.load(folder / "optimizer.pt", map_location=self.device, weights_only=True)
        )
        self.scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        return self.module.state_dict()


class DeepSpeedEngine:
    """DeepSpeed ZeRO-3 (`zero3.json` / `zero3_offload.json`, or the run's own config)."""

    def __init__(
        self, model: torch.nn.Module, spec: WorkerSpec, ds_config: dict[str, Any], world: int
    ) -> None:
        import deepspeed

        r, g = spec.recipe, spec.geometry
        self.world = world
        self.params = count_params(model)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model,
            model_parameters=param_groups(model, r["weight_decay"]),
            config=ds_config,
            lr_scheduler=lambda opt: schedule(opt, r["schedule"], g["warmup_steps"], g["total_steps"]),
        )
        self.model = self.engine
        self.module = self.engine.module
        self.zero_stage = int(self.engine.zero_optimization_stage())

    def backward(self, loss_of: Any, last: bool) -> float:
        self.engine.set_gradient_accumulation_boundary(last)
        loss = loss_of(self.engine)
        self.engine.backward(loss * self.world, scale_wrt_gas=False)
        return float(loss.detach())

    def step(self) -> float:
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    @property
    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def save(self, folder: Path, rank: int) -> bool:
        """Every worker writes its ZeRO shard (a collective)."""
        self.engine.save_checkpoint(str(folder), tag=DS_TAG)
        return True

    def load(self, folder: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(folder), tag=DS_TAG)
        if path is None:
            raise RuntimeError(f"DeepSpeed found no checkpoint '{DS_TAG}' in {folder}")

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        """The whole model gathered onto rank 0 (a collective; None on other ranks), in 16 bit."""
        return self.engine._zero3_consolidated_16bit_state_dict() or None


def make_engine(
    model: torch.nn.Module,
    spec: WorkerSpec,
    world: int,
    device: torch.device,
    ds_config: dict[str, Any] | None,
) -> DDPEngine | DeepSpeedEngine:
    if spec.strategy == "ddp":
        return DDPEngine(model, spec, world, device)
    assert ds_config is not None
    return DeepSpeedEngine(model, spec, ds_config, world)


def ds_config_for(spec: WorkerSpec, hidden: int, on_gpu: bool) -> dict[str, Any]:
    """The run's DeepSpeed config (its own file, else the shipped one for its strategy), filled in."""
    base = spec.ds_config if spec.ds_config is not None else shipped_ds_config(spec.strategy)
    return fill_ds_config(base, spec, hidden, on_gpu)
