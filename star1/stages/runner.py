"""Run data stages in order, each skipped when current; the local model server, when a role uses it, runs
around the stages that call a model. Knows the data stages only: `star1.pipeline` adds training and eval."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from star1.config import Star1Config
from star1.stages.collect import run_collect
from star1.stages.curate import run_model_stage, run_select
from star1.stages.export import run_export
from star1.store import Store

CURATE = ("classify", "generate", "score")
NO_MODEL = ("collect", "select", "export")  # stages that need no model server
BENIGN = ("benign_rewrite", "benign_generate", "benign_score")


def data_stage_names(cfg: Star1Config) -> list[str]:
    """collect (when configured) → classify → generate → score → select → benign (when enabled) → export."""
    names = (["collect"] if cfg.collect is not None else []) + [*CURATE, "select"]
    names += [*BENIGN] if cfg.curate.benign else []
    return [*names, "export"]


def run_stage(
    name: str,
    cfg: Star1Config,
    store: Store,
    force: bool,
    use_ray: bool,
    log: Callable[[str], None],
    progress: Any = None,
) -> Any:
    if name == "collect":
        return run_collect(cfg, store, force=force, use_ray=use_ray, log=log, progress=progress)
    if name == "select":
        return run_select(cfg, store, force=force, log=log)
    if name == "export":
        return run_export(cfg, store, force=force, log=log)
    return run_model_stage(name, cfg, store, force=force, use_ray=use_ray, log=log)


def run_stages(
    names: list[str],
    cfg: Star1Config,
    store: Store,
    force: bool = False,
    use_ray: bool = True,
    log: Callable[[str], None] = print,
    progress: Any = None,
) -> dict[str, Any]:
    """Run data stages in order; the local model server, if used, runs through the model stages only. The
    stages that did work are logged as one data run in the experiment tracker (`stages/tracking.py`)."""
    from star1.stages.tracking import log_data_run, snapshot

    before = snapshot(store, names)
    try:
        results = _run_in_order(names, cfg, store, force, use_ray, log, progress)
    except BaseException as e:
        with contextlib.suppress(OSError, ValueError):  # the stage's own error is the one to show
            log_data_run(cfg, store, names, before, error=f"{type(e).__name__}: {e}")
        raise
    log_data_run(cfg, store, names, before)
    return results


def _run_in_order(
    names: list[str],
    cfg: Star1Config,
    store: Store,
    force: bool,
    use_ray: bool,
    log: Callable[[str], None],
    progress: Any,
) -> dict[str, Any]:
    from star1.llm.local_server import serving

    results: dict[str, Any] = {}
    model = [i for i, n in enumerate(names) if n not in NO_MODEL]
    first, last = (model[0], model[-1]) if model else (len(names), len(names) - 1)
    for name in names[:first]:
        results[name] = run_stage(name, cfg, store, force, use_ray, log, progress)
    if model:
        with serving(cfg) as live:
            for name in names[first : last + 1]:
                results[name] = run_stage(name, live, store, force, use_ray, log, progress)
    for name in names[last + 1 :]:
        results[name] = run_stage(name, cfg, store, force, use_ray, log, progress)
    return results
