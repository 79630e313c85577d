"""The two ways `star1 train` fails: refused before any worker started (exit 2), or failed while training
(exit 1, the manifest says incomplete, the same command resumes)."""

from __future__ import annotations

from star1.config import ConfigError


class TrainSetupError(ConfigError):
    """Bad input found before any worker started (data, model, template, batch, cluster, checkpoints)."""


class TrainFailed(RuntimeError):
    """Training started but could not finish; the manifest says incomplete, a rerun resumes."""
