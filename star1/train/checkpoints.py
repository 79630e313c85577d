"""Where a run's checkpoints live (Ray Train's `storage_path`), whether a resubmission may resume from them
(same config fingerprint), and which checkpoint Ray Train has registered (what a restart resumes from)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from star1.config import Star1Config, TrainConfig
from star1.store import Store, s3_filesystem
from star1.train.errors import TrainSetupError
from star1.train.layout import CHECKPOINTS_ROOT

RUN_MARKER = "star1-run.json"
RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's record of the run's registered checkpoints


def checkpoint_store(cfg: Star1Config, tc: TrainConfig, store: Store) -> tuple[Store, str, Any]:
    """(store over the checkpoint root, storage_path for Ray, pyarrow filesystem for Ray or None)."""
    uri = tc.checkpoint.storage_path or store.url(CHECKPOINTS_ROOT)
    root = Store.from_uri(uri, cfg.store.endpoint_url, cfg.store.region)
    if urlparse(uri).scheme == "s3":
        return root, root.root, s3_filesystem(cfg.store.endpoint_url, cfg.store.region)
    return root, root.root, None


def guard_checkpoints(
    root: Store, run: str, fingerprint: str, force: bool, log: Callable[[str], None]
) -> bool:
    """True when the run resumes from checkpoints; refuse checkpoints made with another config."""
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
        step = registered_step(root, run)
        log(f"train: resuming run '{run}' from its checkpoint of step {step} in {root.url(run)}")
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
