"""Where a run's checkpoints live (Ray Train's `storage_path`), whether a resubmission may resume from them
(same config fingerprint, and a checkpoint laid out for the workers about to start), and which checkpoint Ray
Train has registered (what a restart resumes from)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from star1.config import Star1Config, TrainConfig
from star1.store import Store, s3_filesystem
from star1.train.errors import TrainSetupError
from star1.train.layout import CHECKPOINTS_ROOT

RUN_MARKER = "star1-run.json"
RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's record of the run's registered checkpoints
STATE_FILE = "train_state.json"  # rank 0's part of every checkpoint: step, history, fingerprint, shape
_CKPT_DIR = re.compile(r"^(checkpoint_\d+)/")
_ZERO_SHARD = re.compile(r"/zero_pp_rank_(\d+)_mp_rank_\d+_optim_states\.pt$")


@dataclass(frozen=True)
class CheckpointShape:
    """What a checkpoint's state is laid out for. DDP checkpoints hold the full state (rank 0 writes it), so
    any number of workers loads them; DeepSpeed writes one shard per rank and loads `shards[rank]`, so its
    checkpoints resume only on the world size that wrote them. None: not recorded (older checkpoints)."""

    strategy: str | None
    zero_stage: int | None  # 0 for DDP
    world: int | None

    @property
    def sharded(self) -> bool:
        return self.strategy != "ddp"

    def describe(self) -> str:
        return "DDP" if self.strategy == "ddp" else f"{self.strategy} (ZeRO stage {self.zero_stage})"


def zero_stage(strategy: str, ds_config: dict[str, Any] | None) -> int:
    """0 for DDP; else the ZeRO stage of the run's DeepSpeed config (its own, else the shipped one)."""
    if strategy == "ddp":
        return 0
    if ds_config is None:
        from star1.train.engines import shipped_ds_config

        ds_config = shipped_ds_config(strategy)
    return int(ds_config.get("zero_optimization", {}).get("stage", 0))


def saved_shape(root: Store, run: str, names: list[str] | None = None) -> tuple[int, CheckpointShape] | None:
    """(step, shape) of the checkpoint a resubmission resumes from: the one Ray Train registered, else the
    newest; None without checkpoints. Checkpoints written before star1 recorded a shape count their ZeRO
    shards (none: DDP)."""
    names = root.list(run) if names is None else names
    rel = [p[len(run) + 1 :] for p in names]
    dirs = sorted({m.group(1) for p in rel if (m := _CKPT_DIR.match(p))})
    if not dirs:
        return None
    step = registered_step(root, run)
    name = f"checkpoint_{step:06d}" if step is not None and f"checkpoint_{step:06d}" in dirs else dirs[-1]
    step = int(name.rsplit("_", 1)[-1])
    state_path = f"{run}/{name}/{STATE_FILE}"
    shape = (root.read_json(state_path) if state_path in names else {}).get("shape")
    if shape:
        return step, CheckpointShape(shape["strategy"], shape["zero_stage"], shape["world"])
    ranks = {m.group(1) for p in rel if p.startswith(f"{name}/") and (m := _ZERO_SHARD.search(p))}
    return step, (CheckpointShape(None, None, len(ranks)) if ranks else CheckpointShape("ddp", 0, None))


def check_shape(
    run: str, step: int, saved: CheckpointShape, now: CheckpointShape, auto: bool = False
) -> str | None:
    """Refuse (TrainSetupError) a checkpoint the workers about to start cannot load; a note when they load
    it at another scale (DDP)."""
    known = saved.strategy is not None and saved.zero_stage is not None
    if known and (saved.strategy, saved.zero_stage) != (now.strategy, now.zero_stage):
        raise TrainSetupError(
            f"run '{run}' has a checkpoint (step {step}) written with {saved.describe()}, but this config "
            f"trains with {now.describe()}; a checkpoint resumes only with the strategy and ZeRO stage that "
            "wrote it: restore train.strategy / train.deepspeed_config, or --force to discard the "
            "checkpoints and start over"
        )
    if saved.world in (None, now.world):
        return None
    if not saved.sharded:
        return (
            f"resuming a DDP checkpoint written by {_workers(saved.world)} on {now.world} "
            "(it holds the full state; the global batch of every step is the same)"
        )
    how = " (num_workers: auto on this cluster)" if auto else ""
    raise TrainSetupError(
        f"run '{run}' has a DeepSpeed ZeRO checkpoint (step {step}) written by {_workers(saved.world)}, but "
        f"this submission would start {_workers(now.world)}{how}; ZeRO checkpoints hold one shard per "
        f"worker and cannot resume at another scale: set train.scaling.num_workers to {saved.world} to "
        "resume, or --force to discard the checkpoints and start over"
    )


def checkpoint_store(cfg: Star1Config, tc: TrainConfig, store: Store) -> tuple[Store, str, Any]:
    """(store over the checkpoint root, storage_path for Ray, pyarrow filesystem for Ray or None)."""
    uri = tc.checkpoint.storage_path or store.url(CHECKPOINTS_ROOT)
    root = Store.from_uri(uri, cfg.store.endpoint_url, cfg.store.region)
    if urlparse(uri).scheme == "s3":
        return root, root.root, s3_filesystem(cfg.store.endpoint_url, cfg.store.region)
    return root, root.root, None


def _workers(n: int | None) -> str:
    return f"{n} worker" + ("" if n == 1 else "s")


def guard_checkpoints(
    root: Store,
    run: str,
    fingerprint: str,
    force: bool,
    log: Callable[[str], None],
    shape: CheckpointShape | None = None,
    auto: bool = False,
) -> bool:
    """True when the run resumes from checkpoints; refuse checkpoints made with another config, or (given
    the `shape` of the workers about to start) laid out for another strategy or world size."""
    names = root.list(run)
    marker = f"{run}/{RUN_MARKER}"
    has_ckpt = any("/checkpoint_" in f"/{p}" for p in names)
    if force and names:
        log(f"train: --force: discarding {root.url(run)}")
        root.delete(run)
        has_ckpt = False
    elif has_ckpt:
        stored = root.read_json(marker) if root.exists(marker) else {}
        if stored.get("fingerprint") != fingerprint:
            raise TrainSetupError(
                f"run '{run}' already has checkpoints at {root.url(run)} from a different config "
                "(data, model or recipe changed); choose another train.run_name, or --force to discard them"
            )
        point = saved_shape(root, run, names)
        note = check_shape(run, *point, shape, auto) if point and shape else None
        step = registered_step(root, run)
        log(f"train: resuming run '{run}' from its checkpoint of step {step} in {root.url(run)}")
        if note:
            log(f"train: {note}")
    root.write_json(marker, {"fingerprint": fingerprint, "written_at": time.time()})
    return has_ckpt


def registered_step(root: Store, run: str) -> int | None:
    """The step of the newest checkpoint Ray Train has registered for `run` (what a restart resumes from),
    read from Ray's run snapshot; None when there is none (yet)."""
    path = f"{run}/{RAY_SNAPSHOT}"
    try:
        name = (
            root.read_json(path)["latest_checkpoint_result"]["checkpoint_dir_name"]
            if root.exists(path)
            else ""
        )
        return int(name.rsplit("_", 1)[-1]) if name else None
    except (KeyError, TypeError, ValueError, OSError):
        return None  # absent, or being rewritten right now
