"""`star1 nightly`: tonight's eval lands in the one run it then compares (one date, one run name); the same
or an equivalent model exits 0, a planted regression exits 3 naming the benchmark, a bad config exits 2 before
any eval, an incomplete eval 5 and an infrastructure failure 7; the verdict, the comparison, the history and
the trend are in the store, and `nightly.json` says which outcome a night had whatever it was.

The eval itself stands in (synthetic runs with planted verdicts in the results layout: `star1 eval` has its
own tests); everything after it — naming, comparison, records, exit codes — is the real command."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

import star1.cli.nightly as nightly_cli
from star1.cli import app
from star1.report import synthetic as syn
from star1.store import Store
from tests.conftest import write

runner = CliRunner()
V = {"data": "d1", "prompt_template": "t1", "generation": "greedy", "scorer": "guard-3"}
BASE = syn.binary(300, 0.80, seed=1)


def benchmarks(scores: np.ndarray) -> dict[str, syn.Planted]:
    return {
        "strongreject": syn.Planted("safety", scores, version=V),
        "aime24": syn.Planted(
            "reasoning", syn.binary(30, 0.4, seed=5, n_samples=4), metric="pass@1", version=V
        ),
    }


@pytest.fixture
def store(tmp_path):
    s = Store.from_uri(str(tmp_path / "store"))
    syn.write_run(s, "star1-7b", "synthetic/m", benchmarks(BASE), created_at=1.0e9, git_sha="1" * 40)
    return s


@pytest.fixture
def config(tmp_path, store):
    return write(
        tmp_path / "nightly.yaml",
        f"store: {{uri: {store.uri}}}\nray: {{enabled: false}}\n"
        "eval: {model: {path: synthetic/m}}\n"
        "report: {baseline: star1-7b, bootstrap_resamples: 2000}\n",
    )


@pytest.fixture
def tonight(monkeypatch):
    """The eval stands in: it writes tonight's model's scores (set `.scores`) as the run it is asked for."""
    calls: list[str] = []
    state = SimpleNamespace(scores=BASE, status="complete", exit=None, calls=calls)

    def evaluate(cfg, store, run_name, force=False):
        calls.append(run_name)
        if state.exit is not None:
            raise typer.Exit(state.exit)
        if not store.exists(f"eval/{run_name}/manifest.json"):
            syn.write_run(store, run_name, "synthetic/m", benchmarks(state.scores), git_sha="2" * 40)
        manifest = SimpleNamespace(status=state.status, failures={"rows": 3, "by_reason": {"timeout": 3}})
        return SimpleNamespace(run_name=run_name, manifest=manifest)

    monkeypatch.setattr(nightly_cli, "evaluate", evaluate)
    monkeypatch.delenv("STAR1_BASELINE", raising=False)
    monkeypatch.delenv("STAR1_RUN_STARTED_AT", raising=False)
    return state


def nightly(config, *args):
    return runner.invoke(app, ["nightly", "-c", str(config), *args])


def test_an_unchanged_model_passes_and_everything_lands_in_the_store(store, config, tonight):
    r = nightly(config, "--date", "2026-11-30")
    assert r.exit_code == 0, r.output
    assert tonight.calls == ["nightly-2026-11-30"]  # the eval wrote the run that was then compared
    where = "report/nightly/nightly-2026-11-30"
    status = store.read_json(f"{where}/nightly.json")
    assert status["outcome"] == "ok" and status["exit_code"] == 0 and status["meaning"] == "succeeded"
    assert status["baseline"] == "star1-7b" and status["date"] == "2026-11-30" and not status["regressions"]
    comparison = store.read_json(f"{where}/comparison.json")
    assert comparison["candidate"]["run_name"] == "nightly-2026-11-30"
    assert store.exists(f"{where}/comparison.md") and store.exists("report/trend/trend.html")
    assert store.list("report/history")  # the comparison's rows are in the history
    assert "nightly nightly-2026-11-30 vs star1-7b: ok (exit 0)" in " ".join(r.output.split())


def test_a_run_compared_with_itself_passes(store, config, tonight):
    r = nightly(config, "--run-name", "star1-7b")
    assert r.exit_code == 0, r.output
    assert store.read_json("report/nightly/star1-7b/nightly.json")["outcome"] == "ok"


def test_a_planted_regression_exits_3_naming_it(store, config, tonight):
    tonight.scores = syn.with_drop(BASE, 12.0, seed=2, churn=0.02)
    r = nightly(config, "--date", "2026-12-01")
    assert r.exit_code == 3, r.output
    status = store.read_json("report/nightly/nightly-2026-12-01/nightly.json")
    assert status["outcome"] == "regression" and status["meaning"] == "regression"
    assert "strongreject" in status["regressions"]
    assert "regression (strongreject" in " ".join(r.output.split())


def test_the_date_is_the_jobs_start_so_a_retry_after_midnight_is_the_same_run(config, tonight, monkeypatch):
    monkeypatch.setenv("STAR1_RUN_STARTED_AT", "2026-11-30T23:59:58+00:00")
    assert nightly(config).exit_code == 0
    assert tonight.calls == ["nightly-2026-11-30"]


def test_the_baseline_option_and_env_override_the_config(store, config, tonight, monkeypatch):
    syn.write_run(store, "other", "synthetic/m", benchmarks(BASE), created_at=1.0e9)
    monkeypatch.setenv("STAR1_BASELINE", "other")
    assert nightly(config, "--date", "2026-11-30").exit_code == 0
    assert store.read_json("report/nightly/nightly-2026-11-30/nightly.json")["baseline"] == "other"
    r = nightly(config, "--date", "2026-11-30", "--baseline", "no-such-run")
    assert r.exit_code == 2 and "baseline no-such-run" in r.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("report: {baseline: no-such-run}\n", "baseline no-such-run"),
        ("report: {}\n", "no baseline"),
    ],
)
def test_config_errors_exit_2_before_any_eval(tmp_path, store, tonight, extra, message):
    cfg = write(tmp_path / "bad.yaml", f"store: {{uri: {store.uri}}}\neval: {{model: {{path: m}}}}\n{extra}")
    r = nightly(cfg, "--date", "2026-11-30")
    assert r.exit_code == 2 and message in r.output, r.output
    assert tonight.calls == []


def test_no_model_to_evaluate_is_a_config_error(tmp_path, store, monkeypatch):
    monkeypatch.delenv("STAR1_BASELINE", raising=False)
    cfg = write(tmp_path / "bad.yaml", f"store: {{uri: {store.uri}}}\nreport: {{baseline: star1-7b}}\n"
                "eval: {run_name: x}\n")  # fmt: skip
    r = nightly(cfg, "--date", "2026-11-30")
    assert r.exit_code == 2 and "eval.model is not set" in r.output, r.output
    status = store.read_json("report/nightly/nightly-2026-11-30/nightly.json")
    assert status["outcome"] == "config_error" and status["exit_code"] == 2


def test_an_incomplete_eval_exits_5_and_an_infrastructure_failure_7(store, config, tonight):
    tonight.status = "incomplete"
    r = nightly(config, "--date", "2026-11-30")
    assert r.exit_code == 5, r.output
    assert store.read_json("report/nightly/nightly-2026-11-30/nightly.json")["outcome"] == "incomplete"
    tonight.exit = 7
    r = nightly(config, "--date", "2026-12-02")
    assert r.exit_code == 7, r.output
    status = store.read_json("report/nightly/nightly-2026-12-02/nightly.json")
    assert status["outcome"] == "infrastructure" and status["meaning"] == "infrastructure failure"


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
    from tests.trackers import mlflow_server

    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


def test_two_nights_are_a_trend_in_a_real_mlflow_server_that_agrees_with_report_history(
    tmp_path, store, tonight, mlflow_uri
):
    """Night 1 passes, night 2 regresses on StrongREJECT: the trend run holds two points per headline
    metric, in the history's order, with the regression marked, exactly as `report --history` shows them;
    each comparison is also a tracker run of its own with its verdicts. A retried night adds no point."""
    from mlflow.tracking import MlflowClient

    from star1.report import published
    from star1.report.markdown import TREND_MARKS, num

    config = write(
        tmp_path / "nightly.yaml",
        f"store: {{uri: {store.uri}}}\nray: {{enabled: false}}\neval: {{model: {{path: synthetic/m}}}}\n"
        "report: {baseline: star1-7b, bootstrap_resamples: 2000}\n"
        f"tracking: {{mlflow: {{uri: '{mlflow_uri}', experiment: nightly-trend}}}}\n",
    )
    assert nightly(config, "--date", "2026-11-30").exit_code == 0
    tonight.scores = syn.with_drop(BASE, 12.0, seed=2, churn=0.02)
    assert nightly(config, "--date", "2026-12-01").exit_code == 3
    assert nightly(config, "--date", "2026-12-01").exit_code == 3  # a retry: the same comparison

    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("nightly-trend")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"trend/report", "compare/nightly-2026-11-30-vs-star1-7b",
                         "compare/nightly-2026-12-01-vs-star1-7b"}  # fmt: skip
    night2 = runs["compare/nightly-2026-12-01-vs-star1-7b"].data
    assert night2.tags["outcome"] == "regression" and night2.tags["verdict.strongreject"] == "regression"
    assert night2.metrics["regression/strongreject"] == 1.0 and night2.metrics["regression/aime24"] == 0.0

    shown = runner.invoke(app, ["report", "-c", str(config), "--history"])
    assert shown.exit_code == 0, shown.output
    table = [ln.split("|")[1:-1] for ln in shown.stdout.splitlines() if ln.startswith("| 20")]
    header = next(ln for ln in shown.stdout.splitlines() if ln.startswith("| Date")).split("|")[1:-1]
    assert [row[1].strip() for row in table] == ["nightly-2026-11-30", "nightly-2026-12-01"]
    trend = runs["trend/report"].info.run_id
    for bench, key in (("strongreject", "strongreject/safe_rate"), ("aime24", "aime24/pass_at_1")):
        column = [h.strip() for h in header].index(published.label(bench))
        points = sorted((m.step, m.value) for m in client.get_metric_history(trend, key))
        flags = sorted((m.step, m.value) for m in client.get_metric_history(trend, f"regression/{bench}"))
        assert [s for s, _ in points] == [s for s, _ in flags] == [1, 2], key
        for (_, value), (_, flag), row in zip(points, flags, table, strict=True):
            mark = TREND_MARKS["regression"] if flag else ""
            assert row[column].strip() == (num(value) + mark).strip(), (key, row)
    assert [f for _, f in flags] == [0.0, 0.0]  # aime24 never regressed
    sr = sorted((m.step, m.value) for m in client.get_metric_history(trend, "regression/strongreject"))
    assert sr == [(1, 0.0), (2, 1.0)]
