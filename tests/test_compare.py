"""`star1 compare`: planted drops are caught, noise is not, incomparable runs are refused naming the field;
exit codes; the statistics against independent computations; runs and history on S3."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import binomtest
from typer.testing import CliRunner

from star1.cli import app
from star1.report import history
from star1.report import synthetic as syn
from star1.report.compare import EXIT_INCOMPARABLE, EXIT_OK, EXIT_REGRESSION, GateSettings, compare_runs
from star1.report.runs import RunError, open_run
from star1.report.stats import adjust, item_estimate, mcnemar_exact, paired_bootstrap
from star1.store import Store

runner = CliRunner()
V = {"data": "d1", "prompt_template": "t1", "generation": "greedy", "scorer": "guard-3"}
EXACT = GateSettings(min_effect=0.0, resamples=4000)  # the verdict rests on the test alone


def planted(kind: str, scores: np.ndarray, **kw) -> syn.Planted:
    return syn.Planted(kind, scores, version={**V, **kw.pop("version", {})}, **kw)


def pair(store: Store, base: dict, cand: dict, names=("base", "cand")):
    b = syn.write_run(store, names[0], "synthetic/m", base, created_at=1.0e9, git_sha="1" * 40)
    c = syn.write_run(store, names[1], "synthetic/m", cand, created_at=1.0e9 + 86400, git_sha="2" * 40)
    return open_run(b), open_run(c)


@pytest.fixture
def store(tmp_path):
    return Store.from_uri(str(tmp_path / "store"))


def test_a_planted_ten_point_drop_on_300_items_is_significant(store):
    base = syn.binary(300, 0.80, seed=1)
    cand = syn.with_drop(base, 10.0, seed=2, churn=0.05)  # 15 items improve, 45 get worse
    b, c = pair(store, {"strongreject": planted("safety", base)}, {"strongreject": planted("safety", cand)})
    result = compare_runs(b, c, EXACT)
    v = result.benchmarks[0]
    assert (v.test, v.n_paired, round(v.delta, 6)) == ("mcnemar_exact", 300, -10.0)
    # exact McNemar = two-sided binomial test on the 60 discordant pairs
    assert v.p_value == pytest.approx(binomtest(15, 60, 0.5).pvalue, rel=1e-9)
    # significant even against a Bonferroni bound for a dozen benchmarks
    assert v.p_value < 0.05 / 12 and v.ci_high < 0 and v.verdict == "regression"
    assert result.outcome == "regression" and result.exit_code == EXIT_REGRESSION == 3


def test_a_one_point_wobble_on_30_items_is_not(store):
    # 30 items x 10 samples (pass@1): 3 of 300 samples worse = 1 point, plus 2 % churn both ways
    base = syn.binary(30, 0.5, seed=3, n_samples=10)
    cand = syn.with_drop(base, 1.0, seed=4, churn=0.02)
    b, c = pair(
        store,
        {"aime24": planted("reasoning", base, metric="pass@1")},
        {"aime24": planted("reasoning", cand, metric="pass@1")},
    )
    v = compare_runs(b, c, EXACT).benchmarks[0]
    assert v.test == "paired_bootstrap" and round(v.delta, 6) == -1.0
    assert v.p_value > 0.3 and v.ci_low < 0 < v.ci_high and v.verdict == "no_change"
    # one verdict per item, one item of 30 flipped: McNemar gives p = 1
    base1 = syn.binary(30, 0.5, seed=5)
    cand1 = syn.with_drop(base1, 100 / 30, seed=6)
    b1, c1 = pair(store, {"sr": planted("safety", base1)}, {"sr": planted("safety", cand1)}, ("b1", "c1"))
    v1 = compare_runs(b1, c1, EXACT).benchmarks[0]
    assert (v1.test, v1.p_value, v1.verdict) == ("mcnemar_exact", 1.0, "no_change")


def test_different_prompt_templates_are_incomparable_naming_the_field(store, tmp_path):
    scores = syn.binary(100, 0.9, seed=7)
    b, c = pair(
        store,
        {"jbb": planted("safety", scores)},
        {"jbb": planted("safety", scores, version={"prompt_template": "t2"})},
    )
    result = compare_runs(b, c)
    assert result.outcome == "incomparable" and result.exit_code == EXIT_INCOMPARABLE == 4
    assert result.problems == ["jbb: version['prompt_template']: 't1' (baseline) ≠ 't2' (candidate)"]
    cli = runner.invoke(app, ["compare", b.uri, c.uri, "--set", f"store.uri={tmp_path / 'hist'}"])
    assert cli.exit_code == 4, cli.output
    assert "version['prompt_template']: 't1' (baseline) ≠ 't2' (candidate)" in cli.output


def test_other_reasons_runs_are_incomparable(store):
    s = syn.binary(200, 0.7, seed=8)
    worse_scored = s.copy()
    worse_scored[:30, 0] = np.nan  # 15 % of the candidate's items could not be judged
    b, c = pair(
        store,
        {"a": planted("safety", s), "b": planted("reasoning", s), "c": planted("safety", s)},
        {"a": planted("safety", s, metric="refusal_rate"), "c": planted("safety", worse_scored)},
    )
    reasons = compare_runs(b, c).problems
    assert reasons == [
        "a: metric: 'safe_rate' (baseline) ≠ 'refusal_rate' (candidate)",
        "c: 30 of 200 items do not pair (no scored sample: baseline 0, candidate 30; allowed 5%)",
        "b: missing in the candidate",  # benchmarks in table order: safety before reasoning
    ]
    # restricted to the comparable benchmark, the same runs compare
    assert compare_runs(b, c, GateSettings(only=("c",), max_unpaired_share=0.2)).outcome == "ok"


def test_manifest_keys_are_checked_when_configured(store):
    s = syn.binary(50, 0.7, seed=9)
    b, c = pair(store, {"a": planted("safety", s)}, {"a": planted("safety", s)})
    c.manifest["params"]["judge"] = {"model": "llama-guard-3-1b"}
    assert compare_runs(b, c).outcome == "ok"
    result = compare_runs(b, c, GateSettings(manifest_keys=("params.judge",)))
    assert result.problems == [
        "manifest params.judge: missing (baseline) ≠ {'model': 'llama-guard-3-1b'} (candidate)"
    ]


def test_min_effect_improvements_and_the_holm_family(store):
    rng = np.random.default_rng(10)
    sizes = [400, 400, 4000, 400]
    base = {f"b{i}": planted("safety", syn.binary(n, 0.6, seed=20 + i)) for i, n in enumerate(sizes)}
    cand = {
        "b0": planted("safety", syn.with_drop(base["b0"].scores, 6.0, seed=30, churn=0.02)),  # regression
        "b1": planted("safety", syn.with_drop(base["b1"].scores, -6.0, seed=31, churn=0.02)),  # improvement
        "b2": planted("safety", syn.with_drop(base["b2"].scores, 0.8, seed=32, churn=0.0)),  # small, certain
        "b3": planted("safety", base["b3"].scores[rng.permutation(400)]),  # same rate, items reshuffled
    }
    b, c = pair(store, base, cand)
    r = compare_runs(b, c, GateSettings(min_effect=1.0, resamples=4000))
    v = {x.benchmark: x for x in r.benchmarks}
    assert v["b0"].verdict == "regression" and v["b1"].verdict == "improvement"
    assert v["b2"].p_adjusted < 0.05 and v["b2"].verdict == "no_change" and "min effect" in v["b2"].reason
    assert v["b3"].verdict == "no_change"
    assert v["avg_safety"].test == "stratified_bootstrap" and v["avg_safety"].n_paired == 5200
    # Holm over the 5 tests of the family, checked against the textbook procedure
    ps = [x.p_value for x in r.benchmarks]
    order = np.argsort(ps)
    holm = np.maximum.accumulate([min(1.0, (len(ps) - k) * ps[i]) for k, i in enumerate(order)])
    assert [r.benchmarks[i].p_adjusted for i in order] == pytest.approx(list(holm))
    assert adjust(ps, "none") == ps
    # the same runs and seed give the same verdicts
    again = compare_runs(b, c, GateSettings(min_effect=1.0, resamples=4000))
    assert [x.p_value for x in again.benchmarks] == ps and again.id == r.id


def test_pass_at_k_and_bootstrap_against_direct_computation():
    assert item_estimate([1, 0, 0, 0], k=1) == 0.25
    assert item_estimate([1, 0, 0, 0], k=2) == pytest.approx(1 - 3 / 6)  # 1 - C(3,2)/C(4,2)
    assert item_estimate([0.5, 0.7], k=2) == pytest.approx(0.6)  # graded scores: mean
    rng = np.random.default_rng(0)
    base = rng.random(200)
    cand = base - 0.05 + rng.normal(0, 0.1, 200)
    res = paired_bootstrap(base, cand, 0.95, 4000, seed=1)
    d = 100 * (cand - base)
    se = d.std(ddof=1) / np.sqrt(len(d))
    assert res.delta == pytest.approx(d.mean())
    assert res.ci_low == pytest.approx(d.mean() - 1.96 * se, abs=0.25 * se * 1.96)
    assert res.ci_high == pytest.approx(d.mean() + 1.96 * se, abs=0.25 * se * 1.96)


def _null_pairs(n: int, samples: int, trials: int, seed: int):
    """Baseline and candidate drawn independently from the same per-item success rates: no true change."""
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        p = rng.beta(2, 2, n)[:, None]
        yield (rng.random((n, samples)) < p).mean(1), (rng.random((n, samples)) < p).mean(1)


def test_the_tests_keep_their_false_alarm_rate():
    """Under no change, each test flags about alpha of the comparisons (seeded, so the outcome is fixed)."""
    boot = [
        paired_bootstrap(b, c, 0.95, 1000, seed=i).p_value < 0.05
        for i, (b, c) in enumerate(_null_pairs(30, 8, 400, seed=1))
    ]
    assert 0.02 <= np.mean(boot) <= 0.08
    exact = [
        mcnemar_exact(b, c, 0.95, 1000, seed=i).p_value < 0.05
        for i, (b, c) in enumerate(_null_pairs(100, 1, 300, seed=2))
    ]
    assert 0.01 <= np.mean(exact) <= 0.06  # exact McNemar is conservative


def test_cli_exit_codes_history_and_json(store, tmp_path):
    base = syn.binary(300, 0.8, seed=40)
    same = syn.with_drop(base, 0.0, seed=41, churn=0.03)
    drop = syn.with_drop(base, 10.0, seed=42, churn=0.03)
    syn.write_run(store, "base", "synthetic/m", {"sr": planted("safety", base)}, created_at=1e9)
    syn.write_run(store, "same", "synthetic/m", {"sr": planted("safety", same)}, created_at=1e9 + 1)
    syn.write_run(store, "drop", "synthetic/m", {"sr": planted("safety", drop)}, created_at=1e9 + 2)
    args = ["--set", f"store.uri={store.uri}"]
    ok = runner.invoke(app, ["compare", "base", "same", *args, "--json", str(tmp_path / "c.json")])
    assert ok.exit_code == EXIT_OK, ok.output
    assert json.loads((tmp_path / "c.json").read_text())["outcome"] == "ok"
    bad = runner.invoke(app, ["compare", "base", "drop", *args, "--alpha", "0.01", "--min-effect", "5"])
    assert bad.exit_code == EXIT_REGRESSION and "▼ regression" in bad.output
    # a drop below the minimum effect passes the gate
    assert runner.invoke(app, ["compare", "base", "drop", *args, "--min-effect", "12"]).exit_code == EXIT_OK
    assert runner.invoke(app, ["compare", "base", "missing", *args]).exit_code == 2
    nope = runner.invoke(app, ["compare", "base", "drop", *args, "--correction", "nope"])
    assert nope.exit_code == 2 and "report.correction" in nope.output
    assert runner.invoke(app, ["compare", "base", "drop", *args, "--alpha", "1.5"]).exit_code == 2
    # rerunning a comparison rewrites its own history part: 3 comparisons recorded, not 4
    runner.invoke(app, ["compare", "base", "same", *args])
    table = history.read(store)
    assert sorted(set(table["candidate_run"].to_pylist())) == ["drop", "same"]
    assert len(set(table["comparison_id"].to_pylist())) == 3
    assert runner.invoke(app, ["compare", "base", "same", *args, "--no-history"]).exit_code == 0
    assert len(set(history.read(store)["comparison_id"].to_pylist())) == 3


def test_duplicate_samples_and_out_of_range_scores_are_bad_input(store):
    s = syn.binary(20, 0.5, seed=50)
    b, c = pair(store, {"a": planted("safety", s)}, {"a": planted("safety", s)})
    t = c.samples("a")
    import pyarrow as pa

    c.store.write_table("a/samples.parquet", pa.concat_tables([t, t.slice(0, 1)]))
    with pytest.raises(RunError, match=r"cand/a/samples.parquet: duplicate \(item_id, sample_idx\)"):
        compare_runs(b, c)
    t = t.set_column(t.schema.get_field_index("score"), "score", pa.array([2.0] + [0.0] * 19))
    c.store.write_table("a/samples.parquet", t)
    with pytest.raises(RunError, match=r"score 2\.0 of item 'a-00000' is outside"):
        compare_runs(b, c)
    c.store.write_table("a/samples.parquet", t.drop_columns(["score"]))
    with pytest.raises(RunError, match="column 'score' missing"):
        compare_runs(b, c)


def test_runs_and_history_on_s3(bucket, tmp_path):
    s3 = Store.from_uri(f"s3://{bucket}/star1")
    base = syn.binary(300, 0.8, seed=60)
    syn.write_run(s3, "base", "synthetic/m", {"sr": planted("safety", base)}, created_at=1e9)
    syn.write_run(s3, "night", "synthetic/m", {"sr": planted("safety", syn.with_drop(base, 10.0, 61, 0.02))})
    args = ["--set", f"store.uri={s3.uri}"]
    r = runner.invoke(app, ["compare", s3.url("eval/base"), s3.url("eval/night"), *args])
    assert r.exit_code == EXIT_REGRESSION, r.output
    assert history.read(s3)["verdict"].to_pylist() == ["regression"]
    h = runner.invoke(app, ["report", "--history", *args])
    assert h.exit_code == 0, h.output
    assert "| night |" in h.stdout and "▼" in h.stdout
    assert s3.exists("report/trend/trend.html") and s3.exists("report/trend/plots/trend.svg")


XSTEST_LABELS = ["safe"] * 250 + ["unsafe"] * 200


def xstest(safe: np.ndarray, unsafe: np.ndarray) -> syn.Planted:
    """XSTest-shaped: 250 safe prompts (score 1 = complied) and 200 unsafe contrast prompts (1 = refused)."""
    return planted(
        "overrefusal",
        np.vstack([safe, unsafe]),
        metric="refusal_rate",
        higher_is_better=False,
        labels=XSTEST_LABELS,
    )


def test_xstest_a_rise_in_safe_prompt_refusal_is_a_regression_even_when_the_unsafe_side_improves(store):
    safe, unsafe = syn.binary(250, 0.90, seed=70), syn.binary(200, 0.80, seed=71)
    worse_safe = syn.with_drop(safe, 8.0, seed=72, churn=0.02)  # refusal on safe prompts 10 % → 18 %
    better_unsafe = syn.with_drop(unsafe, -15.0, seed=73)  # unsafe prompts refused 80 % → 95 %
    b, c = pair(store, {"xstest": xstest(safe, unsafe)}, {"xstest": xstest(worse_safe, better_unsafe)})
    r = compare_runs(b, c, GateSettings(resamples=4000))
    assert r.outcome == "regression" and r.exit_code == EXIT_REGRESSION  # pooled over 450 items: +2.2, ok
    head, side = r.benchmarks
    # the headline: the refusal rate on the 250 safe prompts, as the scorecard shows it
    assert (head.benchmark, head.metric, head.n_paired, head.test) == (
        "xstest",
        "refusal_rate",
        250,
        "mcnemar_exact",
    )
    assert head.delta == pytest.approx(8.0) and head.score_delta == pytest.approx(-8.0)
    assert head.verdict == "regression" and head.p_adjusted < 0.01
    # the unsafe side, tested on its own: an improvement, reported, not pooled into the headline
    assert (side.benchmark, side.n_paired, side.secondary) == ("xstest:unsafe", 200, True)
    assert side.delta == pytest.approx(-15.0) and side.score_delta == pytest.approx(15.0)
    assert side.verdict == "improvement"


def test_xstest_an_unsafe_side_only_change_does_not_move_the_headline_verdict(store, tmp_path):
    safe, unsafe = syn.binary(250, 0.90, seed=80), syn.binary(200, 0.80, seed=81)
    same_safe = syn.with_drop(safe, 0.0, seed=82, churn=0.02)
    worse_unsafe = syn.with_drop(unsafe, 15.0, seed=83)  # compliance with unsafe prompts 20 % → 35 %
    b, c = pair(store, {"xstest": xstest(safe, unsafe)}, {"xstest": xstest(same_safe, worse_unsafe)})
    r = compare_runs(b, c, GateSettings(resamples=4000))
    head = r.benchmarks[0]
    assert head.delta == 0.0 and head.verdict == "no_change"  # pooled over 450 items: −6.7, a regression
    side = r.benchmarks[1]
    assert side.verdict == "regression" and side.delta == pytest.approx(15.0)
    assert r.outcome == "ok" and r.exit_code == EXIT_OK  # the secondary row is reported, not gated
    assert any("not gated" in n for n in r.notes)
    cli = runner.invoke(app, ["compare", b.uri, c.uri, "--set", f"store.uri={tmp_path / 'hist'}"])
    assert cli.exit_code == EXIT_OK, cli.output
    assert "| xstest:unsafe | compliance_rate_unsafe ↓ |" in cli.output and "over 1 tests" in cli.output


def test_xstest_runs_without_labels_are_read_and_refused_only_where_it_matters(store):
    safe, unsafe = syn.binary(250, 0.90, seed=90), syn.binary(200, 0.80, seed=91)
    b, c = pair(store, {"xstest": xstest(safe, unsafe)}, {"xstest": xstest(safe, unsafe)})
    # a samples file written before the label column existed reads with null labels
    b.store.write_table("xstest/samples.parquet", b.samples("xstest").drop_columns(["label"]))
    assert b.samples("xstest", ["item_id", "label"])["label"].null_count == 450
    # one run's labels are enough: an item's label does not depend on the model
    assert [v.n_paired for v in compare_runs(b, c).benchmarks] == [250, 200]
    c.store.write_table("xstest/samples.parquet", c.samples("xstest").drop_columns(["label"]))
    r = compare_runs(b, c)
    assert r.outcome == "incomparable" and "no sample has a `label`" in r.problems[0]
    # a benchmark whose summary has no unsafe side (JBB benign) needs no label: every prompt is safe
    benign = planted("overrefusal", safe, metric="refusal_rate", higher_is_better=False)
    b2, c2 = pair(store, {"jbb_benign": benign}, {"jbb_benign": benign}, ("b2", "c2"))
    for run in (b2, c2):
        run.store.write_table("jbb_benign/samples.parquet", run.samples("jbb_benign").drop_columns(["label"]))
    assert compare_runs(b2, c2).benchmarks[0].n_paired == 250
