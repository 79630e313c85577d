"""What the nightly regression job leaves in the store, besides tonight's eval run and the history:

    <report folder>/nightly/<run name>/nightly.json        the verdict: outcome, exit code, what regressed
    <report folder>/nightly/<run name>/comparison.json     the whole comparison (`star1 compare --json`)
    <report folder>/nightly/<run name>/comparison.md       its Markdown table

`nightly.json` is written whatever happened — a config error, an incomplete eval or an infrastructure failure
too, as far as the store can still be written — so the bucket says which of them a night was.
"""

from __future__ import annotations

import time
from typing import Any

from star1.config.report import ReportConfig
from star1.exits import Exit, meaning
from star1.report import history, markdown
from star1.report.compare import Comparison
from star1.store import Store

OUTCOMES = {
    Exit.CONFIG: "config_error",
    Exit.INCOMPLETE: "incomplete",
    Exit.INFRA: "infrastructure",
}


def folder(cfg: ReportConfig, run_name: str) -> str:
    return f"{cfg.folder}/nightly/{run_name}"


def outcome_of(code: int) -> str:
    """The nightly's outcome for an exit code that is not a verdict (those say ok / regression /…)."""
    return OUTCOMES.get(code, "error")  # type: ignore[call-overload]


def write_status(store: Store, cfg: ReportConfig, status: dict[str, Any]) -> str:
    """`nightly.json` for one night; returns its URL."""
    code = int(status["exit_code"])
    record = {**status, "meaning": meaning(code), "finished_at": time.time()}
    path = f"{folder(cfg, status['run_name'])}/nightly.json"
    store.write_json(path, record)
    return store.url(path)


def write_verdict(store: Store, cfg: ReportConfig, c: Comparison, date: str) -> dict[str, Any]:
    """The comparison's files, its rows in the history and the status; returns the status written."""
    where = folder(cfg, c.candidate.run_name)
    store.write_json(f"{where}/comparison.json", c.model_dump(mode="json"))
    store.write_bytes(f"{where}/comparison.md", markdown.comparison(c).encode())
    history_url = history.append(store, c, cfg.folder)
    trend, trend_error = _trend(store, cfg)
    status = {
        "run_name": c.candidate.run_name,
        "date": date,
        "baseline": c.baseline.run_name,
        "baseline_uri": c.baseline.uri,
        "candidate_uri": c.candidate.uri,
        "outcome": c.outcome,
        "exit_code": c.exit_code,
        "regressions": [v.benchmark for v in c.benchmarks if v.verdict == "regression" and not v.secondary],
        "improvements": [v.benchmark for v in c.benchmarks if v.verdict == "improvement" and not v.secondary],
        "problems": c.problems,
        "comparison": store.url(f"{where}/comparison.json"),
        "history": history_url,
        "trend": trend,
        **({"trend_error": trend_error} if trend_error else {}),
    }
    write_status(store, cfg, status)
    return status


def _trend(store: Store, cfg: ReportConfig) -> tuple[str | None, str | None]:
    """Redraw the history's trend page: (its URL, None), or (None, why not). The page is a view of the
    history: a night's verdict never depends on drawing it."""
    from star1.report.render import render_history

    try:
        return render_history(store, cfg=cfg)[1], None
    except (ValueError, OSError, RuntimeError) as e:
        return None, f"{type(e).__name__}: {e}"
