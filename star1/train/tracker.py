"""A training run in the experiment tracker: the driver, not the workers, talks to it (one process holds the
credentials, and workers on other pods need no route to it). It forwards every optimizer step rank 0 put on
the progress board, once and in order, and at the end the model, manifest and data as links and tags."""

from __future__ import annotations

from typing import Any

from star1.config import Star1Config, TrainConfig
from star1.store import Store
from star1.tracking import TrackedRun, open_run
from star1.train.layout import RunLayout

# metrics.json key -> tracker key (rank 0's numbers; loss is summed over all workers' micro-batches)
METRICS = {
    "loss": "train/loss",
    "lr": "train/lr",
    "grad_norm": "train/grad_norm",
    "tokens_per_s_per_worker": "train/tokens_per_s_per_worker",
    "real_token_fraction": "train/real_token_fraction",
    "mfu": "train/mfu",
    "epoch": "train/epoch",
    "step_time_s": "train/step_time_s",
}


def step_metrics(h: dict[str, Any]) -> dict[str, float | None]:
    """One history entry as tracker metrics (MFU is None where the device's peak is unknown)."""
    return {key: h.get(name) for name, key in METRICS.items()}


class TrainTracker:
    """Opened once the run's fingerprint is known, before any worker starts; `pull` runs on the progress
    watcher's thread, `finish` on the driver at the end."""

    def __init__(self, cfg: Star1Config, tc: TrainConfig, run: str, store: Store, layout: RunLayout) -> None:
        self.layout, self.store = layout, store
        self.run: TrackedRun = open_run(cfg, kind="train", name=run, store=store, folder=layout.stage)
        self.sent = 0  # the last step forwarded by this driver
        train = tc.model_dump(mode="json")  # resolved: the preset's values filled in
        self.run.log_params({"run_name": run, "store": {"uri": store.uri}, "train": train})
        self.run.set_tags({"preset": tc.preset or "none", "strategy": tc.strategy})

    def log_setup(self, fingerprint: str, workers: int, geom: dict[str, Any], precision: str) -> None:
        self.run.log_params({"resolved": {"workers": workers, "precision": precision, **geom}})
        self.run.set_tags({"fingerprint": fingerprint})

    def forward(self, steps: list[dict[str, Any]]) -> None:
        """Send the steps after the last one sent, in order (earlier ones are the tracker's already)."""
        for h in sorted((h for h in steps if "loss" in h), key=lambda h: h["step"]):
            if h["step"] > self.sent:
                self.run.log_metrics(step_metrics(h), h["step"])
                self.sent = h["step"]

    def pull(self, board: Any) -> None:
        import ray

        self.forward(ray.get(board.steps_after.remote(self.sent), timeout=10))

    def finish(self, status: str, inputs: list[dict[str, Any]], history: list[dict[str, Any]] | None) -> dict:
        """Links, tags and the end of the tracker run; its summary (for the manifest's usage)."""
        if history:
            self.forward(history)  # anything the board did not hold (none in practice)
        from star1.manifest import manifest_path

        data = [i.get("sha256") for i in inputs if i.get("sha256")]
        self.run.set_tags({"data_sha256": ",".join(data), "status": status})
        links = {"manifest": manifest_path(self.layout.stage), "metrics": self.layout.metrics}
        if status == "complete":
            links["model"] = self.layout.model
        for name, rel in links.items():
            self.run.log_link(name, self.store.url(rel))
        if inputs:
            self.run.log_json("inputs.json", inputs)
        return self.run.end("FINISHED" if status == "complete" else "FAILED")
