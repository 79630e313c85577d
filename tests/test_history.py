"""The comparison history: one atomic part per comparison (a retry rewrites it, concurrent writers never
lose rows), read back whole, shown as a trend with regressions marked."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from star1.cli import app
from star1.report import history
from star1.report import synthetic as syn
from star1.report.compare import GateSettings, compare_runs
from star1.report.runs import open_run
from star1.store import Store
from tests.test_scorecard import tables

runner = CliRunner()
FAST = GateSettings(resamples=1000)
MARK = {"regression": " ▼", "improvement": " ▲", "incomparable": " ✗", "no_change": ""}


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    """A baseline and five nightly runs; the fourth night drops 12 points on StrongREJECT."""
    store = Store.from_uri(str(tmp_path_factory.mktemp("store")))
    base = syn.binary(300, 0.85, seed=1)
    aime = syn.binary(30, 0.4, seed=2, n_samples=4)

    def planted(sr, am):
        return {
            "strongreject": syn.Planted("safety", sr),
            "aime24": syn.Planted("reasoning", am, metric="pass@1"),
        }

    b = open_run(syn.write_run(store, "base", "synthetic/m", planted(base, aime), created_at=1e9))
    runs = []
    for n in range(5):
        sr = syn.with_drop(base, 12.0 if n == 3 else 0.0, seed=10 + n, churn=0.01)
        am = syn.with_drop(aime, 0.0, seed=20 + n, churn=0.02)
        runs.append(
            open_run(
                syn.write_run(
                    store,
                    f"night-{n}",
                    f"synthetic/m{n}",
                    planted(sr, am),
                    created_at=1e9 + (n + 1) * 86400,
                    git_sha=f"{n}" * 40,
                )
            )
        )
    return store, b, runs


def test_each_comparison_is_one_part_and_a_retry_rewrites_it(nights, tmp_path):
    _, base, runs = nights
    store = Store.from_uri(str(tmp_path))
    first = compare_runs(base, runs[0], FAST)
    url = history.append(store, first)
    again = compare_runs(base, runs[0], FAST)
    assert again.id == first.id and history.append(store, again) == url
    assert store.list("report/history") == [f"report/history/{first.id}.parquet"]
    # concurrent nightly jobs: every comparison lands
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda r: history.append(store, compare_runs(base, r, FAST)), runs))
    table = history.read(store)
    assert len(set(table["comparison_id"].to_pylist())) == 5
    assert table.num_rows == 5 * 2  # two benchmarks each (one kind each: no average)
    assert table.schema == history.HISTORY


def test_a_foreign_file_in_the_history_is_named(tmp_path):
    store = Store.from_uri(str(tmp_path))
    store.write_table("report/history/x.parquet", pa.table({"a": [1]}))
    with pytest.raises(ValueError, match=r"history/x.parquet: not a history part"):
        history.read(store)


def test_the_trend_shows_every_comparison_with_the_regression_marked(nights, tmp_path):
    _, base, runs = nights
    hist = Store.from_uri(str(tmp_path))
    recorded = [compare_runs(base, r, FAST) for r in runs]
    for c in recorded:
        history.append(hist, c)
    r = runner.invoke(app, ["report", "--history", "--set", f"store.uri={hist.uri}"])
    assert r.exit_code == 0, r.output
    (table,) = tables(r.stdout)
    assert [row["Candidate"] for row in table] == [f"night-{n}" for n in range(5)]  # oldest first
    for row, c in zip(table, recorded, strict=True):
        v = {x.benchmark: x for x in c.benchmarks}
        for col, name in (("StrongREJECT", "strongreject"), ("AIME 2024", "aime24")):
            assert row[col] == f"{v[name].candidate_value:.1f}" + MARK[v[name].verdict]
        assert row["Outcome"] == c.outcome and row["Commit"] == c.candidate.git_sha[:10]
    assert [row["Outcome"] for row in table] == ["ok", "ok", "ok", "regression", "ok"]
    assert table[3]["StrongREJECT"].endswith("▼")
    page = hist.read_bytes("report/trend/trend.html").decode()
    assert "data:image/svg+xml;base64," in page and "regression" in page
    assert hist.exists("report/trend/plots/trend.svg")


def test_report_without_history_or_runs_is_a_clear_error(tmp_path):
    args = ["--set", f"store.uri={tmp_path}"]
    r = runner.invoke(app, ["report", "--history", *args])
    assert r.exit_code == 2 and "no comparisons recorded" in r.output
    assert runner.invoke(app, ["report", *args]).exit_code == 2
    assert runner.invoke(app, ["report", "--history", "x", *args]).exit_code == 2
