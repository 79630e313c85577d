"""Comparisons and the nightly trend in the experiment tracker.

- Each comparison (`star1 compare`, `star1 nightly`) is one tracker run, `compare/<candidate>-vs-<baseline>`:
  its settings as params, per benchmark the candidate's and baseline's values, the paired delta and
  `regression/<benchmark>` (1 = a significant regression, else 0), the verdicts as tags.
- One trend run, `trend/<report folder>`, mirrors the history `star1 report --history` draws: point `k` of
  every metric is the k-th comparison of the history (oldest first), so each headline metric is one curve
  over the nights with its regressions beside it. It is brought up to date from the history after every
  comparison (a retried comparison adds no point). A comparison whose candidate is older than one already
  in the trend would have to go between two points: the trend then starts a new run from the history.
- A scorecard drawn later links itself into the tracker runs of the eval runs it shows.
"""

from __future__ import annotations

from typing import Any

from star1.config import Star1Config
from star1.manifest import read_manifest
from star1.report import history
from star1.report.compare import Comparison
from star1.store import Store
from star1.tracking import open_run
from star1.tracking.params import tracker_key
from star1.tracking.state import STATE_FILE


def trend_metrics(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """One comparison's history rows as trend points: `<bench>/<metric>` (the candidate's value) and
    `regression/<bench>` (1 or 0)."""
    out: dict[str, float | None] = {}
    for r in rows:
        out[tracker_key(r["benchmark"], r["metric"] or "value")] = r["candidate_value"]
        out[tracker_key("regression", r["benchmark"])] = 1.0 if r["verdict"] == "regression" else 0.0
    return out


def _ordered(store: Store, folder: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """The history as `report --history` orders it: (comparison id, its rows), oldest first."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for r in history.read(store, folder).to_pylist():
        rows.setdefault(r["comparison_id"], []).append(r)
    return [(e.id, rows[e.id]) for e in history.view(history.read(store, folder)).entries]


def sync_trend(cfg: Star1Config, store: Store) -> dict[str, Any]:
    """Bring the trend run up to date with the history; its tracking summary."""
    folder = cfg.report.folder
    entries = _ordered(store, folder)
    ids = [i for i, _ in entries]
    record = f"{folder}/tracking/trend.json"  # the comparison ids the trend run holds, in step order
    held = store.read_json(record) if store.exists(record) else {"generation": 0, "ids": []}
    generation = held["generation"] + (ids[: len(held["ids"])] != held["ids"])
    name = folder.strip("/").replace("/", "-") + ("" if generation == 0 else f"-{generation}")
    with open_run(
        cfg, kind="trend", name=name, store=store, folder=f"{folder}/tracking/trend/{generation}"
    ) as run:
        for step, (_, rows) in enumerate(entries, 1):
            run.log_metrics(trend_metrics(rows), step)  # steps the tracker holds already are left out
        last = entries[-1][1][0] if entries else {}
        run.set_tags({"comparisons": len(entries), "last_outcome": last.get("outcome"),
                      "last_candidate": last.get("candidate_run")})  # fmt: skip
        run.log_link("history", store.url(f"{folder}/history"))
        run.log_link("trend", store.url(f"{folder}/trend/trend.html"))
        summary = run.end()
    store.write_json(record, {"generation": generation, "ids": ids})
    return summary


def log_comparison(cfg: Star1Config, store: Store, c: Comparison, files: dict[str, str]) -> dict[str, Any]:
    """After the comparison is in the history: its own tracker run, then the trend run. `files`: name →
    URI of what was written (comparison JSON, Markdown, history part). Returns both tracking summaries."""
    ids = [i for i, _ in _ordered(store, cfg.report.folder)]
    step = ids.index(c.id) + 1 if c.id in ids else 0
    b, k = c.baseline, c.candidate
    name = f"{k.run_name}-vs-{b.run_name}"
    where = f"{cfg.report.folder}/tracking/compare/{c.id}"
    with open_run(cfg, kind="compare", name=name, store=store, folder=where) as run:
        run.log_params({"baseline": b.model_dump(mode="json"), "candidate": k.model_dump(mode="json"),
                        "settings": c.settings, "comparison_id": c.id})  # fmt: skip
        metrics: dict[str, float | None] = {}
        tags: dict[str, Any] = {
            "outcome": c.outcome,
            "exit_code": c.exit_code,
            "problems": "; ".join(c.problems),
        }
        for v in c.benchmarks:
            key = tracker_key(v.benchmark, v.metric)
            metrics[key] = v.candidate_value
            metrics[f"{key}.baseline"] = v.baseline_value
            metrics[f"{key}.delta"] = v.delta
            metrics[f"{key}.p_adjusted"] = v.p_adjusted
            metrics[tracker_key("regression", v.benchmark)] = float(v.verdict == "regression")
            tags[f"verdict.{tracker_key(v.benchmark)}"] = v.verdict
        run.log_metrics(metrics, step)
        run.set_tags({k_: v_ for k_, v_ in tags.items() if v_ != ""})
        for label, uri in files.items():
            run.log_link(label, uri)
        compared = run.end("FINISHED" if c.outcome != "incomparable" else "FAILED")
    return {"comparison": compared, "trend": sync_trend(cfg, store)}


def link_scorecard(cfg: Star1Config, store: Store, run_names: list[str], url: str) -> None:
    """Link a scorecard page into the tracker runs of the eval runs it shows (those in this store)."""
    for name in run_names:
        folder = f"eval/{name}"
        if not store.exists(f"{folder}/{STATE_FILE}"):
            continue
        m = read_manifest(store, folder)
        with open_run(cfg, kind="eval", name=name, store=store, folder=folder) as run:
            run.log_link("scorecard", url)
            run.end("FINISHED" if m is not None and m.status == "complete" else "FAILED")
