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
from star1.schemas import BENIGN_SCORED, CANDIDATE, FAILED, LABELLED, REJECT, SCORED, to_table
from star1.stage_run import StageFailed, StageIncomplete, StageRun, describe_failures, upstream
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
    "burst",
    "limit_window",
    "adaptive_limits",
    "mode",
    "batch",
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


def write_outputs(run: StageRun, kept: list[dict], rejects: list[dict], schema: pa.Schema) -> None:
    out = outputs(run.stage)
    run.store.write_table(out["data"], to_table(kept, schema))
    run.store.write_table(out["rejects"], to_table(rejects, REJECT))


def _output_uris(run: StageRun, failed: bool = False) -> dict[str, dict[str, Any]]:
    out = {k: {"uri": run.store.url(v)} for k, v in outputs(run.stage).items()}
    if failed:
        out["failed"] = {"uri": run.store.url(f"{run.stage}/failed.parquet")}
    return out


def _counts(n_in: int, kept: list[dict], rejects: list[dict]) -> dict[str, Any]:
    reasons = Counter(r["rule"] for r in rejects)
    return {"in": n_in, "out": len(kept), "rejected": dict(sorted(reasons.items()))}


def _finish(
    run: StageRun,
    kept: list[dict],
    rejects: list[dict],
    schema: pa.Schema,
    n_in: int,
    usage: dict,
    timings: dict,
    extra_counts: dict | None = None,
    notes: list[str] | None = None,
) -> Manifest:
    if n_in != len(kept) + len(rejects):
        raise AssertionError(f"{run.stage}: {n_in} rows in but {len(kept)} out + {len(rejects)} rejected")
    write_outputs(run, kept, rejects, schema)
    counts = {**_counts(n_in, kept, rejects), **(extra_counts or {})}
    return run.complete(_output_uris(run), counts, timings, usage, notes)


def run_model_stage(
    stage: str, cfg: Star1Config, store: Store, force: bool = False, use_ray: bool = True, log: LogFn = print
) -> StageResult:
    """One of MODEL_STAGES: classify, generate, score, or a benign add-on stage. Raises StageIncomplete when
    rows' calls failed transiently (nothing of theirs is rejected; a rerun retries only them) and StageFailed
    when the output is empty or too much of the input was rejected."""
    input_rel, schema = MODEL_STAGES[stage]
    options: dict[str, Any] = {"other": cfg.curate.other} if stage in ("classify", "generate") else {}
    if stage == "benign_score":
        options = {"threshold": cfg.curate.benign_threshold}
    task = TASKS[stage](options=options)
    role_cfg = cfg.llm.role(task.role)
    inputs = [upstream(store, input_rel)]
    exclude = EXECUTION_ONLY | ({"base_url"} if role_cfg.endpoint_id else set())
    params = {
        "role": task.role,
        "endpoint": role_cfg.model_dump(mode="json", exclude=exclude),
        "template_hash": task.template_hash(),
        **options,
    }
    with StageRun(store, stage, ALGORITHM, params, inputs, list(outputs(stage).values()), force) as run:
        if run.previous is not None:
            log(f"{stage}: up to date ({run.url})")
            return StageResult(stage, True, run.previous, store)
        return _run_model_stage(run, input_rel, schema, task, role_cfg, cfg, use_ray, log)


def _usage(done: list[dict[str, Any]], role: str, model: str) -> dict[str, Any]:
    """The role's usage, summed from the rows' own call statistics (which are then removed)."""
    u: dict[str, Any] = {f[1:]: sum(r.get(f, 0) for r in done) for f in STAT_FIELDS}
    u["cost_usd"] = round(u["cost_usd"], 6)
    formats = Counter(r["_format"] for r in done if r.get("_format"))
    if formats:
        u["structured_output"] = dict(sorted(formats.items()))
    for r in done:
        for f in (*STAT_FIELDS, "_format", "_fallbacks"):
            r.pop(f, None)
    return {role: {"model": model, **u}}


