"""TensorBoard event files, one folder per run (`<logdir>/<kind>/<name>/`), readable by `tensorboard
--logdir` on the store. For an s3:// store they are written locally and copied into the store as they grow
(`<store>/tensorboard/<kind>/<name>/`): event files are appended to, which object stores cannot do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from star1.config import TensorBoardSection
from star1.store import Store
from star1.tracking.backend import Status

FOLDER = "tensorboard"


class TensorBoardBackend:
    name = "tensorboard"

    def __init__(self, section: TensorBoardSection, store: Store | None, kind: str, run_name: str) -> None:
        rel = f"{FOLDER}/{kind}/{run_name}"
        local_store = store is not None and store.is_local
        if section.logdir:
            self.local = Path(section.logdir).expanduser().resolve() / kind / run_name
        else:
            self.local = (Path(store.root) if local_store else Path(".").resolve()) / rel  # type: ignore[union-attr]
        # an object store: written locally, copied there
        self.upload: Store | None = None if local_store else store
        self.rel = rel
        self.where = self.upload.url(rel) if self.upload is not None else str(self.local)
        self.writer: Any = None
        self._sizes: dict[str, int] = {}
        self._purge: int | None = None

    def start(self, resume_id: str | None) -> str:
        self.local.mkdir(parents=True, exist_ok=True)
        return resume_id or self.rel

    def resume_at(self, step: int) -> None:
        """A resumed run logs from `step` on: readers drop earlier writers' points at or after it (a killed
        driver may have written points it never recorded as logged)."""
        self._purge = step

    def _writer(self) -> Any:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.local), purge_step=self._purge)
        return self.writer

    def logged_steps(self) -> dict[str, int]:
        return {}  # the run's own record (tracking.json) says; purge_step covers what it missed

    def log_params(self, params: dict[str, str]) -> None:
        rows = "\n".join(f"| {k} | {_cell(v)} |" for k, v in sorted(params.items()))
        self._writer().add_text("params", f"| param | value |\n|---|---|\n{rows}", 0)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        w = self._writer()
        for k, v in metrics.items():
            w.add_scalar(k, float(v), step)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.log_text("tags.json", json.dumps(tags, indent=2, sort_keys=True))

    def log_link(self, name: str, uri: str) -> None:
        self._writer().add_text(f"links/{name}", uri, 0)

    def log_text(self, name: str, text: str) -> None:
        path = self.local / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def sync(self) -> None:
        if self.writer is not None:
            self.writer.flush()
        if self.upload is None:
            return
        for path in sorted(p for p in self.local.rglob("*") if p.is_file()):
            rel = path.relative_to(self.local).as_posix()
            size = path.stat().st_size
            if self._sizes.get(rel) != size:
                self.upload.write_bytes(f"{self.rel}/{rel}", path.read_bytes())
                self._sizes[rel] = size

    def end(self, status: Status) -> None:
        if self.writer is not None:
            self.writer.add_text("status", status, 0)
            self.writer.close()
        self.sync()


def _cell(v: str) -> str:
    return v.replace("|", "\\|").replace("\n", " ")
