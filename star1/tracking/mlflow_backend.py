"""MLflow through `MlflowClient` (no global state): a tracking server, or the embedded sqlite store.

The embedded store is a sqlite file: `<store>/mlflow/mlflow.db` for a local store. An object store cannot
hold a live database, and a pod's working directory may be read-only and is lost with the pod, so for an
`s3://` store the file lives under `$STAR1_CACHE/mlflow/<hash of the store URI>/` (writable on the chart's
pods), is fetched from `<store>/mlflow/mlflow.db` when this machine has none yet, and is copied back there
at the end of every run. A new database starts as a copy of an empty one made once per MLflow version
(creating the schema runs MLflow's ~50 migrations: seconds; a copy: milliseconds).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from star1.config import MLflowSection
from star1.store import Store
from star1.tracking.backend import Status, redact

BATCH = 100  # MLflow's log_batch takes at most 100 params / 1000 metrics per request


MIRROR = "mlflow/mlflow.db"  # where an object store keeps its copy of the embedded database


def cache_dir() -> Path:
    return Path(os.environ.get("STAR1_CACHE") or Path.home() / ".cache" / "star1") / "mlflow"


def embedded_uri(store: Store | None) -> str:
    """sqlite store under a local run store (`<store>/mlflow/mlflow.db`); for an object store a local file
    under `$STAR1_CACHE/mlflow/<hash of its URI>/` (copied to `<store>/mlflow/mlflow.db`); no store:
    `./mlruns/mlflow.db`."""
    if store is None:
        folder = Path("mlruns").resolve()
    elif store.is_local:
        folder = Path(store.root) / "mlflow"
    else:
        folder = cache_dir() / hashlib.sha256(store.uri.encode()).hexdigest()[:16]
    return f"sqlite:///{folder / 'mlflow.db'}"


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on an embedded store. star1 installs mlflow-skinny, which has
    no web UI: the full package of the same version runs it (a newer one would migrate the database)."""
    from importlib.metadata import version

    return f"uvx --from mlflow=={version('mlflow-skinny')} mlflow ui --backend-store-uri {uri}"


def _template() -> Path:
    """An empty, fully migrated database for this MLflow version (made once, under a lock)."""
    from importlib.metadata import version

    path = cache_dir() / f"empty-{version('mlflow-skinny')}.db"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            from mlflow.tracking import MlflowClient

            with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
                MlflowClient(f"sqlite:///{tmp}/new.db").search_experiments()  # creates the schema
                os.replace(f"{tmp}/new.db", path)
    return path


def _snapshot(db: Path) -> bytes:
    """A consistent copy of a live sqlite database (sqlite's online backup), as bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = sqlite3.connect(db), sqlite3.connect(Path(tmp) / "copy.db")
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
        return (Path(tmp) / "copy.db").read_bytes()


def tracking_uri(section: MLflowSection, store: Store | None) -> str:
    """`tracking.mlflow.uri`, else env MLFLOW_TRACKING_URI, else the embedded store."""
    return section.uri or os.environ.get("MLFLOW_TRACKING_URI") or embedded_uri(store)


class MLflowBackend:
    name = "mlflow"

    def __init__(self, section: MLflowSection, store: Store | None, kind: str, run_name: str) -> None:
        self.uri = tracking_uri(section, store)
        embedded = not section.uri and not os.environ.get("MLFLOW_TRACKING_URI")
        # an object store's embedded database: copied to and from `<store>/mlflow/mlflow.db`
        self.mirror: Store | None = store if embedded and store is not None and not store.is_local else None
        self.where = self.mirror.url(MIRROR) if self.mirror is not None else redact(self.uri)
        self.experiment, self.kind, self.run_name = section.experiment, kind, run_name
        self.client: Any = None
        self.run_id = ""

    def start(self, resume_id: str | None) -> str:
        from mlflow.tracking import MlflowClient

        local = self.uri.startswith("sqlite:///")
        if local:
            db = Path(self.uri[len("sqlite:///") :])
            db.parent.mkdir(parents=True, exist_ok=True)
            for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.sql_alchemy_store"):
                logging.getLogger(name).setLevel(logging.WARNING)  # schema set-up chatter
            if not db.exists() and self.mirror is not None and self.mirror.exists(MIRROR):
                self.mirror.copy_to_local(MIRROR, db)  # a new pod: continue the store's copy
            if not db.exists():
                tmp = db.with_name(f".tmp-{os.getpid()}-{db.name}")
                shutil.copyfile(_template(), tmp)
                os.replace(tmp, db)
        self.client = MlflowClient(tracking_uri=self.uri)
        if resume_id:
            self.client.get_run(resume_id)  # raises when this tracker does not have it
            self.client.update_run(resume_id, status="RUNNING")
            self.run_id = resume_id
            return resume_id
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is None:
            where = (Path(self.uri[len("sqlite:///") :]).parent / "artifacts").as_uri() if local else None
            exp_id = self.client.create_experiment(self.experiment, artifact_location=where)
        else:
            exp_id = exp.experiment_id
        tags = {"star1.kind": self.kind, "star1.name": self.run_name}
        run = self.client.create_run(exp_id, run_name=f"{self.kind}/{self.run_name}", tags=tags)
        self.run_id = run.info.run_id
        return self.run_id

    def logged_steps(self) -> dict[str, int]:
        run = self.client.get_run(self.run_id)
        out = {}
        for key in run.data.metrics:
            history = self.client.get_metric_history(self.run_id, key)
            if history:
                out[key] = max(m.step for m in history)
        return out

    def resume_at(self, step: int) -> None:
        """Points are kept by step: nothing to prepare."""

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        held = self.client.get_run(self.run_id).data.params  # a param cannot change: a rerun keeps the first
        new = [Param(k, v) for k, v in params.items() if k not in held]
        for i in range(0, len(new), BATCH):
            self.client.log_batch(self.run_id, params=new[i : i + BATCH], synchronous=True)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        points = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(points), 1000):
            self.client.log_batch(self.run_id, metrics=points[i : i + 1000], synchronous=True)

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, v) for k, v in tags.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, tags=items[i : i + BATCH], synchronous=True)

    def log_link(self, name: str, uri: str) -> None:
        self.client.set_tag(self.run_id, f"link.{name}", uri)

    def log_text(self, name: str, text: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def sync(self) -> None:
        """Every call above is synchronous."""

    def end(self, status: Status) -> None:
        self.client.set_terminated(self.run_id, status=status)
        if self.mirror is not None:
            self.mirror.write_bytes(MIRROR, _snapshot(Path(self.uri[len("sqlite:///") :])))
