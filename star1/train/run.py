"""`star1 train`: validate everything on the driver, then run the Ray Train `TorchTrainer` and record the run.

Before any worker starts: the model folder exists and has a chat template (patched if it strips reasoning),
every record is usable, the samples fill at least one effective batch, the cluster has what the scaling asks
for (GPUs for a GPU preset), the batch divides among the workers, and existing checkpoints under the run's
name come from the same config and fit the workers about to start (a ZeRO checkpoint only its own world
size). Then the tokenized set goes into the store, the trainer runs (resuming from the last checkpoint of a
run with the same name), the model is exported, and the manifest is written last —
`complete`, or `incomplete` with what failed when training could not finish.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from star1.config import LOCAL_MODEL, Star1Config, TrainConfig
from star1.manifest import Manifest, sha256_bytes
from star1.stage_run import IncompleteInput, StageRun
from star1.store import Store
from star1.train.batching import BatchError, Geometry, geometry
from star1.train.checkpoints import (
    CheckpointShape,
    checkpoint_store,
    guard_checkpoints,
    registered_step,
    saved_shape,
    zero_stage,
)
from star1.train.cluster import resolve_scaling, worker_bundles
from star1.train.data import TrainDataError, load_records
from star1.train.encode import EncodeStats, Formatter
from star1.train.errors import TrainFailed, TrainSetupError
from star1.train.layout import RunLayout
from star1.train.models import ModelNotFound, chat_template_of, resolve_model
from star1.train.template import TemplateError, has_think_split, remove_think_clause
from star1.train.tracker import TrainTracker

ALGORITHM = "sft-v1"
LogFn = Callable[[str], None]


@dataclass(frozen=True)
class TrainResult:
    name: str
    skipped: bool
    manifest: Manifest
    store: Store
    layout: RunLayout

    def url(self, key: str = "model") -> str:
        return self.store.url({"model": self.layout.model, "metrics": self.layout.metrics}[key])


@dataclass
class Prepared:
    model_dir: Path
    template: str
    notes: list[str]
    table: pa.Table
    stats: EncodeStats
    inputs: list[dict[str, Any]]


def prepare(cfg: Star1Config, tc: TrainConfig, store: Store, log: LogFn) -> Prepared:
    """Model, template and data, validated and tokenized on the driver."""
    from transformers import AutoTokenizer

    notes: list[str] = []
    # config, tokenizer and chat template only: the workers fetch the weights into their own nodes' caches
    model_dir = resolve_model(tc.model, cfg.store.endpoint_url, cfg.store.region, weights=False)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    template = chat_template_of(tokenizer, tc.format.chat_template, cfg.base_dir)
    if tc.format.patch_think_clause:
        patched = remove_think_clause(template)
        if patched.patched:
            msg = (
                f"chat template: removed {len(patched.removed)} clause(s) that strip reasoning from "
                f"assistant turns ({patched.removed[0]!r}); training text keeps the reasoning (paper §7)"
            )
            log(f"[yellow]warning:[/yellow] {msg}")
            notes.append(msg)
        template = patched.template
        if has_think_split(template):
            notes.append("chat template still splits on </think> (outside assistant turns, checked below)")
    formatter = Formatter(tokenizer, template, tc.format)
    records, inputs = load_records(
        tc.data,
        store,
        cfg.base_dir,
        need_think=tc.format.reasoning == "keep",
        s3=(cfg.store.endpoint_url, cfg.store.region),
    )
    table, stats = formatter.encode(records)
    if stats.samples == 0:
        raise TrainDataError(f"no usable training samples (rejected: {dict(stats.rejected)})")
    if stats.truncated:
        log(f"train: {stats.truncated} of {stats.samples} samples truncated to {tc.format.max_length} tokens")
    return Prepared(model_dir, template, notes, table, stats, inputs)


def params_of(tc: TrainConfig, prep: Prepared, precision: str) -> dict[str, Any]:
    """What decides the result (fingerprinted). Scaling, checkpointing and logging are execution knobs."""
    return {
        "model": tc.model,
        "model_config_sha256": sha256_bytes((prep.model_dir / "config.json").read_bytes()),
        "data": [s.model_dump(exclude_none=True) for s in tc.data],
        "format": tc.format.model_dump(),
        "chat_template_sha256": sha256_bytes(prep.template.encode()),
        "recipe": tc.recipe.model_dump(mode="json"),
        "precision": precision,
        "strategy": tc.strategy,
        "deepspeed_config": tc.deepspeed_config,
        "export_dtype": tc.export_dtype,
    }


def run_train(
    cfg: Star1Config,
    store: Store,
    force: bool = False,
    log: LogFn = print,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Fine-tune as configured in `cfg.train`; skipped when a complete run with this fingerprint exists."""
    tc = cfg.train
    if tc is None:
        raise TrainSetupError("no 'train' section in the config")
    run = tc.run_name or cfg.run_name
    layout = RunLayout(run)
    t0 = time.time()
    try:
        prep = prepare(cfg, tc, store, log)
    except (TrainDataError, ModelNotFound, TemplateError, IncompleteInput, FileNotFoundError) as e:
        raise TrainSetupError(str(e)) from None
    r = tc.recipe
    precision = ("bf16" if tc.scaling.use_gpu else "fp32") if r.precision == "auto" else r.precision
    outputs = [f"{layout.model}/config.json", layout.metrics]
    params = params_of(tc, prep, precision)
    srun = StageRun(store, layout.stage, ALGORITHM, params, prep.inputs, outputs, force)
    if srun.previous is not None:
        log(f"train: run '{run}' up to date")
        return TrainResult(run, True, srun.previous, store, layout)

    import ray

    from star1.ray_utils import init_ray

    where = init_ray(cfg.ray)
    if not cfg.ray.enabled:
        log("train: runs on Ray whatever ray.enabled says (Ray Train)")
    _wait_for_workers(cfg, tc, run, log)
    cluster = ray.cluster_resources()
    workers, per_worker, notes, geom = _scale(tc, prep, cluster)
    ds_config = _own_ds_config(cfg, tc)
    ckpt_root, storage_path, storage_fs = checkpoint_store(cfg, tc, store)
    saved = None if force else saved_shape(ckpt_root, run)  # what a resubmission resumes from
    if saved and saved[1].sharded and tc.scaling.num_workers == "auto" and saved[1].world != workers:
        # `auto` keeps the world size of the ZeRO checkpoint it resumes when the cluster holds it
        workers, per_worker, notes, geom = _scale(tc, prep, cluster, keep=saved[1].world)
    # refused here, before the stored run is invalidated and before any worker starts, when its checkpoints
    # come from another config or (ZeRO: one shard per rank) from another worker count
    shape = CheckpointShape(tc.strategy, zero_stage(tc.strategy, ds_config), workers)
    auto = tc.scaling.num_workers == "auto"
    resumed = guard_checkpoints(ckpt_root, run, srun.fingerprint, force, log, shape, auto)
    if resumed:
        other = saved is not None and saved[1].world not in (None, workers)
        notes.append("resumed from an earlier submission's checkpoint" + (
            f" (written by {saved[1].world} workers, DDP)" if other else ""))  # fmt: skip
    notes = [*prep.notes, *notes]
    tracker = TrainTracker(cfg, tc, run, store, layout)  # the same tracker run as an earlier submission's
    with srun:
        store.write_table(layout.tokens, prep.table)
        spec = _spec(cfg, tc, run, srun.fingerprint, store, layout, prep, geom, precision, ds_config)
        log(
            f"train '{run}': {prep.stats.samples} samples, {geom.total_steps} steps of {geom.effective_batch}"
            f" ({workers} workers × {geom.per_device_batch} × {geom.grad_accum} accumulation), "
            f"{tc.strategy}, {precision}, on {where}"
        )
        counts = {**prep.stats.as_counts(), "steps": geom.total_steps}
        scaling = {"resources_per_worker": per_worker, "use_gpu": tc.scaling.use_gpu,
                   "accelerator_type": tc.scaling.accelerator_type, "strategy": tc.strategy}  # fmt: skip
        usage: dict[str, Any] = {"scaling": {**asdict(geom), **scaling}}
        tracker.log_setup(srun.fingerprint, workers, asdict(geom), precision)
        t_fit = time.time()
        try:
            snap = _fit(
                tc, spec, workers, per_worker, (ckpt_root, run), storage_path, storage_fs, progress, tracker
            )
        except TrainFailed as e:
            failures = {"rows": 0, "by_reason": {"training_failed": 1}, "error": str(e)}
            usage["tracking"] = tracker.finish("incomplete", prep.inputs, None)
            srun.incomplete({}, counts, failures, usage=usage, notes=notes)
            raise
        summary = store.read_json(layout.metrics)
        usage["tracking"] = tracker.finish("complete", prep.inputs, summary["history"])
        timings = {"prepare_s": t_fit - t0, "fit_s": time.time() - t_fit, "total_s": time.time() - t0}
        usage["throughput"] = throughput_summary(summary)
        starts = [e["from_step"] for e in snap["events"] if e.get("event") == "start"]
        counts.update(restarts=max(0, len(starts) - 1), resumed_from=[s for s in starts if s > 0])
        outputs_written = {
            "model": {"uri": store.url(layout.model), "path": layout.model, "files": summary["files"]},
            "metrics": {"uri": store.url(layout.metrics)},
            "tokens": {"uri": store.url(layout.tokens)},
            "checkpoints": {"uri": ckpt_root.url(run)},
        }
        manifest = srun.complete(outputs_written, counts, timings=timings, usage=usage, notes=notes)
    t = usage["throughput"]
    log(
        f"train '{run}': done, loss {t['first_loss']:.4f} → {t['last_loss']:.4f}, "
        f"{t['tokens_per_s_per_worker']:.0f} tokens/s per worker → {store.url(layout.model)}"
    )
    return TrainResult(run, False, manifest, store, layout)


