"""The paper's Table 1 as data: one row per model (eval runs, and published rows from the paper), safety per
benchmark + average, over-refusal, reasoning per benchmark + average, and deltas against a reference row.
Markdown and HTML are both rendered from this one object, so they always show the same numbers.

Averages are the unweighted mean over the table's columns of that kind (the paper's definition), shown only
when the row has every one of them. Confidence intervals: a Wilson interval on the number of items the
value is a proportion of (`n_rate_items`, e.g. XSTest's safe prompts; `n_items` in older summaries) when
each item is one 0/1 verdict, or when `stderr` is missing or zero (every per-item value alike, e.g. 100 %),
so an interval never has zero width; otherwise value ± z·stderr (pass@k, graded scores). Clipped to [0, 100].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from star1.evals.results import BenchmarkSummary, Kind, confidence_interval
from star1.report import published
from star1.report.compare import version_differences
from star1.report.published import KIND_ORDER, PublishedRow
from star1.report.runs import EvalRun, RunError

AVERAGED: tuple[Kind, ...] = ("safety", "reasoning")
AVG_KEY = {"safety": "avg_safety", "reasoning": "avg_reasoning"}
AVG_LABEL = {"safety": "Avg safety", "reasoning": "Avg reasoning"}


@dataclass(frozen=True)
class Column:
    key: str  # canonical benchmark name, or avg_safety / avg_reasoning
    label: str
    kind: Kind
    metric: str = ""
    higher_is_better: bool = True
    average: bool = False

    @property
    def header(self) -> str:
        return self.label if self.higher_is_better else f"{self.label} ↓"


@dataclass
class Cell:
    benchmark: str  # the run's own name for it
    summary: BenchmarkSummary
    ci: tuple[float, float]
    ci_method: Literal["stderr", "wilson"]


@dataclass
class Row:
    label: str
    model: str
    source: Literal["run", "published"]
    values: dict[str, float] = field(default_factory=dict)  # column key -> value (averages included)
    deltas: dict[str, float] = field(default_factory=dict)
    cells: dict[str, Cell] = field(default_factory=dict)  # run rows: column key -> summary and CI
    run: EvalRun | None = None
    published_key: str | None = None
    synthetic: bool = False
    is_reference: bool = False

    @property
    def mark(self) -> str:
        """The row's label as tables show it: † published figures, ‡ synthetic run."""
        return self.label + (" †" if self.source == "published" else " ‡" if self.synthetic else "")


@dataclass
class Scorecard:
    columns: list[Column]
    rows: list[Row]
    reference: str | None
    confidence: float
    notes: list[str]

    def kind_columns(self, kind: Kind, averages: bool = False) -> list[Column]:
        return [c for c in self.columns if c.kind == kind and (averages or not c.average)]

    @property
    def benchmark_columns(self) -> list[Column]:
        return [c for c in self.columns if not c.average]


def build(
    runs: list[EvalRun],
    published_rows: list[PublishedRow] | None = None,
    reference: str | None = None,
    confidence: float = 0.95,
) -> Scorecard:
    published_rows = published_rows or []
    notes: list[str] = []
    rows: list[Row] = []
    seen: dict[str, int] = {}
    for run in runs:
        label = run.name
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            label = f"{label} ({seen[label]})"
        row = Row(label, run.summary.model, "run", run=run, synthetic=run.synthetic)
        for name, s in run.summary.benchmarks.items():
            key = published.canonical(name)
            if key in row.cells:
                raise RunError(
                    f"{run.uri}: benchmarks '{row.cells[key].benchmark}' and '{name}' are both {key}"
                )
            ci, method = confidence_interval(s, confidence)
            row.cells[key] = Cell(name, s, ci, method)
            row.values[key] = s.value
        rows.append(row)
    for p in published_rows:
        rows.append(Row(p.key, p.label, "published", values=dict(p.values), published_key=p.key))

    columns = _columns(rows)
    keys = {c.key for c in columns}
    for row in rows:
        if row.source == "published":
            row.values = {k: v for k, v in row.values.items() if k in keys}
    _averages(rows, columns)
    recomputed = _published_averages(rows, columns, {p.key: p for p in published_rows})
    notes += _comparability_notes(rows, columns)
    ref = _reference(rows, reference)
    if ref is not None:
        ref.is_reference = True
        for row in rows:
            row.deltas = {k: v - ref.values[k] for k, v in row.values.items() if k in ref.values}
    if any(r.source == "published" for r in rows):
        notes.append(f"† {published.source()}.")
        if recomputed:
            notes.append(
                f"Published rows' {' and '.join(recomputed)} averages are recomputed over the columns shown "
                "(the paper's averages cover all of its columns)."
            )
    notes += _sandbox_notes(rows)
    if any(r.synthetic for r in rows):
        notes.append(
            "Synthetic runs (planted verdicts, for tests and demos) are marked ‡; they measure nothing."
        )
    return Scorecard(columns, rows, ref.label if ref else None, confidence, notes)


