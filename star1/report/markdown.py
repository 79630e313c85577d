"""Markdown for terminals and pull requests: the scorecard, a comparison's verdicts, the history."""

from __future__ import annotations

from datetime import UTC, datetime

from star1.report.compare import Comparison
from star1.report.history import HistoryView
from star1.report.scorecard import Scorecard

TEST_NAMES = {
    "mcnemar_exact": "McNemar exact",
    "paired_bootstrap": "paired bootstrap",
    "stratified_bootstrap": "stratified bootstrap",
    "none": "—",
}
MARKS = {
    "regression": "▼ regression",
    "improvement": "▲ improvement",
    "no_change": "no change",
    "incomparable": "✗ incomparable",
}
TREND_MARKS = {"regression": " ▼", "improvement": " ▲", "incomparable": " ✗", "no_change": ""}
DASH = "—"
CORRECTION_NAMES = {"holm": "Holm adjustment", "bonferroni": "Bonferroni adjustment",
                    "fdr_bh": "Benjamini-Hochberg FDR adjustment", "none": "no adjustment"}  # fmt: skip


def num(v: float | None) -> str:
    return DASH if v is None else f"{v:.1f}"


def signed(v: float | None) -> str:
    if v is None:
        return DASH
    r = round(v, 1)
    return f"{0.0 if r == 0 else r:+.1f}"


def pval(p: float | None) -> str:
    return DASH if p is None else f"{p:.3g}"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def scorecard(sc: Scorecard, title: str = "star1 scorecard") -> str:
    """Table 1 (value, and delta against the reference row in parentheses), then the per-benchmark detail
    of every run row (metric, confidence interval, counts), then the notes."""
    header = ["Model", "Row", *(c.header for c in sc.columns)]
    body = []
    for row in sc.rows:
        cells = []
        for col in sc.columns:
            v = row.values.get(col.key)
            if v is None:
                cells.append(DASH)
            elif row.is_reference or col.key not in row.deltas:
                cells.append(num(v))
            else:
                cells.append(f"{num(v)} ({signed(row.deltas[col.key])})")
        label = row.mark + (" (ref)" if row.is_reference else "")
        body.append([row.model, label, *cells])
    pct = f"{sc.confidence:.0%}"
    detail = []
    for row in sc.rows:
        for col in sc.benchmark_columns:
            c = row.cells.get(col.key)
            if c is None:
                continue
            s = c.summary
            detail.append(
                [
                    col.label,
                    row.mark,
                    s.metric + ("" if s.higher_is_better else " ↓"),
                    num(s.value),
                    f"[{num(c.ci[0])}, {num(c.ci[1])}]",
                    c.ci_method,
                    str(s.n_items),
                    str(s.n_samples),
                    str(s.unscored),
                ]
            )
    parts = [f"## {title}", ""]
    if sc.reference:
        parts += [f"Values in %; (Δ) against the reference row **{sc.reference}**; ↓ = lower is better.", ""]
    parts += [table(header, body), ""]
    if detail:
        head = ["Benchmark", "Row", "Metric", "Value", f"{pct} CI", "CI from", "Items", "Samples", "Unscored"]
        parts += [f"### Per benchmark ({pct} confidence intervals)", "", table(head, detail), ""]
    parts += [f"- {n}" for n in sc.notes]
    return "\n".join(parts).rstrip() + "\n"


def comparison(c: Comparison) -> str:
    s = c.settings
    head = f"## star1 compare — {c.outcome.upper()} (exit {c.exit_code})"
    b, k = c.baseline, c.candidate
    tested = sum(1 for v in c.benchmarks if v.p_value is not None and not v.secondary)
    lines = [
        head,
        "",
        f"Baseline **{b.run_name}** ({b.model}, commit {(b.git_sha or '?')[:10]}, {when(b.created_at)}) → "
        f"candidate **{k.run_name}** ({k.model}, commit {(k.git_sha or '?')[:10]}, {when(k.created_at)}).",
        f"α = {s['alpha']:g}, minimum effect {s['min_effect']:g} pt, {CORRECTION_NAMES[s['correction']]} "
        f"over {tested} tests, {s['resamples']} bootstrap resamples (seed {s['seed']}).",
        "",
    ]
    pct = f"{s['confidence']:.0%}"
    rows = []
    for v in c.benchmarks:
        ci = DASH if v.ci_low is None else f"[{signed(v.ci_low)}, {signed(v.ci_high)}]"
        rows.append(
            [
                v.benchmark,
                v.metric + ("" if v.higher_is_better else " ↓"),
                num(v.baseline_value),
                num(v.candidate_value),
                signed(v.delta),
                f"{signed(v.score_delta)} {ci}" if v.score_delta is not None else DASH,
                TEST_NAMES.get(v.test, v.test),
                pval(v.p_value),
                pval(v.p_adjusted),
                str(v.n_paired),
                MARKS[v.verdict],
            ]
        )
    header = [
        "Benchmark",
        "Metric",
        "Baseline",
        "Candidate",
        "Δ",
        f"Δ score [{pct} CI]",
        "Test",
        "p",
        "p adj.",
        "Paired items",
        "Verdict",
    ]
    lines += [table(header, rows), ""]
    if c.problems:
        lines += ["**Incomparable:**", *(f"- {p}" for p in c.problems), ""]
    lines += [f"- {n}" for n in c.notes]
    lines.append(
        "- Δ: candidate − baseline in the metric's units; Δ score: paired per-item difference of the "
        "per-sample scores (higher is better), which the test and the verdict use."
    )
    return "\n".join(lines).rstrip() + "\n"


def history(h: HistoryView, last: int = 30) -> str:
    """The latest comparisons, one line each: the candidate's value per benchmark, regressions marked."""
    entries = h.entries[-last:]
    header = [
        "Date",
        "Candidate",
        "Model",
        "Commit",
        "Baseline",
        "Outcome",
        *(h.labels[b] for b in h.benchmarks),
    ]
    rows = []
    for e in entries:
        cells = []
        for name in h.benchmarks:
            p = e.points.get(name)
            cells.append(DASH if p is None else num(p.value) + TREND_MARKS[p.verdict])
        rows.append([when(e.at), e.candidate, e.model, (e.commit or "?")[:10], e.baseline, e.outcome, *cells])
    shown = f"the last {len(entries)} of {len(h.entries)}" if len(h.entries) > last else f"{len(entries)}"
    parts = [
        "## star1 history",
        "",
        f"{shown} comparisons, oldest first; candidate values in %; ▼ significant regression, ▲ significant "
        "improvement, ✗ incomparable.",
        "",
        table(header, rows),
    ]
    return "\n".join(parts).rstrip() + "\n"
