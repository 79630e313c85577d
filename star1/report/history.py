"""The comparison history: every `star1 compare` adds its verdicts to a Parquet table in the store.

The table is a folder of parts, `<folder>/history/<comparison id>.parquet`, one per comparison, one row per
benchmark. Each part is one atomic write (a rename locally, one PUT on S3), so concurrent nightly jobs never
lose each other's rows (a read-modify-write of a single file would), and the id is a hash of the two runs and
the settings, so a retried job rewrites its own part instead of adding a duplicate. Readers read the union.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from star1.report import published
from star1.report.compare import Comparison
from star1.report.published import KIND_ORDER
from star1.store import Store

HISTORY = pa.schema(
    [
        pa.field("comparison_id", pa.string(), nullable=False),
        pa.field("compared_at", pa.float64(), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),  # ok / regression / incomparable
        pa.field("baseline_run", pa.string(), nullable=False),
        pa.field("baseline_uri", pa.string(), nullable=False),
        pa.field("baseline_model", pa.string()),
        pa.field("baseline_created_at", pa.float64()),
        pa.field("candidate_run", pa.string(), nullable=False),
        pa.field("candidate_uri", pa.string(), nullable=False),
        pa.field("candidate_model", pa.string()),
        pa.field("candidate_model_hash", pa.string()),
        pa.field("candidate_commit", pa.string()),
        pa.field("candidate_created_at", pa.float64()),
        pa.field("benchmark", pa.string(), nullable=False),
        pa.field("kind", pa.string()),
        pa.field("metric", pa.string()),
        pa.field("higher_is_better", pa.bool_()),
        pa.field("baseline_value", pa.float64()),
        pa.field("candidate_value", pa.float64()),
        pa.field("delta", pa.float64()),
        pa.field("score_delta", pa.float64()),
        pa.field("ci_low", pa.float64()),
        pa.field("ci_high", pa.float64()),
        pa.field("p_value", pa.float64()),
        pa.field("p_adjusted", pa.float64()),
        pa.field("test", pa.string()),
        pa.field("n_paired", pa.int64()),
        pa.field("verdict", pa.string(), nullable=False),
        pa.field("reason", pa.string()),
        pa.field("alpha", pa.float64()),
        pa.field("min_effect", pa.float64()),
        pa.field("correction", pa.string()),
    ]
)


def part_path(folder: str, comparison_id: str) -> str:
    return f"{folder}/history/{comparison_id}.parquet"


def to_table(c: Comparison) -> pa.Table:
    b, k, s = c.baseline, c.candidate, c.settings
    rows = [
        {
            "comparison_id": c.id,
            "compared_at": c.compared_at,
            "outcome": c.outcome,
            "baseline_run": b.run_name,
            "baseline_uri": b.uri,
            "baseline_model": b.model,
            "baseline_created_at": b.created_at,
            "candidate_run": k.run_name,
            "candidate_uri": k.uri,
            "candidate_model": k.model,
            "candidate_model_hash": k.model_hash,
            "candidate_commit": k.git_sha,
            "candidate_created_at": k.created_at,
            **v.model_dump(
                include={
                    "benchmark",
                    "kind",
                    "metric",
                    "higher_is_better",
                    "baseline_value",
                    "candidate_value",
                    "delta",
                    "score_delta",
                    "ci_low",
                    "ci_high",
                    "p_value",
                    "p_adjusted",
                    "test",
                    "n_paired",
                    "verdict",
                    "reason",
                }
            ),
            "alpha": s["alpha"],
            "min_effect": s["min_effect"],
            "correction": s["correction"],
        }
        for v in c.benchmarks
    ]
    return pa.Table.from_pylist(rows, schema=HISTORY)


def append(store: Store, c: Comparison, folder: str = "report") -> str:
    """Add one comparison's rows to the history (idempotent per comparison id); returns the part's URL."""
    if not c.benchmarks:
        raise ValueError("a comparison without benchmarks has nothing to record")
    rel = part_path(folder, c.id)
    store.write_table(rel, to_table(c))
    return store.url(rel)


def read(store: Store, folder: str = "report") -> pa.Table:
    """Every recorded comparison row, oldest first; a part that is not in the history schema is an error
    naming it."""
    parts = store.list(f"{folder}/history", suffix=".parquet")
    tables = []
    for rel in parts:
        t = store.read_table(rel)
        missing = [n for n in HISTORY.names if n not in t.column_names]
        if missing:
            raise ValueError(f"{store.url(rel)}: not a history part (missing columns {', '.join(missing)})")
        tables.append(t.select(HISTORY.names).cast(HISTORY))
    if not tables:
        return HISTORY.empty_table()
    return pa.concat_tables(tables).sort_by(
        [("candidate_created_at", "ascending"), ("compared_at", "ascending")]
    )


@dataclass
class Point:
    value: float | None
    baseline_value: float | None
    verdict: str
    p_adjusted: float | None


@dataclass
class Entry:
    id: str
    at: float  # when the candidate was evaluated
    candidate: str
    baseline: str
    model: str
    commit: str | None
    outcome: str
    points: dict[str, Point] = field(default_factory=dict)


@dataclass
class HistoryView:
    """The history grouped for plotting and tables: one entry per comparison, benchmarks in table order."""

    entries: list[Entry]
    benchmarks: list[str]

    @property
    def labels(self) -> dict[str, str]:
        return {b: published.label(b) for b in self.benchmarks}


def view(table: pa.Table) -> HistoryView:
    entries: dict[str, Entry] = {}
    kinds: dict[str, str] = {}
    for r in table.to_pylist():
        e = entries.get(r["comparison_id"])
        if e is None:
            e = entries[r["comparison_id"]] = Entry(
                r["comparison_id"],
                r["candidate_created_at"] or r["compared_at"],
                r["candidate_run"],
                r["baseline_run"],
                r["candidate_model"] or "?",
                r["candidate_commit"],
                r["outcome"],
            )
        e.points[r["benchmark"]] = Point(
            r["candidate_value"], r["baseline_value"], r["verdict"], r["p_adjusted"]
        )
        kinds.setdefault(r["benchmark"], r["kind"] or "")

    def order(name: str) -> tuple[int, int, int, str]:
        kind = kinds[name]
        k = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
        cat = published.info(name)
        return (k, name.startswith("avg_"), cat.order if cat else 10_000, name)

    return HistoryView(sorted(entries.values(), key=lambda e: e.at), sorted(kinds, key=order))
