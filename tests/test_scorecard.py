"""The scorecard: every number of its Markdown checked against the summaries the runs wrote; the paper's
rows; bad runs refused with the file and field named."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

from star1.evals.results import BenchmarkSummary
from star1.report import published, scorecard
from star1.report import synthetic as syn
from star1.report.render import render_scorecard
from star1.report.runs import RunError, open_run
from star1.store import Store
from tests.eval_runs import three_runs

NUM = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?")
KIND = {
    "strongreject": "safety",
    "jbb": "safety",
    "custom_safety": "safety",
    "xstest": "overrefusal",
    "aime24": "reasoning",
    "math500": "reasoning",
}


def tables(md: str) -> list[list[dict[str, str]]]:
    """Every Markdown table as a list of {header: cell} rows."""
    out, lines = [], md.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            head = [c.strip() for c in lines[i].strip("|").split(" | ")]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split(" | ")]
                rows.append(dict(zip(head, cells, strict=True)))
                i += 1
            out.append(rows)
        else:
            i += 1
    return out


def expected_rows(run_dirs) -> dict[str, dict[str, float]]:
    """Straight from the summary.json files: values per canonical benchmark, and the averages."""
    rows = {}
    for d in run_dirs:
        s = json.loads(d.read_bytes("summary.json"))
        vals = {published.canonical(name): b["value"] for name, b in s["benchmarks"].items()}
        rows[s["run_name"]] = vals
    return rows


def fmt(v: float) -> str:
    return f"{v:.1f}"


def fmt_delta(d: float) -> str:
    r = round(d, 1)
    return f"{0.0 if r == 0 else r:+.1f}"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    store = Store.from_uri(str(tmp_path_factory.mktemp("store")))
    dirs = three_runs(store)
    md, html_url = render_scorecard(store, dirs, reference="beta", published=["7b-star1"])
    return store, dirs, md, html_url


def test_every_number_in_the_markdown_matches_the_summaries(rendered):
    _, dirs, md, _ = rendered
    exp = expected_rows(dirs)
    star = {k: v for k, v in published.select_published(["7b-star1"])[0].values.items()}
    exp["7b-star1"] = star
    table1, detail = tables(md)
    # the columns: the runs' benchmarks (aliases merged), grouped by kind, averages after each group
    heads = list(table1[0])
    assert heads == [
        "Model",
        "Row",
        "StrongREJECT",
        "JBB-Behaviors",
        "custom_safety",
        "Avg safety",
        "XSTest ↓",
        "AIME 2024",
        "MATH-500",
        "Avg reasoning",
    ]
    col_key = {
        "StrongREJECT": "strongreject",
        "JBB-Behaviors": "jbb",
        "custom_safety": "custom_safety",
        "XSTest ↓": "xstest",
        "AIME 2024": "aime24",
        "MATH-500": "math500",
    }
    for kind, avg in (("safety", "Avg safety"), ("reasoning", "Avg reasoning")):
        members = [k for k in col_key.values() if KIND[k] == kind]
        for vals in exp.values():
            if all(k in vals for k in members):
                vals[avg] = sum(vals[k] for k in members) / len(members)
    ref = exp["beta"]
    labels = {"alpha ‡": "alpha", "beta ‡ (ref)": "beta", "gamma ‡": "gamma", "7b-star1 †": "7b-star1"}
    assert [r["Row"] for r in table1] == list(labels)
    checked = 0
    for row in table1:
        name = labels[row["Row"]]
        for head in heads[2:]:
            key = col_key.get(head, head)
            v = exp[name].get(key)
            if v is None:
                assert row[head] == "—", (name, head)
            elif name == "beta" or key not in ref:
                assert row[head] == fmt(v), (name, head)
            else:
                assert row[head] == f"{fmt(v)} ({fmt_delta(v - ref[key])})", (name, head)
            checked += 1
    assert checked == 4 * 8
    # the per-benchmark detail: value, CI (stderr or Wilson), counts
    z = 1.959963984540054
    for line in detail:
        name = line["Row"].removesuffix(" ‡")
        d = next(x for x in dirs if x.uri.endswith("/" + name))
        summary = json.loads(d.read_bytes("summary.json"))
        s = next(b for n, b in summary["benchmarks"].items() if published.label(n) == line["Benchmark"])
        assert line["Metric"] == s["metric"] + ("" if s["higher_is_better"] else " ↓")
        assert line["Value"] == fmt(s["value"])
        if not s["binomial"] and s["stderr"]:  # pass@1 over 8 samples
            lo, hi = max(0.0, s["value"] - z * s["stderr"]), min(100.0, s["value"] + z * s["stderr"])
            assert line["CI from"] == "stderr"
        else:  # one 0/1 verdict per item: a proportion of n_rate_items
            n = s["n_rate_items"]
            k = round(s["value"] / 100 * n)
            lo, hi = (100 * x for x in proportion_confint(k, n, alpha=0.05, method="wilson"))
            assert line["CI from"] == "wilson"
        assert line["95% CI"] == f"[{fmt(lo)}, {fmt(hi)}]"
        assert (line["Items"], line["Samples"], line["Unscored"]) == tuple(
            str(s[k]) for k in ("n_items", "n_samples", "unscored")
        )
    assert len(detail) == 6 + 4 + 6
    # outside the tables the only numbers are the confidence level and the paper's year
    prose = "\n".join(x for x in md.splitlines() if not x.startswith("|"))
    assert sorted(set(NUM.findall(prose))) == ["1", "2025", "95"]  # "Table 1" / "STAR-1", the year, "95%"


def test_html_and_plots_are_written_beside_the_markdown(rendered):
    store, _, md, html_url = rendered
    out = store.child("report", "scorecard")
    assert html_url == out.url("scorecard.html")
    assert out.read_bytes("scorecard.md").decode() == md
    page = out.read_bytes("scorecard.html").decode()
    assert page.count("data:image/svg+xml;base64,") == 3
    assert sorted(out.list("plots")) == ["plots/bars.svg", "plots/heatmap.svg", "plots/scatter.svg"]
    # offline: no script, no external reference of any kind
    assert "<script" not in page and "http://" not in page and "https://" not in page
    card = json.loads(out.read_bytes("scorecard.json"))
    assert card["reference"] == "beta"
    assert [r["label"] for r in card["rows"]] == ["alpha", "beta", "gamma", "7b-star1"]


def test_published_rows_match_the_papers_averages():
    rows = published.published_rows()
    assert len(rows) == 15
    safety = ["strongreject", "jbb", "wildchat", "wildjailbreak"]
    reasoning = ["mmlu_pro", "aime24", "math500", "gpqa_diamond", "humaneval"]
    for r in rows:
        assert abs(sum(r.values[k] for k in safety) / 4 - r.avg_safety) <= 0.051, r.key
        assert abs(sum(r.values[k] for k in reasoning) / 5 - r.avg_reasoning) <= 0.051, r.key
    assert [r.key for r in published.select_published(["7b"])] == ["7b-instruct", "7b-r1-distill", "7b-star1"]
    with pytest.raises(ValueError, match="no published row '9b'"):
        published.select_published(["9b"])


def test_the_papers_table_alone_and_its_deltas(tmp_path):
    store = Store.from_uri(str(tmp_path))
    md, _ = render_scorecard(store, [], published=["1.5b"], reference="1.5b-r1-distill")
    table1 = tables(md)[0]
    star = next(r for r in table1 if r["Row"] == "1.5b-star1 †")
    # the paper's Figure 1: STAR-1 vs R1-Distill on 1.5B is +54.5 safety, -1.2 reasoning
    assert star["Avg safety"] == "90.3 (+54.5)" and star["Avg reasoning"] == "43.0 (-1.2)"
    assert "published figures, not measured by star1" in md
    # all of the paper's columns shown: its own averages, e.g. 93.3 where the mean is 93.25
    md7, _ = render_scorecard(store, [], published=["7b"], name="seven")
    assert next(r for r in tables(md7)[0] if r["Row"] == "7b-star1 †")["Avg safety"].startswith("93.3")
    assert "recomputed" not in md7


def test_incomplete_or_malformed_runs_are_refused_naming_the_file(tmp_path):
    store = Store.from_uri(str(tmp_path))
    alpha = three_runs(store)[0]
    alpha.write_json("manifest.json", {"stage": "eval", "status": "incomplete", "failures": {"rows": 3}})
    with pytest.raises(RunError, match=r"manifest.json: status is 'incomplete'"):
        open_run(alpha)
    alpha.delete("manifest.json")
    with pytest.raises(RunError, match="did not finish"):
        open_run(str(tmp_path / "eval" / "alpha"))
    beta = store.child("eval", "beta")
    s = json.loads(beta.read_bytes("summary.json"))
    s["benchmarks"]["jbb"]["value"] = "high"
    beta.write_json("summary.json", s)
    with pytest.raises(RunError, match=r"beta/summary.json: field 'benchmarks.jbb.value'"):
        open_run("beta", store)
    with pytest.raises(RunError, match="no eval run 'nope'"):
        open_run("nope", store)
    assert not (tmp_path / "nope").exists()  # a wrong name creates nothing


def test_rows_that_are_not_comparable_are_flagged_in_the_notes(tmp_path):
    store = Store.from_uri(str(tmp_path))
    dirs = three_runs(store)
    s = json.loads(dirs[2].read_bytes("summary.json"))
    s["benchmarks"]["strongreject"]["version"]["prompt_template"] = "t2"
    dirs[2].write_json("summary.json", s)
    md, _ = render_scorecard(store, dirs)
    assert (
        "- StrongREJECT: gamma is not directly comparable with alpha — version['prompt_template']: "
        "'t1' (alpha) ≠ 't2' (gamma)." in md
    )


def test_intervals_at_0_and_100_percent_have_width_on_the_items_the_rate_is_over(tmp_path):
    """StrongREJECT at 100 %, XSTest at 0 % refusal on its 250 safe prompts (200 unsafe ones beside them),
    pass@1 at 100 %: stderr is 0 for each; each interval is a Wilson interval with width, on the right n."""
    store = Store.from_uri(str(tmp_path))
    xs = np.vstack([np.ones((250, 1)), syn.binary(200, 0.9, seed=1)])
    run = syn.write_run(
        store,
        "perfect",
        "synthetic/m",
        {
            "strongreject": syn.Planted("safety", np.ones((313, 1))),
            "xstest": syn.Planted(
                "overrefusal",
                xs,
                metric="refusal_rate",
                higher_is_better=False,
                labels=["safe"] * 250 + ["unsafe"] * 200,
            ),
            "aime24": syn.Planted("reasoning", np.ones((30, 8)), metric="pass@1"),
        },
    )
    cells = scorecard.build([open_run(run)]).rows[0].cells

    def wilson(k: int, n: int) -> tuple[float, float]:
        lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
        return 100 * lo, 100 * hi

    sr, x, aime = cells["strongreject"], cells["xstest"], cells["aime24"]
    assert (sr.summary.value, sr.summary.stderr, sr.ci_method) == (100.0, 0.0, "wilson")
    assert sr.ci == pytest.approx(wilson(313, 313)) and sr.ci[0] < 99.0
    assert (x.summary.value, x.summary.stderr, x.summary.n_items, x.summary.n_rate_items) == (
        0.0,
        0.0,
        450,
        250,
    )
    assert x.ci == pytest.approx(wilson(0, 250)) and x.ci[1] > 1.0
    assert x.ci != pytest.approx(wilson(0, 450))  # the safe prompts, not all 450 items
    assert (aime.summary.binomial, aime.summary.stderr, aime.ci_method) == (False, 0.0, "wilson")
    assert aime.ci == pytest.approx(wilson(30, 30))
    # a summary written before n_rate_items / binomial existed: stderr 0 still gets a Wilson interval
    old = BenchmarkSummary(
        benchmark="sr", kind="safety", metric="safe_rate", value=100.0, stderr=0.0, n_items=313, n_samples=313
    )
    assert scorecard.confidence_interval(old, 0.95) == (pytest.approx(wilson(313, 313)), "wilson")
    # pass@k with spread: value ± z·stderr as before
    graded = old.model_copy(update={"value": 60.0, "stderr": 4.0, "binomial": False, "n_rate_items": 30})
    ci, how = scorecard.confidence_interval(graded, 0.95)
    assert how == "stderr" and ci == pytest.approx((60 - 1.959964 * 4, 60 + 1.959964 * 4))


def test_the_scorecard_says_which_isolation_code_ran_behind(tmp_path):
    store = Store.from_uri(str(tmp_path))
    runs = []
    for name, kind in (("isolated", "bubblewrap"), ("unsafe", "none")):
        bench = syn.Planted("reasoning", syn.binary(20, 0.5, seed=1), version={"sandbox": kind})
        runs.append(syn.write_run(store, name, "synthetic/m", {"humaneval": bench}))
    md, _ = render_scorecard(store, runs[:1])
    assert "- humaneval: generated code ran behind bubblewrap isolation" in md
    md, _ = render_scorecard(store, runs)
    assert "humaneval: generated code ran WITHOUT OS isolation" in md
