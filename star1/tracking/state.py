"""The tracker run ids of one star1 run, kept beside its outputs (`<folder>/tracking.json`), so a resumed or
rerun job continues the same tracker runs: {backend: {run_id, where, steps: {key: last step}, failures}}."""

from __future__ import annotations

import threading
from typing import Any

from star1.store import Store

STATE_FILE = "tracking.json"


class RunState:
    """Read once at open; rewritten (whole, under a lock) by the senders as runs start and steps land."""

    def __init__(self, store: Store | None, folder: str | None) -> None:
        self.store, self.rel = store, f"{folder.strip('/')}/{STATE_FILE}" if folder else None
        self.data: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        if self.store is not None and self.rel and self.store.exists(self.rel):
            loaded = self.store.read_json(self.rel)
            self.data = {k: v for k, v in loaded.items() if isinstance(v, dict)}

    def get(self, backend: str) -> dict[str, Any]:
        return dict(self.data.get(backend, {}))

    def put(self, backend: str, entry: dict[str, Any]) -> None:
        """Record `backend`'s entry and write the file (raises what the store raises)."""
        with self._lock:
            self.data[backend] = entry
            if self.store is not None and self.rel:
                self.store.write_json(self.rel, self.data)
