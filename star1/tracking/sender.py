"""One background thread per backend: the caller only enqueues (never waits on a tracker), a full queue
drops the call and counts it, a failing call is counted and warned about once, and metric points at or below
the last step the tracker already holds for their key are left out (a resumed run repeats none)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from star1.tracking.backend import Backend, redact
from star1.tracking.state import RunState

log = logging.getLogger("star1.tracking")
_END = "end"


class Sender:
    def __init__(self, backend: Backend, state: RunState, queue_size: int, sync_every_s: float = 10.0):
        self.backend, self.state, self.sync_every_s = backend, state, sync_every_s
        self.q: queue.Queue[tuple[str, tuple[Any, ...]]] = queue.Queue(maxsize=queue_size)
        self.failures = 0  # calls the tracker did not take (errors, and calls after it could not start)
        self.dropped = 0  # calls left out because the queue was full or the end timed out
        self.run_id: str | None = None
        self.resumed = False
        self.steps: dict[str, int] = {}  # metric key -> last step the tracker holds
        self.done = threading.Event()
        self._warned = False
        self._broken = False
        self._dirty = False
        self._synced = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"star1-tracking-{backend.name}")
        self._thread.start()

    # ------------------------------------------------------------------ caller side (never blocks)

    def submit(self, op: str, *args: Any) -> None:
        try:
            self.q.put_nowait((op, args))
        except queue.Full:
            self.dropped += 1

    def finish(self, status: str, timeout_s: float) -> bool:
        """Queue the end of the run and wait up to `timeout_s` for the tracker to take everything."""
        deadline = time.monotonic() + timeout_s
        try:
            self.q.put((_END, (status,)), timeout=timeout_s)
        except queue.Full:
            pass
        if self.done.wait(max(0.0, deadline - time.monotonic())):
            return True
        left = self.q.qsize()
        self.dropped += left
        if self._warned:
            return False
        self._warned = True
        log.warning(
            "tracking: %s (%s) did not take the last %d call(s) within %.0f s; the run's own artifacts are "
            "complete", self.backend.name, self.backend.where, left, timeout_s,
        )  # fmt: skip
        return False

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        self._start()
        while True:
            op, args = self.q.get()
            if op == _END:
                self._end(args[0])
                return
            if self._broken:
                self.failures += 1
                continue
            try:
                if op == "log_metrics":
                    self._metrics(*args)
                else:
                    getattr(self.backend, op)(*args)
            except Exception as e:
                self._fail(e)
            if self._dirty and time.monotonic() - self._synced >= self.sync_every_s:
                self._sync()

    def _start(self) -> None:
        prev = self.state.get(self.backend.name)
        same = prev.get("where") == self.backend.where and prev.get("run_id")
        try:
            try:
                self.run_id = self.backend.start(prev["run_id"] if same else None)
                self.resumed = bool(same)
            except Exception:
                if not same:
                    raise
                self.run_id = self.backend.start(None)  # the old run is gone from this tracker: a new one
            if self.resumed:
                held = self.backend.logged_steps()
                kept = {k: int(v) for k, v in prev.get("steps", {}).items()}
                self.steps = {k: max(kept.get(k, -1), held.get(k, -1)) for k in {*kept, *held}}
                if self.steps:
                    self.backend.resume_at(max(self.steps.values()) + 1)
            self._save()
        except Exception as e:
            self._broken = True
            self._fail(e)

    def _metrics(self, metrics: dict[str, float], step: int) -> None:
        new = {k: v for k, v in metrics.items() if step > self.steps.get(k, -1)}
        if not new:
            return
        for k in new:
            self.steps[k] = step
        self._dirty = True
        self.backend.log_metrics(new, step)

    def _sync(self) -> None:
        self._synced = time.monotonic()
        self._dirty = False
        try:
            self.backend.sync()
        except Exception as e:
            self._fail(e)
        self._save()

    def _save(self) -> None:
        entry = {"run_id": self.run_id, "where": self.backend.where, "steps": dict(self.steps),
                 "failures": self.failures + self.dropped}  # fmt: skip
        try:
            self.state.put(self.backend.name, entry)
        except Exception as e:
            self._fail(e)

    def _end(self, status: str) -> None:
        try:
            if not self._broken:
                self._sync()
                try:
                    self.backend.end(status)  # type: ignore[arg-type]
                except Exception as e:
                    self._fail(e)
            self._save()
        finally:
            self.done.set()

    def _fail(self, e: BaseException) -> None:
        self.failures += 1
        if not self._warned:
            self._warned = True
            msg = redact(f"{type(e).__name__}: {e}").strip().splitlines()
            log.warning(
                "tracking: %s (%s) failed: %s; the run goes on, further tracking failures are only counted",
                self.backend.name, self.backend.where, (msg[0] if msg else "")[:300],
            )  # fmt: skip
