"""`open_run` → `TrackedRun`: what stages, training and evaluation call; they never touch a tracker's API.

Every call returns at once: each backend gets its own background sender (`sender.Sender`). `end()` waits at
most `tracking.flush_timeout_s` for the trackers to take what is queued.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from star1.config import Star1Config
from star1.store import Store
from star1.tracking.backend import STATUSES, Backend, Status
from star1.tracking.params import flatten
from star1.tracking.sender import Sender
from star1.tracking.state import RunState


class TrackedRun:
    """One star1 run (a training run, an eval run, a stage run, a comparison) in every configured tracker.

    Args:
        senders: one per backend (none: tracking is off and every call is a no-op).
        kind: what the run is (`train`, `eval`, `collect`, `compare`, …).
        name: the run's name within its kind.
        flush_timeout_s: how long `end` waits for the trackers.
    """

    def __init__(self, senders: list[Sender], kind: str, name: str, flush_timeout_s: float = 30.0) -> None:
        self.senders, self.kind, self.name, self.flush_timeout_s = senders, kind, name, flush_timeout_s
        self.ended = False

    @property
    def enabled(self) -> bool:
        return bool(self.senders)

    @property
    def failures(self) -> int:
        """Tracker calls that did not land: errors, calls after a tracker could not start, dropped calls."""
        return sum(s.failures + s.dropped for s in self.senders)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Nested dicts are flattened to `a.b.c`; a param logged before keeps its first value."""
        self._send("log_params", flatten(params))

    def log_metrics(self, metrics: Mapping[str, float | int | None], step: int) -> None:
        """Points at `step`; None values are left out, and so is a point whose key already has one at this
        or a later step in this tracker run (a resumed or rerun job repeats no step)."""
        values = {k: float(v) for k, v in metrics.items() if v is not None}
        if values:
            self._send("log_metrics", values, int(step))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._send("set_tags", {k: str(v) for k, v in tags.items() if v is not None})

    def log_link(self, name: str, uri: str) -> None:
        """Point at a (large) file or folder by URI; nothing is copied."""
        self._send("log_link", name, uri)

    def log_text(self, name: str, text: str) -> None:
        """A small file (`name` may hold folders: `manifest/train.json`)."""
        self._send("log_text", name, text)

    def log_json(self, name: str, obj: Any) -> None:
        self.log_text(name, json.dumps(obj, indent=2, sort_keys=True, default=str))

    def end(self, status: Status = "FINISHED") -> dict[str, Any]:
        """Close the run in every tracker (waiting at most `flush_timeout_s` in all); the summary."""
        if status not in STATUSES:
            raise ValueError(f"status {status!r}: expected one of {STATUSES}")
        if not self.ended:
            self.ended = True
            for s in self.senders:
                s.finish(status, self.flush_timeout_s)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        """For a manifest: each tracker's run id, where it is, and the calls that did not land."""
        return {
            "backends": {
                s.backend.name: {
                    "run_id": s.run_id,
                    "where": s.backend.where,
                    "resumed": s.resumed,
                    "failures": s.failures,
                    "dropped": s.dropped,
                }
                for s in self.senders
            },
            "failures": self.failures,
        }

    def __enter__(self) -> TrackedRun:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.end("FINISHED" if exc_type is None else "FAILED")

    def _send(self, op: str, *args: Any) -> None:
        for s in self.senders:
            s.submit(op, *args)


def make_backend(name: str, cfg: Star1Config, store: Store | None, kind: str, run_name: str) -> Backend:
    t = cfg.tracking
    if name == "mlflow":
        from star1.tracking.mlflow_backend import MLflowBackend

        return MLflowBackend(t.mlflow, store, kind, run_name)
    if name == "tensorboard":
        from star1.tracking.tensorboard_backend import TensorBoardBackend

        return TensorBoardBackend(t.tensorboard, store, kind, run_name)
    if name == "wandb":
        from star1.tracking.wandb_backend import WandbBackend

        return WandbBackend(t.wandb, kind, run_name)
    raise ValueError(f"unknown tracking backend {name!r}")


def open_run(
    cfg: Star1Config, *, kind: str, name: str, store: Store | None = None, folder: str | None = None
) -> TrackedRun:
    """Open (or, when `store`/`folder` hold a `tracking.json` from an earlier attempt, reopen) the run
    `kind`/`name` in every backend of `cfg.tracking`. Returns at once; the trackers start in the background.

    Args:
        cfg: the run config (its `tracking:` section; `store:` for the default locations).
        kind: `train`, `eval`, `collect`, `compare`, …
        name: the run's name within its kind.
        store: the run's artifact store (the embedded MLflow store and TensorBoard files go under it).
        folder: store folder of the run's outputs: its tracker run ids are kept there (`tracking.json`), so
            a resumed or rerun job continues the same tracker runs. None: a new tracker run every time.
    """
    t = cfg.tracking
    if not t.backends:
        return TrackedRun([], kind, name, t.flush_timeout_s)
    state = RunState(store, folder)
    senders = [Sender(make_backend(b, cfg, store, kind, name), state, t.queue_size) for b in t.backends]
    return TrackedRun(senders, kind, name, t.flush_timeout_s)
