"""MLflow through `MlflowClient` (no global state): a tracking server, or the embedded sqlite store."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from star1.config import MLflowSection
from star1.store import Store
from star1.tracking.backend import Status, redact

BATCH = 100  # MLflow's log_batch takes at most 100 params / 1000 metrics per request


def embedded_uri(store: Store | None) -> str:
    """sqlite store under a local run store (`<store>/mlflow/mlflow.db`), else `./mlruns/mlflow.db`."""
    folder = Path(store.root) / "mlflow" if store is not None and store.is_local else Path("mlruns").resolve()
    return f"sqlite:///{folder / 'mlflow.db'}"


def tracking_uri(section: MLflowSection, store: Store | None) -> str:
    """`tracking.mlflow.uri`, else env MLFLOW_TRACKING_URI, else the embedded store."""
    return section.uri or os.environ.get("MLFLOW_TRACKING_URI") or embedded_uri(store)


class MLflowBackend:
    name = "mlflow"

    def __init__(self, section: MLflowSection, store: Store | None, kind: str, run_name: str) -> None:
        self.uri = tracking_uri(section, store)
        self.where = redact(self.uri)
        self.experiment, self.kind, self.run_name = section.experiment, kind, run_name
        self.client: Any = None
        self.run_id = ""

    def start(self, resume_id: str | None) -> str:
        from mlflow.tracking import MlflowClient

        local = self.uri.startswith("sqlite:///")
        if local:
            Path(self.uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
            for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.sql_alchemy_store"):
                logging.getLogger(name).setLevel(logging.WARNING)  # schema set-up chatter
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