def _scale(
    tc: TrainConfig, prep: Prepared, cluster: dict[str, float], keep: int | None = None
) -> tuple[int, dict[str, float], list[str], Geometry]:
    """(workers, resources per worker, notes, batch geometry) on this cluster; raise when they do not fit."""
    r = tc.recipe
    workers, per_worker, notes = resolve_scaling(tc, cluster, keep)
    try:
        geom = geometry(
            prep.stats.samples, r.effective_batch, workers, r.per_device_batch, r.epochs, r.warmup_ratio,
            r.max_steps,
        )  # fmt: skip
    except BatchError as e:
        raise TrainSetupError(str(e)) from None
    return workers, per_worker, notes, geom


def _wait_for_workers(cfg: Star1Config, tc: TrainConfig, run: str, log: LogFn) -> None:
    """On a running cluster (a RayJob's, whose GPU group starts at zero nodes) wait up to
    `ray.resource_wait_s` for the GPUs / accelerator type the workers ask for; a local cluster cannot grow,
    so there `resolve_scaling` says at once what is missing."""
    from star1.ray_utils import joins_cluster, needs_special_resources, wait_for_resources

    bundles = worker_bundles(tc)
    if joins_cluster(cfg.ray) and needs_special_resources(bundles):
        wait_for_resources(bundles, cfg.ray.resource_wait_s, what=f"train '{run}'", log=log)


