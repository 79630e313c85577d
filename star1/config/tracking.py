"""`tracking:` — where training curves, eval scores and stage counts go (MLflow, TensorBoard, W&B or none).

Credentials never live here: MLflow reads `MLFLOW_TRACKING_URI` / `MLFLOW_TRACKING_USERNAME` /
`MLFLOW_TRACKING_PASSWORD` / `MLFLOW_TRACKING_TOKEN`, W&B reads `WANDB_API_KEY`, TensorBoard on an s3:// store
the AWS variables the store uses.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from star1.config.base import Strict

Backend = Literal["mlflow", "tensorboard", "wandb", "none"]
BACKENDS: tuple[str, ...] = ("mlflow", "tensorboard", "wandb")


class MLflowSection(Strict):
    uri: str | None = Field(
        None,
        description="tracking URI (http(s)://, sqlite:///…, databricks); default: env MLFLOW_TRACKING_URI, "
        "else an embedded sqlite store: <store>/mlflow/mlflow.db for a local store; for an s3:// store a "
        "file under $STAR1_CACHE/mlflow/ copied to <store>/mlflow/mlflow.db at the end of every run",
    )
    experiment: str = Field("star1", min_length=1, description="experiment the runs are filed under")


class TensorBoardSection(Strict):
    logdir: str | None = Field(
        None,
        description="local folder of the event files (one sub-folder per run: <kind>/<name>); default: "
        "<store>/tensorboard for a local store, ./tensorboard for an s3:// store, whose runs are also copied "
        "to <store>/tensorboard/<kind>/<name>/ as they grow",
    )


class WandbSection(Strict):
    project: str = Field("star1", min_length=1, description="W&B project")
    entity: str | None = Field(None, description="W&B entity (team or user); default: the key's own")
    mode: Literal["auto", "online", "offline"] = Field(
        "auto", description="auto: online when env WANDB_API_KEY is set, else offline files (no network)"
    )
    dir: str | None = Field(None, description="folder of W&B's run files; default: ./wandb")


class TrackingConfig(Strict):
    """Experiment tracking. A tracker that is down or misconfigured never fails or slows a run: its calls
    run on a background thread, failures are counted (in the manifest) and warned about once."""

    backend: Backend | list[Backend] = Field(
        "mlflow", description="mlflow | tensorboard | wandb | none, or a list of them (each gets every run)"
    )
    mlflow: MLflowSection = Field(default_factory=MLflowSection)
    tensorboard: TensorBoardSection = Field(default_factory=TensorBoardSection)
    wandb: WandbSection = Field(default_factory=WandbSection)
    queue_size: int = Field(
        10_000, ge=10, description="calls held per backend for its background sender; more are dropped"
    )
    flush_timeout_s: float = Field(
        30.0, ge=0, description="how long the end of a run waits for the tracker to take what is queued"
    )

    @field_validator("backend")
    @classmethod
    def _distinct(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and len(set(v)) != len(v):
            raise ValueError(f"backend lists {v}: each backend at most once")
        return v

    @property
    def backends(self) -> list[str]:
        """The backends in use, in order; [] for none."""
        names = [self.backend] if isinstance(self.backend, str) else list(self.backend)
        return [b for b in names if b != "none"]
