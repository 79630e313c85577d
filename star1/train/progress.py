"""Live progress from the workers to the driver: a small Ray actor the workers push to (fire and forget) and
the driver polls, so the driver shows steps, loss and tokens/s while `TorchTrainer.fit()` blocks. The
board outlives worker-group restarts, so it also records who ran, where restarts resumed, and checkpoints."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class ProgressBoard:
    """Use as a Ray actor: `ray.remote(num_cpus=0)(ProgressBoard).remote(total_steps)`."""

    def __init__(self, total_steps: int) -> None:
        self.total = total_steps
        self.step = 0
        self.last: dict[str, Any] = {}
        self.workers: dict[int, dict[str, Any]] = {}  # rank -> {pid, node, attempt}
        self.events: list[dict[str, Any]] = []
        self.checkpoints: list[int] = []
        self.attempts = 0
        self.steps: dict[int, dict[str, Any]] = {}  # every step's metrics (rank 0), for the tracker

    def restored(self, history: list[dict[str, Any]]) -> None:
        """The steps a resumed worker group's checkpoint holds (a resubmission's board starts empty)."""
        for h in history:
            if "loss" in h:
                self.steps[int(h["step"])] = h

    def started(self, rank: int, pid: int, node: str, start_step: int) -> None:
        if rank == 0:
            self.attempts += 1
            self.events.append({"event": "start", "attempt": self.attempts, "from_step": start_step})
        self.workers[rank] = {"pid": pid, "node": node, "attempt": self.attempts}

    def update(self, metrics: dict[str, Any]) -> None:
        self.step = int(metrics["step"])
        self.last = metrics
        self.steps[self.step] = metrics

    def steps_after(self, step: int) -> list[dict[str, Any]]:
        """Metrics of the steps after `step`, in order."""
        return [self.steps[s] for s in sorted(self.steps) if s > step]

    def checkpointed(self, step: int) -> None:
        self.checkpoints.append(step)

    def snapshot(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "total": self.total,
            "last": self.last,
            "workers": dict(self.workers),
            "events": list(self.events),
            "checkpoints": list(self.checkpoints),
            "attempts": self.attempts,
        }


def new_board(total_steps: int) -> Any:
    import ray

    return ray.remote(num_cpus=0)(ProgressBoard).remote(total_steps)


class Watcher:
    """Polls a board on a daemon thread and calls `on_update(snapshot)` while training runs; `registered()`
    adds the newest checkpoint Ray Train has registered (`snapshot["registered"]`)."""

    def __init__(
        self,
        board: Any,
        on_update: Callable[[dict[str, Any]], None],
        registered: Callable[[], int | None] = lambda: None,
        every_s: float = 1.0,
    ):
        self.board, self.on_update, self.registered, self.every_s = board, on_update, registered, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="star1-train-progress")

    def _run(self) -> None:
        import ray

        while not self._stop.is_set():
            try:
                snap = ray.get(self.board.snapshot.remote(), timeout=10)
                self.on_update({**snap, "registered": self.registered()})
            except Exception:  # a slow or restarting cluster must not kill the display
                pass
            self._stop.wait(self.every_s)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