def _failed_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = ("id", "source", "source_row", "prompt")
    return [{**{k: r.get(k) for k in keep}, "reason": r["_failed"], "detail": r.get("_detail")} for r in rows]


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
    if use_ray and role_cfg.mode != "batch":
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
        cfg.curate.limiter_idle_exit_s,
        log,
    )
    elapsed = round(time.perf_counter() - t0, 3)
    notes = sorted({n for r in done for n in r.get("_fallbacks", [])})
    usage = _usage(done, task.role, role_cfg.model)
    u = usage[task.role]
    failed = [r for r in done if r.get("_failed")]
    accepted = bool(failed) and len(failed) <= cfg.curate.accept_failures * len(rows)
    if accepted:
        notes.append(f"{len(failed)} row(s) whose calls failed were accepted as rejects (--accept-failures)")
        for r in failed:
            r["_reject"] = r.pop("_failed")
        failed = []
    kept = [r for r in done if not r.get("_reject") and not r.get("_failed")]
    rejects = _reject_rows([r for r in done if r.get("_reject")])
    extra: dict[str, Any] = {}
    if schema is CANDIDATE:
        extra["reasoning_source"] = dict(Counter(r.get("reasoning_source") for r in kept))
    summary = (
        f"{stage}: {len(rows)} in → {len(kept)} out, {len(rejects)} rejected "
        f"{dict(sorted(Counter(r['rule'] for r in rejects).items()))}"
        + (f", {len(failed)} failed" if failed else "")
        + f"; {u['requests']} requests, {u['cache_hits']} cached, "
        f"{u['prompt_tokens']}+{u['completion_tokens']} tokens"
    )
    for note in notes:
        log(f"{stage}: note: {note}")
    if failed:
        by_reason = dict(sorted(Counter(r["_failed"] for r in failed).items()))
        store.write_table(f"{stage}/failed.parquet", to_table(_failed_rows(failed), FAILED))
        write_outputs(run, kept, rejects, schema)
        counts = {**_counts(len(rows), kept, rejects), "failed": by_reason, **extra}
        rerun = f"star1 {stage.replace('_', '-')}"
        run.incomplete(
            _output_uris(run, failed=True),
            counts,
            {"rows": len(failed), "by_reason": by_reason, "rerun": rerun},
            {"calls": elapsed},
            usage,
            notes,
        )
        log(summary)
        raise StageIncomplete(
            f"{stage} is incomplete: the calls of {len(failed)} of {len(rows)} rows failed "
            f"({describe_failures({'by_reason': by_reason})}). Rerun `{rerun}` (same config) to retry only "
            "those rows — every answered call comes from the cache — or add --accept-failures to record "
            "them as rejects. Downstream stages refuse this output until then."
        )
    if len(failed) == 0 and store.exists(f"{stage}/failed.parquet"):
        store.delete(f"{stage}/failed.parquet")
    why = _check(kept, rejects, len(rows), cfg.curate.max_reject_share)
    if why:
        write_outputs(run, kept, rejects, schema)
        run.failed(_output_uris(run), {**_counts(len(rows), kept, rejects), **extra}, why, None, usage, notes)
        log(summary)
        raise StageFailed(f"{stage} failed: {why}. Its outputs are kept for inspection under {run.url}")
    manifest = _finish(run, kept, rejects, schema, len(rows), usage, {"calls": elapsed}, extra, notes)
    log(summary)
    return StageResult(stage, False, manifest, store)


# rejects that are decisions of the recipe, not defects of a call: they do not count against
# `curate.max_reject_share` (an empty output still fails)
POLICY_REJECTS = {"other_category", "only_other", "benign_below_5"}


def _check(kept: list[dict], rejects: list[dict], n_in: int, max_share: float) -> str | None:
    """Why a model stage's result must not be used, or None."""
    if n_in and not kept:
        reasons = dict(Counter(r["rule"] for r in rejects).most_common(3))
        return f"no rows out of {n_in} (most common reject reasons: {reasons})"
    defects = [r for r in rejects if r["rule"] not in POLICY_REJECTS]
    if n_in and len(defects) / n_in > max_share:
        reasons = dict(Counter(r["rule"] for r in defects).most_common(3))
        return (
            f"{len(defects)} of {n_in} rows rejected ({len(defects) / n_in:.0%} > curate.max_reject_share "
            f"{max_share:.0%}; {reasons})"
        )
    return None


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
