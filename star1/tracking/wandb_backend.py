"""Weights & Biases: online when env WANDB_API_KEY is set (or `mode: online`), else offline run files under
`tracking.wandb.dir` that `wandb sync` uploads later; offline never opens a network connection."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from star1.config import WandbSection
from star1.tracking.backend import Status

STEP = "star1/step"  # every metric is plotted against this, so a resumed run may log any step


def wandb_mode(section: WandbSection) -> str:
    if section.mode != "auto":
        return section.mode
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


class WandbBackend:
    name = "wandb"

    def __init__(self, section: WandbSection, kind: str, run_name: str) -> None:
        self.section, self.kind, self.run_name = section, kind, run_name
        self.mode = wandb_mode(section)
        self.dir = Path(section.dir or "wandb").expanduser().resolve()
        base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
        self.where = f"{self.mode} {section.entity + '/' if section.entity else ''}{section.project}" + (
            f" at {base}" if self.mode == "online" else f" in {self.dir}"
        )
        self.run: Any = None
        self._defined: set[str] = set()

    def start(self, resume_id: str | None) -> str:
        import wandb

        self.dir.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(silent=True, console="off", x_disable_stats=True, save_code=False)
        self.run = wandb.init(
            project=self.section.project,
            entity=self.section.entity,
            name=f"{self.kind}/{self.run_name}",
            group=self.kind,
            job_type=self.kind,
            id=resume_id,
            resume="allow" if resume_id else None,
            mode=self.mode,  # type: ignore[arg-type]
            dir=str(self.dir),
            reinit="create_new",
            settings=settings,
        )
        self.run.define_metric(STEP)
        return str(self.run.id)

    def logged_steps(self) -> dict[str, int]:
        return {}  # the run's own record (tracking.json) says

    def resume_at(self, step: int) -> None:
        """Points are plotted against STEP: nothing to prepare."""

    def log_params(self, params: dict[str, str]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for k in metrics.keys() - self._defined:
            self.run.define_metric(k, step_metric=STEP)
            self._defined.add(k)
        self.run.log({**metrics, STEP: step})

    def set_tags(self, tags: dict[str, str]) -> None:
        self.run.summary.update({f"tags/{k}": v for k, v in tags.items()})

    def log_link(self, name: str, uri: str) -> None:
        self.run.summary[f"links/{name}"] = uri

    def log_text(self, name: str, text: str) -> None:
        path = Path(self.run.dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.run.save(str(path), base_path=self.run.dir, policy="now")

    def sync(self) -> None:
        """wandb's own service sends (or writes) in the background."""

    def end(self, status: Status) -> None:
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)