def _columns(rows: list[Row]) -> list[Column]:
    sources = [r for r in rows if r.source == "run"] or rows
    found: dict[str, Column] = {}
    for row in sources:
        for key in row.values:
            if key in found:
                continue
            cat = published.info(key)
            cell = row.cells.get(key)
            kind = cell.summary.kind if cell else cat.kind if cat else "reasoning"
            found[key] = Column(
                key=key,
                label=cat.label if cat else key,
                kind=kind,
                metric=cell.summary.metric if cell else "",
                higher_is_better=cell.summary.higher_is_better if cell else True,
            )

    def order(c: Column) -> tuple[int, int, str]:
        cat = published.info(c.key)
        return KIND_ORDER.index(c.kind), cat.order if cat else 10_000, c.key

    columns: list[Column] = []
    for kind in KIND_ORDER:
        of_kind = sorted((c for c in found.values() if c.kind == kind), key=order)
        columns += of_kind
        if kind in AVERAGED and of_kind:
            columns.append(Column(AVG_KEY[kind], AVG_LABEL[kind], kind, "mean", True, average=True))
    return columns


def _averages(rows: list[Row], columns: list[Column]) -> None:
    for kind in AVERAGED:
        members = [c.key for c in columns if c.kind == kind and not c.average]
        if not members:
            continue
        for row in rows:
            if all(k in row.values for k in members):
                row.values[AVG_KEY[kind]] = sum(row.values[k] for k in members) / len(members)


def _published_averages(rows: list[Row], columns: list[Column], paper: dict[str, PublishedRow]) -> list[str]:
    """Where the table shows exactly the paper's columns of a kind, a published row shows the paper's own
    average (its rounding included); otherwise the recomputed one. Returns the kinds recomputed."""
    recomputed = []
    for kind in AVERAGED:
        shown = {c.key for c in columns if c.kind == kind and not c.average}
        papers = {k for p in paper.values() for k in p.values if published.info(k).kind == kind}
        if not shown or not any(r.source == "published" for r in rows):
            continue
        if shown == papers:
            for row in rows:
                if row.published_key:
                    p = paper[row.published_key]
                    row.values[AVG_KEY[kind]] = p.avg_safety if kind == "safety" else p.avg_reasoning
        else:
            recomputed.append(kind)
    return recomputed


def _sandbox_notes(rows: list[Row]) -> list[str]:
    """Which isolation the generated code of each code benchmark ran behind (the summary's version map)."""
    seen: dict[str, set[str]] = {}
    for row in rows:
        for cell in row.cells.values():
            kind = cell.summary.version.get("sandbox")
            if kind:
                seen.setdefault(cell.benchmark, set()).add(kind)
    notes = []
    for bench, kinds in sorted(seen.items()):
        text = ", ".join(sorted(kinds))
        if "none" in kinds:
            notes.append(f"{bench}: generated code ran WITHOUT OS isolation (unsafe_allow_no_isolation).")
        else:
            notes.append(f"{bench}: generated code ran behind {text} isolation (see docs/eval.md, Sandbox).")
    return notes


def _comparability_notes(rows: list[Row], columns: list[Column]) -> list[str]:
    notes = []
    for col in columns:
        first: Row | None = None
        for row in rows:
            cell = row.cells.get(col.key)
            if cell is None:
                continue
            if first is None:
                first = row
                continue
            diffs = version_differences(first.cells[col.key].summary, cell.summary)
            if diffs:
                detail = "; ".join(
                    d.replace("(baseline)", f"({first.label})").replace("(candidate)", f"({row.label})")
                    for d in diffs
                )
                notes.append(
                    f"{col.label}: {row.label} is not directly comparable with {first.label} — {detail}."
                )
    return notes


def _reference(rows: list[Row], wanted: str | None) -> Row | None:
    if not rows:
        return None
    if wanted is None:
        return rows[0]
    for row in rows:
        if wanted in (row.label, row.model, row.published_key):
            return row
    labels = ", ".join(r.published_key or r.label for r in rows)
    raise ValueError(f"no row '{wanted}' to take deltas against (rows: {labels})")
