"""`star1 pipeline`: data → train → eval → report. The one module that knows every part of the loop; the
parts know only the store: training publishes its model folder in its manifest's outputs, and evaluation
reads it as a `store:` path."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from star1.config import ConfigError, Star1Config
from star1.evals.run import EvalResult, engine_pool, run_eval
from star1.manifest import read_manifest
from star1.report.render import render_scorecard
from star1.report.tracking import link_scorecard
from star1.stages.runner import data_stage_names, run_stages
from star1.store import Store
from star1.train.layout import RunLayout
from star1.train.run import run_train

LogFn = Callable[[str], None]


def step_names(cfg: Star1Config) -> list[str]:
    """The data stages, then `train` when the config has a `train:` section."""
    return data_stage_names(cfg) + (["train"] if cfg.train is not None else [])


def run_steps(
    names: list[str],
    cfg: Star1Config,
    store: Store,
    force: bool = False,
    use_ray: bool = True,
    log: LogFn = print,
    progress: Any = None,
) -> dict[str, Any]:
    """Run the named data stages in order (each skipped when current), then `train` when named."""
    if "train" in names and names[-1] != "train":
        raise ValueError(f"'train' runs after the data stages, not within them: {names}")
    data = [n for n in names if n != "train"]
    results = run_stages(data, cfg, store, force, use_ray, log, progress) if data else {}
    if "train" in names:
        results["train"] = run_train(cfg, store, force=force, log=log)
    return results


def finetuned_model(cfg: Star1Config, store: Store) -> str | None:
    """`store:<folder>` of the fine-tuned model once a complete training run has published it, else None.

    The folder is `eval.pipeline.finetuned` when set, else the one this config's training run recorded in
    its manifest's `model` output; either way the run that wrote it must have completed."""
    step = cfg.eval.pipeline
    if step is None:
        return None
    if step.finetuned:
        folder = step.finetuned.strip("/")
        stage = folder.rsplit("/", 1)[0] if "/" in folder else folder
        m = read_manifest(store, stage)
    elif cfg.train is not None:
        layout = RunLayout(cfg.train.run_name or cfg.run_name)
        m = read_manifest(store, layout.stage)
        folder = (m.outputs.get("model", {}).get("path") if m else None) or layout.model
    else:
        return None
    if m is None or m.status != "complete" or not store.exists(f"{folder}/config.json"):
        return None
    return f"store:{folder}"


def evaluate_models(
    cfg: Star1Config, store: Store, force: bool = False, log: LogFn = print
) -> list[EvalResult]:
    """Evaluate the base model and, when trained, the fine-tuned one, with one engine pool (a judge that is
    the base model re-uses its engine)."""
    if cfg.eval.model is None:
        raise ConfigError("eval.pipeline is set but eval.model (the base model) is not")
    base = cfg.eval.model
    runs = [("base", base)]
    tuned = finetuned_model(cfg, store)
    if tuned:
        runs.append(("finetuned", base.model_copy(update={"path": tuned, "name": f"{base.label}-sft"})))
    else:
        log("eval: no complete `train` output in the store yet; evaluating the base model only")
    pool = engine_pool(cfg, store)
    try:
        return [run_eval(cfg, store, model, name, force, pool, log) for name, model in runs]
    finally:
        pool.close()


def scorecard(cfg: Star1Config, store: Store, results: list[EvalResult]) -> tuple[str, str] | None:
    """The loop's last word: the scorecard of its eval runs, deltas against the first (the base model);
    returns (Markdown, URL of the HTML page), or None when nothing was evaluated."""
    if not results:
        return None
    names = [r.run_name for r in results]
    text, url = render_scorecard(
        store, names, cfg=cfg.report, reference=cfg.report.reference or results[0].run_name, name="pipeline"
    )
    link_scorecard(cfg, store, names, url)
    return text, url


def tracking_line(cfg: Star1Config, store: Store) -> str | None:
    """One line saying where the loop's tracker runs are and how to open them; None when tracking is off."""
    from star1.tracking.backend import redact
    from star1.tracking.mlflow_backend import MIRROR, tracking_uri, ui_command

    parts = []
    for backend in cfg.tracking.backends:
        if backend == "mlflow":
            uri = tracking_uri(cfg.tracking.mlflow, store)
            if uri.startswith("sqlite:///"):
                db = Path(uri[len("sqlite:///") :])
                shown = os.path.relpath(db) if db.is_relative_to(Path.cwd()) else str(db)
                copy = f" (copied to {store.url(MIRROR)})" if not store.is_local else ""
                parts.append(f"MLflow store {shown}{copy} — open it: {ui_command(uri)}")
            else:
                parts.append(f"MLflow at {redact(uri)}, experiment {cfg.tracking.mlflow.experiment}")
        elif backend == "tensorboard":
            where = cfg.tracking.tensorboard.logdir or store.url("tensorboard")
            parts.append(f"TensorBoard: tensorboard --logdir {where}")
        elif backend == "wandb":
            parts.append(f"W&B project {cfg.tracking.wandb.project} (offline runs: wandb sync <dir>)")
    return "tracking: " + "; ".join(parts) if parts else None
