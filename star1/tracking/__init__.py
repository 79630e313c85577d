"""Experiment tracking behind one small interface: `open_run(cfg, kind=, name=, store=, folder=)` returns a
`TrackedRun` (`log_params`, `log_metrics`, `set_tags`, `log_link`, `log_text`/`log_json`, `end`). Backends:
MLflow (default: an embedded sqlite store), TensorBoard event files, Weights & Biases (online or offline),
chosen by the config's `tracking:` section. A tracker that is down or slow never fails or slows the run."""

from star1.tracking.backend import Status, redact
from star1.tracking.params import flatten
from star1.tracking.run import TrackedRun, open_run

__all__ = ["Status", "TrackedRun", "flatten", "open_run", "redact"]
