"""The collection stage: sources → one deduplicated, decontaminated prompt pool (paper §2.1).

Outputs under `collect/` in the store: `pool.parquet`, `rejects.parquet` (every dropped row with its rule and
what it collided with), `eval_prompts.parquet` (the decontamination set), then `manifest.json` last.
Work survives a kill: each loaded source and each embedding chunk is cached in the store by content key.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from star1.config import CollectConfig, ConfigError, SourceSpec, Star1Config
from star1.embeddings import effective_dtype, embed_texts
from star1.manifest import (
    Manifest,
    manifest_path,
    stable_hash,
)
from star1.schemas import PROMPT, REJECT, to_table
from star1.sources import registry
from star1.sources.load import LoadedSource, load_source, source_input_hash
from star1.stage_run import StageRun
from star1.stages.dedup_pool import dedup_pool
from star1.store import Store

STAGE = "collect"
ALGORITHM = "collect/1"
LOAD_VERSION = "load/1"
OUTPUTS = {"pool": f"{STAGE}/pool.parquet", "rejects": f"{STAGE}/rejects.parquet",
           "eval_prompts": f"{STAGE}/eval_prompts.parquet"}  # fmt: skip

LogFn = Callable[[str], None]
ProgressFn = Callable[[str, int, int], None]


@dataclass
class CollectResult:
    skipped: bool
    manifest: Manifest
    store: Store

    def url(self, name: str) -> str:
        return self.store.url(OUTPUTS[name])


def resolve_specs(ccfg: CollectConfig, base_dir: str) -> tuple[list[SourceSpec], list[SourceSpec]]:
    reg = ccfg.registry
    if reg is not None and "://" not in reg:
        from pathlib import Path

        reg = str(Path(base_dir) / reg) if not Path(reg).is_absolute() else reg
    sources = registry.resolve(ccfg.sources, "sources", reg)
    evals = registry.resolve(ccfg.eval_sets, "eval_sets", reg)
    clash = {s.name for s in sources} & {e.name for e in evals}
    if clash:
        raise ConfigError(f"collect: names used both as source and eval set: {sorted(clash)}")
    return sources, evals


def stage_params(ccfg: CollectConfig, sources: list[SourceSpec], evals: list[SourceSpec]) -> dict[str, Any]:
    """What decides the output. Execution knobs (actors, batch and block sizes) are left out on purpose."""
    p = ccfg.model_dump(mode="json", exclude={"sources", "eval_sets", "registry", "block_rows", "embedding"})
    p["embedding"] = {
        "model": ccfg.embedding.model,
        "dtype": effective_dtype(ccfg.embedding),
        "max_seq_length": ccfg.embedding.max_seq_length,
    }
    p["sources"] = [s.model_dump(mode="json") for s in sources]  # order is part of the params
    p["eval_sets"] = [e.model_dump(mode="json") for e in evals]
    return p


# --------------------------------------------------------------------------- loading with a cache


def _cache_dir(spec: SourceSpec, inputs: list[dict[str, Any]], max_chars: int) -> str:
    key = stable_hash(
        {
            "spec": spec.model_dump(mode="json"),
            "inputs": [i["sha256"] for i in inputs],
            "max_chars": max_chars,
            "v": LOAD_VERSION,
        }
    )
    return f"{STAGE}/_work/sources/{spec.name}-{key[:16]}"


def _load_cached(
    spec: SourceSpec, folder: str, store: Store, base_dir: str, max_chars: int, store_opts: dict[str, Any]
) -> LoadedSource:
    """Load a source, reusing (or writing) its cached copy in the store; `meta.json` marks it complete."""
    if store.exists(f"{folder}/meta.json"):
        meta = store.read_json(f"{folder}/meta.json")
        return LoadedSource(
            spec.name,
            store.read_table(f"{folder}/rows.parquet").to_pylist(),
            store.read_table(f"{folder}/rejects.parquet").to_pylist(),
            meta["inputs"],
            meta["read"],
        )
    out = load_source(spec, base_dir, max_chars, store_opts)
    store.write_table(f"{folder}/rows.parquet", to_table(out.rows, PROMPT))
    store.write_table(f"{folder}/rejects.parquet", to_table(out.rejects, REJECT))
    store.write_json(f"{folder}/meta.json", {"inputs": out.inputs, "read": out.read})
    return out


def _load_remote(
    spec_json: dict, folder: str, store_uri: str, store_opts: dict, base_dir: str, max_chars: int
) -> str:
    spec = SourceSpec.model_validate(spec_json)
    _load_cached(spec, folder, Store.from_uri(store_uri, **store_opts), base_dir, max_chars, store_opts)
    return folder


def load_all(
    specs: list[SourceSpec],
    inputs: dict[str, list[dict]],
    ccfg: CollectConfig,
    store: Store,
    base_dir: str,
    store_opts: dict[str, Any],
    use_ray: bool,
) -> list[LoadedSource]:
    folders = [_cache_dir(s, inputs[s.name], ccfg.max_prompt_chars) for s in specs]
    todo = [(s, f) for s, f in zip(specs, folders, strict=True) if not store.exists(f"{f}/meta.json")]
    if todo and use_ray:
        import ray

        task = ray.remote(num_cpus=0.5, max_retries=2)(_load_remote)
        ray.get(
            [
                task.remote(
                    s.model_dump(mode="json"), f, store.uri, store_opts, base_dir, ccfg.max_prompt_chars
                )
                for s, f in todo
            ]
        )
    return [
        _load_cached(s, f, store, base_dir, ccfg.max_prompt_chars, store_opts)
        for s, f in zip(specs, folders, strict=True)
    ]


# --------------------------------------------------------------------------- the stage


def run_collect(
    cfg: Star1Config,
    store: Store,
    force: bool = False,
    use_ray: bool = True,
    log: LogFn = print,
    progress: ProgressFn | None = None,
) -> CollectResult:
    if cfg.collect is None:
        raise ConfigError("config has no 'collect' section")
    ccfg, base_dir = cfg.collect, cfg.base_dir
    store_opts = {"endpoint_url": cfg.store.endpoint_url, "region": cfg.store.region}
    t_start = time.perf_counter()

    sources, evals = resolve_specs(ccfg, base_dir)
    params = stage_params(ccfg, sources, evals)
    inputs = {s.name: source_input_hash(s, base_dir, store_opts) for s in [*sources, *evals]}
    flat_inputs = [i for s in [*sources, *evals] for i in inputs[s.name]]
    with StageRun(store, STAGE, ALGORITHM, params, flat_inputs, list(OUTPUTS.values()), force) as run:
        if run.previous is not None:
            log(f"collect: up to date ({run.url}); use --force to redo")
            return CollectResult(True, run.previous, store)
        return _collect(run, cfg, sources, evals, inputs, store_opts, use_ray, log, progress, t_start)


def _collect(
    run: StageRun,
    cfg: Star1Config,
    sources: list,
    evals: list,
    inputs: dict,
    store_opts: dict,
    use_ray: bool,
    log: LogFn,
    progress: ProgressFn | None,
    t_start: float,
) -> CollectResult:
    ccfg, store, base_dir = cfg.collect, run.store, cfg.base_dir
    assert ccfg is not None
    timings: dict[str, float] = {}
    if use_ray:
        from star1.ray_utils import init_ray

        log(f"collect: running on {init_ray(cfg.ray)}")

    t0 = time.perf_counter()
    loaded = load_all(sources, inputs, ccfg, store, base_dir, store_opts, use_ray)
    loaded_evals = load_all(evals, inputs, ccfg, store, base_dir, store_opts, use_ray)
    timings["load"] = round(time.perf_counter() - t0, 3)
    for src in loaded:
        log(f"loaded {src.name}: {src.read} rows, {len(src.rows)} valid, {len(src.rejects)} rejected")

    usage = {
        "embedding_model": ccfg.embedding.model,
        "embedding_dtype": effective_dtype(ccfg.embedding),
        "texts_embedded": 0,
        "texts_from_cache": 0,
    }

    def embed(texts: list[str]) -> Any:
        emb, stats = embed_texts(
            texts,
            ccfg.embedding,
            store,
            store_opts,
            use_ray,
            progress=(lambda d, n: progress("embedding chunks", d, n)) if progress else None,
        )
        usage["texts_embedded"] += stats["computed"]
        usage["texts_from_cache"] += stats["cached"]
        return emb

    result = dedup_pool(loaded, sources, loaded_evals, ccfg, embed, log)
    timings.update(result.timings)
    usage["embedding_search"] = result.embedding_search

    rejects = [r for s in loaded for r in s.rejects] + result.rejects
    order = {s.name: i for i, s in enumerate(sources)}
    rejects.sort(key=lambda r: (order[r["source"]], r["source_row"] if r["source_row"] is not None else -1))
    counts = _counts(loaded, loaded_evals, result.kept, rejects)

    pool_t, rej_t = to_table(result.kept, PROMPT), to_table(rejects, REJECT)
    eval_t = to_table([r for e in loaded_evals for r in e.rows], PROMPT)
    t0 = time.perf_counter()
    store.write_table(OUTPUTS["pool"], pool_t)
    store.write_table(OUTPUTS["rejects"], rej_t)
    store.write_table(OUTPUTS["eval_prompts"], eval_t)
    timings["write"] = round(time.perf_counter() - t0, 3)
    timings["total"] = round(time.perf_counter() - t_start, 3)

    outputs = {
        k: {"uri": store.url(v), "rows": t.num_rows}
        for (k, v), t in zip(OUTPUTS.items(), (pool_t, rej_t, eval_t), strict=True)
    }
    manifest = run.complete(outputs, counts, timings, usage)
    log(
        f"collect: {counts['total']['read']} rows in → {counts['total']['kept']} kept, "
        f"{counts['total']['rejected']} rejected ({store.url(OUTPUTS['pool'])})"
    )
    return CollectResult(False, manifest, store)


def _counts(
    loaded: list[LoadedSource], evals: list[LoadedSource], kept: list[dict], rejects: list[dict]
) -> dict:
    kept_by = Counter(r["source"] for r in kept)
    rej_by: dict[str, Counter] = {s.name: Counter() for s in loaded}
    for r in rejects:
        rej_by[r["source"]][r["rule"]] += 1
    per_source = {}
    for s in loaded:
        n_rej = sum(rej_by[s.name].values())
        if s.read != kept_by[s.name] + n_rej:
            raise AssertionError(
                f"accounting broken for {s.name}: read {s.read} != kept {kept_by[s.name]} + rejected {n_rej}"
            )
        per_source[s.name] = {
            "read": s.read,
            "kept": kept_by[s.name],
            "rejected": dict(sorted(rej_by[s.name].items())),
        }
    rules = Counter(r["rule"] for r in rejects)
    total = {"read": sum(s.read for s in loaded), "kept": len(kept), "rejected": len(rejects)}
    return {
        "total": total,
        "sources": per_source,
        "rules": dict(sorted(rules.items())),
        "eval_sets": {e.name: {"read": e.read, "prompts": len(e.rows)} for e in evals},
    }


def explain(store: Store, prompt_id: str) -> dict[str, Any]:
    """Why a row is in the pool or not: its reject record (rule, collision) and the rows it knocked out."""
    import pyarrow.compute as pc

    def rows(name: str, col: str, value: str) -> list[dict]:
        t = store.read_table(OUTPUTS[name])
        return t.filter(pc.equal(t[col], pa.scalar(value))).to_pylist()

    if not store.exists(manifest_path(STAGE)):
        raise FileNotFoundError(f"no finished collect run in {store.uri}")
    found: dict[str, Any] = {
        "id": prompt_id,
        "kept": rows("pool", "id", prompt_id),
        "rejected": rows("rejects", "id", prompt_id),
        "eval": rows("eval_prompts", "id", prompt_id),
        "knocked_out": rows("rejects", "collided_with_id", prompt_id),
    }
    for rec in found["rejected"]:
        other = rec.get("collided_with_id")
        if other:
            rec["collided_with"] = (
                rows("pool", "id", other)
                or rows("rejects", "id", other)
                or rows("eval_prompts", "id", other)
                or [None]
            )[0]
    return found
