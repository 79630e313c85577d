"""The end of `star1 pipeline`: evaluate the base model and, once `star1 train` has written its output to
the store, the fine-tuned one, with one engine pool (a judge that is the base model re-uses its engine)."""

from __future__ import annotations

from collections.abc import Callable

from star1.config import ConfigError, Star1Config
from star1.evals.engines import EnginePool
from star1.evals.run import EvalResult, run_eval
from star1.manifest import read_manifest
from star1.store import Store
from star1.train.layout import RunLayout


def finetuned_path(cfg: Star1Config, store: Store) -> str | None:
    """`store:<folder>` of the fine-tuned model when a complete `train` run wrote a model folder there."""
    step = cfg.eval.pipeline
    if step is None:
        return None
    if step.finetuned:
        folder = step.finetuned.strip("/")
        stage = folder.rsplit("/", 1)[0] if "/" in folder else folder
    elif cfg.train is not None:  # the model of this config's own training run
        layout = RunLayout(cfg.train.run_name or cfg.run_name)
        folder, stage = layout.model, layout.stage
    else:
        return None
    m = read_manifest(store, stage)
    if m is None or m.status != "complete" or not store.exists(f"{folder}/config.json"):
        return None
    return f"store:{folder}"


def evaluate_pipeline_models(
    cfg: Star1Config, store: Store, force: bool = False, log: Callable[[str], None] = print
) -> list[EvalResult]:
    if cfg.eval.model is None:
        raise ConfigError("eval.pipeline is set but eval.model (the base model) is not")
    base = cfg.eval.model
    runs = [("base", base)]
    tuned = finetuned_path(cfg, store)
    if tuned:
        runs.append(("finetuned", base.model_copy(update={"path": tuned, "name": f"{base.label}-sft"})))
    else:
        log("eval: no complete `train` output in the store yet; evaluating the base model only")
    pool = EnginePool(store, cfg.eval.chunk_size)
    try:
        return [run_eval(cfg, store, model, name, force, pool, log) for name, model in runs]
    finally:
        pool.close()