def _own_ds_config(cfg: Star1Config, tc: TrainConfig) -> dict[str, Any] | None:
    """The run's own DeepSpeed JSON (train.deepspeed_config), or None for the shipped one."""
    if not tc.deepspeed_config:
        return None
    path = Path(tc.deepspeed_config)
    path = path if path.is_absolute() else Path(cfg.base_dir) / path
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise TrainSetupError(f"train.deepspeed_config {path}: {e}") from None


def _spec(
    cfg: Star1Config,
    tc: TrainConfig,
    run: str,
    fingerprint: str,
    store: Store,
    layout: RunLayout,
    prep: Prepared,
    geom: Geometry,
    precision: str,
    ds_config: dict[str, Any] | None,
) -> Any:
    from star1.train.progress import new_board
    from star1.train.spec import WorkerSpec

    return WorkerSpec(
        run=run,
        fingerprint=fingerprint,
        store={"uri": store.uri, "endpoint_url": cfg.store.endpoint_url, "region": cfg.store.region},
        tokens_path=layout.tokens,
        model=tc.model if tc.model == LOCAL_MODEL or "://" in tc.model else str(prep.model_dir),
        chat_template=prep.template,
        recipe=tc.recipe.model_dump(mode="json"),
        geometry=asdict(geom),
        strategy=tc.strategy,
        ds_config=ds_config,
        precision=precision,
        attn_implementation=tc.recipe.attn_implementation,
        max_length=tc.format.max_length,
        checkpoint_every=tc.checkpoint.every_steps,
        checkpoint_upload=tc.checkpoint.upload,
        log_every=tc.throughput.log_every,
        peak_tflops=tc.throughput.peak_tflops,
        export_path=layout.model,
        export_dtype=tc.export_dtype,
        metrics_path=layout.metrics,
        progress=new_board(geom.total_steps),
    )


