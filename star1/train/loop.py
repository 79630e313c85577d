"""The training loop every Ray Train worker runs (`train_loop_per_worker`), short enough to read at once:
load the tokenized set and the model, resume from the last reported checkpoint if there is one, then per
optimizer step run this worker's micro-batches of the plan, step, log, and checkpoint through
`ray.train.report`; finally export the model in Hugging Face format into the store.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from star1.store import Store
from star1.train.batching import Geometry, global_batch, step_plan
from star1.train.checkpoints import STATE_FILE
from star1.train.collate import Samples, collate, step_weights, token_losses
from star1.train.engines import ds_config_for, make_engine
from star1.train.spec import WorkerSpec
from star1.train.throughput import device_peak, mfu


def attention(spec: WorkerSpec, device: torch.device) -> str:
    """`auto`: FlashAttention-2 on GPU when installed (varlen kernels for packed rows), else sdpa."""
    if spec.attn_implementation != "auto":
        return spec.attn_implementation
    if device.type == "cuda":
        import importlib.util

        return "flash_attention_2" if importlib.util.find_spec("flash_attn") else "sdpa"
    return "sdpa"


def _load_model(
    spec: WorkerSpec, model_dir: Path, device: torch.device, ds_config: dict | None, attn: str
) -> Any:
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if spec.precision == "bf16" and ds_config is not None else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation=attn)
    model.config.use_cache = False
    if spec.recipe["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def _checkpoint(engine: Any, spec: WorkerSpec, rank: int, step: int, history: list, metrics: dict) -> None:
    """Write this worker's part of the checkpoint of `step` and report it (every worker reports)."""
    import ray.train

    folder = Path(tempfile.mkdtemp(prefix=f"star1-ckpt-{step:06d}-"))
    has_part = engine.save(folder, rank)
    if rank == 0:
        shape = {"strategy": spec.strategy, "zero_stage": engine.zero_stage, "world": engine.world}
        state = {"step": step, "fingerprint": spec.fingerprint, "shape": shape, "history": history}
        (folder / STATE_FILE).write_text(json.dumps(state))
        has_part = True
    ckpt = ray.train.Checkpoint.from_directory(str(folder)) if has_part else None
    mode = ray.train.CheckpointUploadMode.ASYNC if spec.checkpoint_upload == "async" else None
    kwargs = {"checkpoint_upload_mode": mode} if mode else {}
    ray.train.report(
        metrics,
        checkpoint=ckpt,
        checkpoint_dir_name=f"checkpoint_{step:06d}",
        delete_local_checkpoint_after_upload=True,
        **kwargs,
    )
    if mode is None:
        shutil.rmtree(folder, ignore_errors=True)
    if rank == 0 and spec.progress is not None:
        spec.progress.checkpointed.remote(step)


def _resume(engine: Any, spec: WorkerSpec) -> tuple[int, list[dict[str, Any]]]:
    """(first step to run, metric history) from the last reported checkpoint, or (0, [])."""
    import ray.train

    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return 0, []
    with ckpt.as_directory() as d:
        state = json.loads((Path(d) / STATE_FILE).read_text())
        if state["fingerprint"] != spec.fingerprint:
            raise RuntimeError("checkpoint belongs to a different training config; refusing to resume")
        engine.load(Path(d))
    return int(state["step"]), list(state["history"])


