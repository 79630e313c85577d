"""The model-driven stages (paper §2.2–2.4): classify → generate → score → select, over the store.

Each stage reads its upstream artifact, skips itself when its manifest is current, runs its task over the
rows (Ray actor pool or in-process), and writes `<stage>/data.parquet`, `<stage>/rejects.parquet` and then
`<stage>/manifest.json` with `in = out + rejected` by reason and token usage/cost for its role.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from star1.config import Star1Config
from star1.manifest import Manifest
from star1.schemas import BENIGN_SCORED, CANDIDATE, LABELLED, REJECT, SCORED, to_table
from star1.stage_run import StageRun, upstream
from star1.stages.llm_runner import STAT_FIELDS, run_task
from star1.stages.select_rows import composition, diversity_prune, split_by_score
from star1.stages.tasks import TASKS
from star1.store import Store

ALGORITHM = "curate/1"
# stage -> (input artifact, output schema)
MODEL_STAGES: dict[str, tuple[str, pa.Schema]] = {
    "classify": ("collect/pool.parquet", LABELLED),
    "generate": ("classify/data.parquet", CANDIDATE),
    "score": ("generate/data.parquet", SCORED),
    # the benign add-on (paper §4.3): harmless look-alikes of the selected prompts, answered without policies
    "benign_rewrite": ("select/data.parquet", LABELLED),
    "benign_generate": ("benign_rewrite/data.parquet", CANDIDATE),
    "benign_score": ("benign_generate/data.parquet", BENIGN_SCORED),
}
LogFn = Callable[[str], None]
# Settings that change how fast a stage runs but never what it outputs: kept out of the fingerprint.
EXECUTION_ONLY = {
    "api_key_env",
    "api_key_file",
    "timeout_s",
    "max_attempts",
    "concurrency",
    "rpm",
    "tpm",
    "rps",
    "price_in_per_mtok",
    "price_out_per_mtok",
}


@dataclass
class StageResult:
    stage: str
    skipped: bool
    manifest: Manifest
    store: Store

    def url(self, name: str = "data") -> str:
        return self.store.url(f"{self.stage}/{name}.parquet")


def outputs(stage: str) -> dict[str, str]:
    return {"data": f"{stage}/data.parquet", "rejects": f"{stage}/rejects.parquet"}


def _reject_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": r["id"],
            "source": r["source"],
            "source_row": r.get("source_row"),
            "prompt": r.get("prompt"),
            "rule": r["_reject"],
            "detail": r.get("_detail", ""),
            "source_meta": r.get("source_meta"),
        }
        for r in rows
    ]


def _finish(
    run: StageRun,
    kept: list[dict],
    rejects: list[dict],
    schema: pa.Schema,
    n_in: int,
    usage: dict,
    timings: dict,
    extra_counts: dict | None = None,
) -> Manifest:
    if n_in != len(kept) + len(rejects):
        raise AssertionError(f"{run.stage}: {n_in} rows in but {len(kept)} out + {len(rejects)} rejected")
    store, out = run.store, outputs(run.stage)
    store.write_table(out["data"], to_table(kept, schema))
    store.write_table(out["rejects"], to_table(rejects, REJECT))
    reasons = Counter(r["rule"] for r in rejects)
    counts = {"in": n_in, "out": len(kept), "rejected": dict(sorted(reasons.items())), **(extra_counts or {})}
    return run.complete({k: {"uri": store.url(v)} for k, v in out.items()}, counts, timings, usage)


def run_model_stage(
    stage: str, cfg: Star1Config, store: Store, force: bool = False, use_ray: bool = True, log: LogFn = print
) -> StageResult:
    """One of MODEL_STAGES: classify, generate, score, or a benign add-on stage."""
    input_rel, schema = MODEL_STAGES[stage]
    task = TASKS[stage]()
    role_cfg = cfg.llm.role(task.role)
    inputs = [upstream(store, input_rel)]
    exclude = EXECUTION_ONLY | ({"base_url"} if role_cfg.endpoint_id else set())
    params = {
        "role": task.role,
        "endpoint": role_cfg.model_dump(mode="json", exclude=exclude),
        "template_hash": task.template_hash(),
    }
    with StageRun(store, stage, ALGORITHM, params, inputs, list(outputs(stage).values()), force) as run:
        if run.previous is not None:
            log(f"{stage}: up to date ({run.url})")
            return StageResult(stage, True, run.previous, store)
        return _run_model_stage(run, input_rel, schema, task, role_cfg, cfg, use_ray, log)


def _run_model_stage(
    run: StageRun,
    input_rel: str,
    schema: pa.Schema,
    task: Any,
    role_cfg: Any,
    cfg: Star1Config,
    use_ray: bool,
    log: LogFn,
) -> StageResult:
    stage, store = run.stage, run.store
    rows = store.read_table(input_rel).to_pylist()
    if use_ray:
        from star1.ray_utils import init_ray

        init_ray(cfg.ray)
    t0 = time.perf_counter()
    store_opts = {"endpoint_url": cfg.store.endpoint_url, "region": cfg.store.region}
    done = run_task(
        task,
        rows,
        role_cfg,
        store,
        store_opts,
        use_ray,
        cfg.curate.actors,
        cfg.curate.batch_size,
        cfg.curate.actor_start_wait_s,
    )
    elapsed = round(time.perf_counter() - t0, 3)
    usage_role = {f[1:]: sum(r.get(f, 0) for r in done) for f in STAT_FIELDS}
    usage_role["cost_usd"] = round(usage_role["cost_usd"], 6)
    usage = {task.role: {"model": role_cfg.model, **usage_role}}
    for r in done:
        for f in STAT_FIELDS:
            r.pop(f, None)
    kept = [r for r in done if not r.get("_reject")]
    rejects = _reject_rows([r for r in done if r.get("_reject")])
    manifest = _finish(run, kept, rejects, schema, len(rows), usage, {"calls": elapsed})
    log(
        f"{stage}: {len(rows)} in → {len(kept)} out, {len(rejects)} rejected "
        f"{dict(manifest.counts['rejected'])}; {usage_role['requests']} requests, "
        f"{usage_role['cache_hits']} cached, "
        f"{usage_role['prompt_tokens']}+{usage_role['completion_tokens']} tokens"
    )
    return StageResult(stage, False, manifest, store)


def run_select(cfg: Star1Config, store: Store, force: bool = False, log: LogFn = print) -> StageResult:
    """Keep all-top-score rows without 'Other', then diversity-prune to `curate.select_n`."""
    stage, input_rel = "select", "score/data.parquet"
    inputs = [upstream(store, input_rel)]
    params = {"threshold": cfg.curate.select_threshold, "n": cfg.curate.select_n}
    with StageRun(store, stage, ALGORITHM, params, inputs, list(outputs(stage).values()), force) as run:
        if run.previous is not None:
            log(f"{stage}: up to date")
            return StageResult(stage, True, run.previous, store)
        return _select(run, cfg, input_rel, log)


def _select(run: StageRun, cfg: Star1Config, input_rel: str, log: LogFn) -> StageResult:
    stage, store = run.stage, run.store
    rows = store.read_table(input_rel).to_pylist()
    t0 = time.perf_counter()
    good, low = split_by_score(rows, cfg.curate.select_threshold)
    kept, pruned = diversity_prune(good, cfg.curate.select_n)
    rejects = [{**r, "_reject": why, "_detail": detail} for r, why, detail in low]
    rejects += [
        {**r, "_reject": "pruned_for_diversity", "_detail": f"removed at step {i + 1}"}
        for i, r in enumerate(pruned)
    ]
    extra = {"composition": composition(kept), "eligible": len(good)}
    manifest = _finish(
        run,
        kept,
        _reject_rows(rejects),
        SCORED,
        len(rows),
        {},
        {"select": round(time.perf_counter() - t0, 3)},
        extra,
    )
    log(f"select: {len(rows)} scored → {len(good)} eligible → {len(kept)} selected")
    return StageResult(stage, False, manifest, store)