def _fit(
    tc: TrainConfig,
    spec: Any,
    workers: int,
    per_worker: dict[str, float],
    where: tuple[Store, str],
    storage_path: str,
    storage_fs: Any,
    progress: Callable[[dict[str, Any]], None] | None,
    tracker: TrainTracker,
) -> dict[str, Any]:
    """Run the TorchTrainer; the progress board's last snapshot. Raise TrainFailed when training fails.
    Progress snapshots carry `registered`: the newest checkpoint Ray Train has registered. Every step on
    the board goes to the tracker as it lands."""
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    from star1.train.loop import train_worker
    from star1.train.progress import Watcher

    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"spec": spec},
        scaling_config=ray.train.ScalingConfig(
            num_workers=workers,
            use_gpu=tc.scaling.use_gpu,
            resources_per_worker=per_worker,
            accelerator_type=tc.scaling.accelerator_type,
            placement_strategy=tc.scaling.placement_strategy,
        ),
        run_config=ray.train.RunConfig(
            name=where[1],
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            failure_config=ray.train.FailureConfig(max_failures=tc.checkpoint.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=tc.checkpoint.keep),
        ),
    )
    board, (root, run) = spec.progress, where

    def on_update(snap: dict[str, Any]) -> None:
        if progress:
            progress(snap)
        tracker.pull(board)

    try:
        with Watcher(board, on_update, lambda: registered_step(root, run)):
            trainer.fit()
    except ray.train.TrainingFailedError as e:
        tracker.pull(board)
        snap = ray.get(board.snapshot.remote())
        last = registered_step(root, run)
        start = f"the checkpoint of step {last}" if last else "the start (no checkpoint was registered)"
        raise TrainFailed(
            f"training run '{run}' failed at step {snap['step']} of {snap['total']}: {_first_line(e)}; "
            f"rerun the same command to resume from {start}"
        ) from e
    tracker.pull(board)
    snap = ray.get(board.snapshot.remote())
    if progress:
        progress(snap)
    return snap


def _first_line(e: BaseException) -> str:
    """The root cause in one line: a worker's own exception when Ray names one."""
    failures = getattr(e, "worker_failures", None) or {}
    if failures:
        rank, cause = sorted(failures.items())[0]
        lines = str(cause).strip().splitlines()
        return f"worker {rank}: " + (lines[-1][:300] if lines else type(cause).__name__)
    cause = getattr(e, "controller_failure", None) or e
    lines = str(cause).strip().splitlines()
    return lines[-1][:300] if lines else type(cause).__name__


def _slots(steps: list[dict[str, Any]]) -> float:
    return sum(h["tokens"] / h["real_token_fraction"] for h in steps if h.get("real_token_fraction"))


def throughput_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """Means over logged steps (the first step after each (re)start is warm-up and left out)."""
    history = summary["history"]
    steps = [h for h in history if "loss" in h]
    warm = set()
    expect_first = True
    for h in history:
        if h.get("event") == "resumed":
            expect_first = True
        elif "loss" in h:
            if expect_first:
                warm.add(h["step"])
            expect_first = False
    timed = [h for h in steps if h["step"] not in warm] or steps

    def mean(key: str) -> float | None:
        vals = [h[key] for h in timed if h.get(key) is not None]
        return sum(vals) / len(vals) if vals else None

    return {
        "params": summary["params"],
        "device": summary["device"],
        "workers": summary["world"],
        "peak_tflops": summary["peak_tflops"],
        "peak_source": summary["peak_source"],
        "tokens_per_s_per_worker": mean("tokens_per_s_per_worker"),
        "step_time_s": mean("step_time_s"),
        "mfu": mean("mfu"),
        "real_token_fraction": sum(h["tokens"] for h in steps) / slots if (slots := _slots(steps)) else None,
        "first_loss": steps[0]["loss"] if steps else None,
        "last_loss": steps[-1]["loss"] if steps else None,
        "steps_logged": len(steps),
    }
