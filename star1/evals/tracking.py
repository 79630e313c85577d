"""An eval run in the experiment tracker: one tracker run per evaluation that did work (an up-to-date rerun
logs nothing; a killed one is logged when its resumed run ends). Every benchmark's headline value and its
interval (the scorecard's), the averages, the model hash, engine and profile as params, and the run's files
as links (URIs, nothing copied). The tracker run's ids stay in `eval/<run>/tracking.json`, so a scorecard
drawn later links itself into the same tracker run (`star1.report.tracking.link_scorecard`)."""

from __future__ import annotations

import math
from typing import Any

from star1.config import Star1Config
from star1.evals.results import RunSummary, confidence_interval, samples_path, summary_path
from star1.store import Store
from star1.tracking import open_run
from star1.tracking.params import tracker_key
from star1.tracking.state import STATE_FILE


def metric_key(benchmark: str, metric: str) -> str:
    """`xstest/refusal_rate`: the tracker key of a benchmark's headline value."""
    return tracker_key(benchmark, metric)


def eval_metrics(summary: RunSummary, confidence: float) -> dict[str, float]:
    """Headline values (percent) with `.ci_low` / `.ci_high`, per benchmark, and the paper's averages;
    a benchmark without a value (NaN) is left out."""
    out: dict[str, float] = {}
    for name, b in summary.benchmarks.items():
        if math.isnan(b.value):
            continue
        key = metric_key(name, b.metric)
        (lo, hi), _ = confidence_interval(b, confidence)
        out.update({key: b.value, f"{key}.ci_low": lo, f"{key}.ci_high": hi})
    for avg in ("avg_safety", "avg_reasoning"):
        if isinstance(summary.extra.get(avg), int | float):
            out[avg] = float(summary.extra[avg])
    return out


def forget(store: Store, run_name: str) -> None:
    """An evaluation is about to redo the run: its results get a new tracker run."""
    store.delete(f"eval/{run_name}/{STATE_FILE}")


def log_eval(
    cfg: Star1Config, store: Store, summary: RunSummary, params: dict[str, Any], status: str
) -> dict[str, Any]:
    """Log one finished eval run (`status`: complete / incomplete); the tracking summary for its manifest."""
    root = f"eval/{summary.run_name}"
    model = params.get("model", {})
    with open_run(cfg, kind="eval", name=summary.run_name, store=store, folder=root) as run:
        run.log_params(
            {
                "model": summary.model,
                "model_hash": summary.model_hash,
                "engine": summary.engine,
                "backend": model.get("backend"),
                "profile": params.get("profile"),
                "samples_per_item": params.get("samples_per_item"),
                "seed": params.get("seed"),
                "limit": params.get("limit"),
                "benchmarks": sorted(summary.benchmarks),
                "confidence": cfg.report.confidence,
            }
        )
        run.log_metrics(eval_metrics(summary, cfg.report.confidence), step=0)
        run.set_tags(
            {"status": status, "model_hash": summary.model_hash, "git_sha": summary.git_sha}
            | {f"version.{n}": ",".join(f"{k}={v}" for k, v in sorted(b.version.items()))
               for n, b in summary.benchmarks.items()}
        )  # fmt: skip
        run.log_link("summary", store.url(f"{root}/{summary_path()}"))
        run.log_link("manifest", store.url(f"{root}/manifest.json"))
        for name in summary.benchmarks:
            run.log_link(f"samples.{name}", store.url(f"{root}/{samples_path(name)}"))
        result = run.end("FINISHED" if status == "complete" else "FAILED")
    return result