def train_worker(config: dict[str, Any]) -> None:
    """`train_loop_per_worker` of the TorchTrainer; `config = {"spec": WorkerSpec}`."""
    import ray.train
    import ray.train.torch
    import torch.distributed as dist

    spec: WorkerSpec = config["spec"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    r, g = spec.recipe, spec.geometry
    torch.manual_seed(r["seed"])

    store = Store.from_uri(spec.store["uri"], spec.store.get("endpoint_url"), spec.store.get("region"))
    samples = Samples.from_table(store.read_table(spec.tokens_path))
    lengths = samples.lengths

    from transformers import AutoConfig, AutoTokenizer

    from star1.train.models import resolve_model

    model_dir = resolve_model(spec.model, spec.store.get("endpoint_url"), spec.store.get("region"))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ds_config = None
    if spec.strategy != "ddp":
        import deepspeed

        deepspeed.init_distributed(dist_backend="nccl" if device.type == "cuda" else "gloo")
        hidden = int(getattr(AutoConfig.from_pretrained(model_dir), "hidden_size", 1024))
        ds_config = ds_config_for(spec, hidden, device.type == "cuda")
        from transformers.integrations import HfDeepSpeedConfig

        _keep = HfDeepSpeedConfig(ds_config)  # alive while loading: ZeRO-3 partitions the model at load
    attn = attention(spec, device)
    flatten = attn.startswith("flash_attention")  # one varlen row per micro-batch
    model = _load_model(spec, model_dir, device, ds_config, attn)
    engine = make_engine(model, spec, world, device, ds_config)
    peak, peak_source = device_peak(device, spec.peak_tflops)

    start, history = _resume(engine, spec)
    if spec.progress is not None:
        spec.progress.started.remote(rank, os.getpid(), socket.gethostname(), start)
        if rank == 0 and history:
            spec.progress.restored.remote(history)
    if start:
        history.append({"event": "resumed", "step": start, "world": world})
    total, every, geom = g["total_steps"], spec.checkpoint_every, Geometry(**g)
    for step in range(start, total):
        t0 = time.perf_counter()
        batch = global_batch(step, geom, r["seed"])
        weights = step_weights(batch, samples, r["loss_average"])
        micro = step_plan(batch, lengths, world, g["per_device_batch"], r["packing"], spec.max_length)[rank]
        loss_sum, real, slots = 0.0, 0, 0
        for k, mb in enumerate(micro):
            b = collate(mb, samples, weights, pad_id, flatten).to(device)
            loss_sum += engine.backward(
                lambda m, b=b: (token_losses(m, b) * b.weights).sum(), k == len(micro) - 1
            )
            real += b.real_tokens
            slots += b.input_ids.numel()
        lr = engine.lr  # the rate this step uses
        grad_norm = engine.step()
        totals = torch.tensor([loss_sum, float(real), float(slots)], dtype=torch.float64, device=device)
        if world > 1:
            dist.all_reduce(totals)
        dt = time.perf_counter() - t0
        done = step + 1
        tps = float(totals[1]) / world / dt
        metrics = {
            "step": done,
            "epoch": geom.epoch_of(step) + 1,  # the epoch its first sample belongs to
            "loss": float(totals[0]),
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens": int(totals[1]),
            "real_token_fraction": float(totals[1] / totals[2]),  # real tokens ÷ tensor slots (padding)
            "step_time_s": dt,
            "tokens_per_s_per_worker": tps,
            "mfu": mfu(engine.params, tps, peak),
            "micro_batches": len(micro),
        }
        history.append(metrics)
        if rank == 0 and spec.progress is not None:
            spec.progress.update.remote(metrics)
        if done == total or (geom.ends_epoch(step) if every is None else done % every == 0):
            _checkpoint(engine, spec, rank, done, history, metrics)
        elif done % spec.log_every == 0:
            ray.train.report(metrics)

    state_dict = engine.full_state_dict()  # a collective under ZeRO-3
    if rank == 0:
        from star1.train.export import export_model

        assert state_dict is not None
        files = export_model(
            engine.module,
            state_dict,
            tokenizer,
            spec.chat_template,
            spec.export_dtype,
            store,
            spec.export_path,
        )
        summary = {
            "params": engine.params,
            "peak_tflops": peak,
            "peak_source": peak_source,
            "device": str(device),
            "world": world,
            "files": files,
            "history": history,
        }
        store.write_json(spec.metrics_path, summary)
    if world > 1:
        dist.barrier()
