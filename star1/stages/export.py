"""Export: STAR-1-compatible records (`id, question, response, category, source, score`) as JSON and Parquet,
plus a dataset card with counts, score histograms, usage, config and lineage."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from star1.config import Star1Config
from star1.manifest import (
    Manifest,
    read_manifest,
)
from star1.stage_run import StageRun, upstream
from star1.stages.curate import ALGORITHM, LogFn, StageResult
from star1.stages.select_rows import SCORE_KEYS
from star1.stages.tasks import BENIGN_KEYS
from star1.store import table_to_parquet_bytes

STAGE = "export"
LINEAGE = ("collect", "classify", "generate", "score", "select", "benign_rewrite", "benign_generate",
           "benign_score")  # fmt: skip


def star1_record(r: dict[str, Any], score_field: str = "score") -> dict[str, Any]:
    return {
        "id": r["id"],
        "question": r["prompt"],
        "response": r["response"],
        "category": list(r["category"]),
        "source": r["source"],
        "score": dict(r[score_field]),
    }


def histogram(rows: list[dict[str, Any]], field: str, keys: tuple[str, ...]) -> dict[str, dict[int, int]]:
    return {k: dict(sorted(Counter(r[field][k] for r in rows).items())) for k in keys}


def _card(
    cfg: Star1Config,
    records: list[dict],
    benign: list[dict],
    scored: list[dict],
    manifests: dict[str, Manifest],
) -> str:
    src = Counter(r["source"] for r in records)
    cat = Counter(c for r in records for c in r["category"])
    usage: dict[str, dict[str, float]] = {}
    for m in manifests.values():
        for role, u in m.usage.items():
            if isinstance(u, dict):
                agg = usage.setdefault(role, Counter())
                for k, v in u.items():
                    if isinstance(v, int | float):
                        agg[k] += v
    lines = [
        f"# {cfg.run_name}: STAR-1-style safety reasoning data",
        "",
        f"{len(records)} policy-grounded reasoning samples"
        + (f" + {len(benign)} benign look-alikes" if benign else "")
        + ".",
        "",
        "Records: `id, question, response (<think>…</think> answer), category, source, score` "
        "(the released STAR-1 format).",
        "",
        "## By source",
        "",
        "| source | n |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in src.most_common()]
    lines += ["", "## By category (multi-label)", "", "| category | n |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in cat.most_common()]
    lines += [
        "",
        f"## Judge scores over all {len(scored)} scored candidates",
        "",
        "| criterion | histogram |",
        "|---|---|",
    ]
    lines += [f"| {k} | {json.dumps(h)} |" for k, h in histogram(scored, "score", SCORE_KEYS).items()]
    lines += [
        "",
        "## Model usage",
        "",
        "| role | requests | cache hits | tokens in | tokens out | cost USD |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {role} | {int(u['requests'])} | {int(u['cache_hits'])} | {int(u['prompt_tokens'])} | "
        f"{int(u['completion_tokens'])} | {u['cost_usd']:.4f} |"
        for role, u in usage.items()
    ]
    lines += ["", "## Lineage", "", "| stage | in | out | rejected | fingerprint |", "|---|---|---|---|---|"]
    for stage, m in manifests.items():
        c = m.counts
        n_in = c.get("in", c.get("total", {}).get("read", ""))
        n_out = c.get("out", c.get("total", {}).get("kept", ""))
        rej = c.get("rejected") if isinstance(c.get("rejected"), dict) else c.get("rules", {})
        lines.append(f"| {stage} | {n_in} | {n_out} | {json.dumps(rej)} | `{m.fingerprint[:16]}` |")
    lines += [
        "",
        "## Config",
        "",
        "```json",
        json.dumps(cfg.model_dump(mode="json", exclude={"base_dir"}), indent=2, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines)


def run_export(
    cfg: Star1Config, store: Any, force: bool = False, log: Callable[[str], None] = print
) -> StageResult:
    inputs = [upstream(store, "select/data.parquet"), upstream(store, "score/data.parquet")]
    if cfg.curate.benign:
        inputs.append(upstream(store, "benign_score/data.parquet"))
    params = {"benign": cfg.curate.benign, "run_name": cfg.run_name}
    files = {"json": f"{STAGE}/star1.json", "parquet": f"{STAGE}/star1.parquet", "card": f"{STAGE}/README.md"}
    if cfg.curate.benign:
        files.update({"benign_json": f"{STAGE}/benign.json", "benign_parquet": f"{STAGE}/benign.parquet"})
    with StageRun(store, STAGE, ALGORITHM, params, inputs, list(files.values()), force) as run:
        if run.previous is not None:
            log("export: up to date")
            return StageResult(STAGE, True, run.previous, store)
        return _export(run, cfg, files, log)


def _export(run: StageRun, cfg: Star1Config, files: dict[str, str], log: LogFn) -> StageResult:
    store = run.store
    records = [star1_record(r) for r in store.read_table("select/data.parquet").to_pylist()]
    scored = store.read_table("score/data.parquet").to_pylist()
    benign = (
        [star1_record(r, "benign_score") for r in store.read_table("benign_score/data.parquet").to_pylist()]
        if cfg.curate.benign
        else []
    )
    manifests = {s: m for s in LINEAGE if (m := read_manifest(store, s)) is not None}
    for stem, recs in (("star1", records), ("benign", benign)):
        if stem == "benign" and not cfg.curate.benign:
            continue
        store.write_bytes(f"{STAGE}/{stem}.json", json.dumps(recs, ensure_ascii=False, indent=1).encode())
        store.write_bytes(f"{STAGE}/{stem}.parquet", table_to_parquet_bytes(pa.Table.from_pylist(recs)))
    store.write_bytes(files["card"], _card(cfg, records, benign, scored, manifests).encode())
    counts = {
        "in": len(records) + len(benign),
        "out": len(records) + len(benign),
        "rejected": {},
        "star1": len(records),
        "benign": len(benign),
        "by_source": dict(Counter(r["source"] for r in records)),
        "score_histogram": histogram(scored, "score", SCORE_KEYS),
        "benign_histogram": histogram(benign, "score", BENIGN_KEYS) if benign else {},
    }
    lineage = {"lineage": {s: m.fingerprint for s, m in manifests.items()}}
    manifest = run.complete({k: {"uri": store.url(v)} for k, v in files.items()}, counts, usage=lineage)
    log(
        f"export: {len(records)} samples"
        + (f" + {len(benign)} benign" if benign else "")
        + f" → {store.url(files['json'])}; card {store.url(files['card'])}"
    )
    return StageResult(STAGE, False, manifest, store)
