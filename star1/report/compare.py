"""`star1 compare BASELINE CANDIDATE`: did the candidate get worse, for real?

Per benchmark: the two runs must be comparable (same kind, metric and `version` map, the configured manifest
keys equal, items that pair), then the per-sample scores are paired by `item_id` and tested (`stats.py`):
exact McNemar for one binary verdict per item, paired bootstrap otherwise. The test is on the items the
headline value is over: for over-refusal the safe prompts only (SAMPLE `label`), so a rise in their refusal
rate is a drop in score, a regression; the unsafe contrast prompts get a secondary row (`xstest:unsafe`,
compliance with unsafe prompts) with its own test, reported but outside the gate. Averages per kind are
tested too, by a bootstrap stratified by benchmark. The p-values of the gated rows form one family, adjusted
by Holm's method by default (the secondary rows form another). A row regresses when its adjusted p-value is
below `alpha` and the paired drop is at least `min_effect` points.

Exit codes (star1/exits.py): 0 no regression, 3 a significant regression of a gated row, 4 incomparable runs
(input errors exit 2).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from star1.config.report import ReportConfig
from star1.evals.results import BenchmarkSummary, is_unsafe
from star1.exits import Exit
from star1.manifest import stable_hash
from star1.report import published, stats
from star1.report.published import KIND_ORDER
from star1.report.runs import EvalRun, RunError

EXIT_OK, EXIT_REGRESSION, EXIT_INCOMPARABLE = Exit.OK, Exit.REGRESSION, Exit.INCOMPARABLE
Verdict = Literal["regression", "improvement", "no_change", "incomparable"]
Outcome = Literal["ok", "regression", "incomparable"]
AGGREGATES = {"safety": "avg_safety", "reasoning": "avg_reasoning", "overrefusal": "avg_overrefusal"}


class RunRef(BaseModel):
    run_name: str
    uri: str
    model: str
    model_hash: str | None = None
    git_sha: str | None = None
    created_at: float
    synthetic: bool = False

    @classmethod
    def of(cls, run: EvalRun) -> RunRef:
        s = run.summary
        return cls(
            run_name=s.run_name,
            uri=run.uri,
            model=s.model,
            model_hash=s.model_hash,
            git_sha=s.git_sha,
            created_at=s.created_at,
            synthetic=run.synthetic,
        )


class BenchmarkVerdict(BaseModel):
    """One benchmark (or a per-kind average) of one comparison. `delta` is candidate − baseline in the
    metric's own units (from the summaries); `score_delta` and its CI are the paired difference of the
    per-sample scores in points (higher is better), which the test and the verdict use. A `secondary` row
    (the unsafe side of an over-refusal benchmark) never sets the outcome."""

    benchmark: str
    kind: str
    metric: str
    higher_is_better: bool = True
    baseline_value: float | None = None
    candidate_value: float | None = None
    delta: float | None = None
    score_delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    test: str = "none"
    n_paired: int = 0
    n_unpaired: int = 0
    verdict: Verdict = "no_change"
    reason: str = ""
    secondary: bool = False


class Comparison(BaseModel):
    id: str
    compared_at: float
    baseline: RunRef
    candidate: RunRef
    settings: dict[str, Any]
    benchmarks: list[BenchmarkVerdict]
    problems: list[str]  # why the runs are incomparable (empty when they are comparable)
    notes: list[str]
    outcome: Outcome

    @property
    def exit_code(self) -> int:
        codes = {"ok": EXIT_OK, "regression": EXIT_REGRESSION, "incomparable": EXIT_INCOMPARABLE}
        return int(codes[self.outcome])


@dataclass(frozen=True)
class GateSettings:
    alpha: float = 0.05
    min_effect: float = 1.0
    correction: str = "holm"
    resamples: int = 10_000
    confidence: float = 0.95
    seed: int = 0
    max_unpaired_share: float = 0.05
    manifest_keys: tuple[str, ...] = ()
    only: tuple[str, ...] = ()  # compare just these benchmarks

    @classmethod
    def from_config(cls, cfg: ReportConfig, **overrides: Any) -> GateSettings:
        base = cls(
            alpha=cfg.alpha,
            min_effect=cfg.min_effect,
            correction=cfg.correction,
            resamples=cfg.bootstrap_resamples,
            confidence=cfg.confidence,
            seed=cfg.seed,
            max_unpaired_share=cfg.max_unpaired_share,
            manifest_keys=tuple(cfg.manifest_keys),
        )
        return GateSettings(**{**base.__dict__, **{k: v for k, v in overrides.items() if v is not None}})


# ---------------------------------------------------------------------------------------------- comparability


def version_differences(base: BenchmarkSummary, cand: BenchmarkSummary) -> list[str]:
    """Every field that makes two summaries of one benchmark incomparable, named."""
    out = []
    for attr in ("kind", "metric", "higher_is_better"):
        b, c = getattr(base, attr), getattr(cand, attr)
        if b != c:
            out.append(f"{attr}: {b!r} (baseline) ≠ {c!r} (candidate)")
    for key in sorted(set(base.version) | set(cand.version)):
        b, c = base.version.get(key), cand.version.get(key)
        if b != c:
            out.append(f"version['{key}']: {_show(b)} (baseline) ≠ {_show(c)} (candidate)")
    return out


def manifest_differences(base: dict[str, Any], cand: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    out = []
    for key in keys:
        b, c = _dig(base, key), _dig(cand, key)
        if b != c:
            out.append(f"manifest {key}: {_show(b)} (baseline) ≠ {_show(c)} (candidate)")
    return out


def _dig(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _show(v: Any) -> str:
    return "missing" if v is None else repr(v)


# ---------------------------------------------------------------------------------------------- pairing


@dataclass
class Items:
    """Per-item estimates of one benchmark of one run, whether each is one 0/1 verdict, and the items
    labelled unsafe (over-refusal; `labelled` is False when no sample has a label, as in older files)."""

    estimates: dict[str, float]
    single_binary: dict[str, bool] = field(default_factory=dict)
    all_items: set[str] = field(default_factory=set)
    unsafe: set[str] = field(default_factory=set)
    labelled: bool = False


def item_scores(run: EvalRun, name: str, metric: str) -> Items:
    """Scored samples grouped by item_id (unscored samples are counted by the summary, not guessed)."""
    t = run.samples(name, ["item_id", "sample_idx", "score", "label"])
    if t.group_by(["item_id", "sample_idx"]).aggregate([]).num_rows != t.num_rows:
        raise RunError(f"{run.store.url(name + '/samples.parquet')}: duplicate (item_id, sample_idx) rows")
    all_items = set(pc.unique(t["item_id"]).to_pylist())
    labels = t.filter(pc.is_valid(t["label"]))
    unsafe = {
        i
        for i, lab in zip(labels["item_id"].to_pylist(), labels["label"].to_pylist(), strict=True)
        if is_unsafe(lab)
    }
    scored = t.filter(pc.is_valid(t["score"]))
    bad = scored.filter(pc.or_(pc.less(scored["score"], 0.0), pc.greater(scored["score"], 1.0)))
    if bad.num_rows:
        raise RunError(
            f"{run.store.url(name + '/samples.parquet')}: score {bad['score'][0].as_py()} of item "
            f"'{bad['item_id'][0].as_py()}' is outside [0, 1]"
        )
    binary = pc.is_in(scored["score"], value_set=pa.array([0.0, 1.0]))
    scored = scored.append_column("binary", binary)
    g = scored.group_by("item_id").aggregate(
        [("score", "count"), ("score", "sum"), ("score", "mean"), ("binary", "all")]
    )
    k = stats.pass_k(metric)
    est, single = {}, {}
    for item, n, c, mean, is_bin in zip(
        g["item_id"].to_pylist(),
        g["score_count"].to_pylist(),
        g["score_sum"].to_pylist(),
        g["score_mean"].to_pylist(),
        g["binary_all"].to_pylist(),
        strict=True,
    ):
        if k > 1 and is_bin and n >= k:
            est[item] = stats.item_estimate([1.0] * round(c) + [0.0] * (n - round(c)), k)
        else:
            est[item] = float(mean)
        single[item] = n == 1 and bool(is_bin)
    return Items(est, single, all_items, unsafe, labels.num_rows > 0)


# ---------------------------------------------------------------------------------------------- comparison


def compare_runs(baseline: EvalRun, candidate: EvalRun, settings: GateSettings | None = None) -> Comparison:
    s = settings or GateSettings()
    problems = manifest_differences(baseline.manifest, candidate.manifest, s.manifest_keys)
    notes: list[str] = []
    b_names, c_names = set(baseline.summary.benchmarks), set(candidate.summary.benchmarks)
    names = list(s.only) if s.only else sorted(b_names, key=lambda n: _order(n, baseline))
    if not s.only:
        extra = sorted(c_names - b_names)
        if extra:
            notes.append(f"only in the candidate, not compared: {', '.join(extra)}")
    if not names:
        problems.append("no benchmarks to compare")

    verdicts: list[BenchmarkVerdict] = []
    paired: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in names:
        rows, pair = _compare_benchmark(baseline, candidate, name, s)
        verdicts += rows
        if pair is not None:
            paired[name] = pair
    verdicts += _aggregates(verdicts, paired, s)

    for secondary in (False, True):  # the gated rows are one family, the secondary rows another
        tested = [v for v in verdicts if v.p_value is not None and v.secondary == secondary]
        for v, p in zip(tested, stats.adjust([v.p_value for v in tested], s.correction), strict=True):
            v.p_adjusted = p
            _decide(v, s)
    gated = [v for v in verdicts if not v.secondary]
    problems += [f"{v.benchmark}: {v.reason}" for v in gated if v.verdict == "incomparable"]
    side = [v.benchmark for v in verdicts if v.secondary]
    if side:
        notes.append(
            f"{', '.join(side)}: compliance with the unsafe contrast prompts, tested apart from the refusal "
            "rate on safe prompts; reported, not gated (a family of its own, never the exit code)"
        )
    outcome: Outcome = (
        "incomparable"
        if problems
        else "regression"
        if any(v.verdict == "regression" for v in gated)
        else "ok"
    )
    b_ref, c_ref = RunRef.of(baseline), RunRef.of(candidate)
    settings_d = {k: list(v) if isinstance(v, tuple) else v for k, v in s.__dict__.items()}
    ident = stable_hash(
        {"b": [b_ref.uri, b_ref.created_at], "c": [c_ref.uri, c_ref.created_at], "s": settings_d}
    )
    return Comparison(
        id=ident[:16],
        compared_at=time.time(),
        baseline=b_ref,
        candidate=c_ref,
        settings=settings_d,
        benchmarks=verdicts,
        problems=problems,
        notes=notes,
        outcome=outcome,
    )


def _order(name: str, run: EvalRun) -> tuple[int, int, str]:
    """Table order: by kind (safety, over-refusal, reasoning), then the paper's column order, then name."""
    kind = run.summary.benchmarks[name].kind
    cat = published.info(name)
    return KIND_ORDER.index(kind), cat.order if cat else 10_000, name


def _compare_benchmark(
    baseline: EvalRun, candidate: EvalRun, name: str, s: GateSettings
) -> tuple[list[BenchmarkVerdict], tuple[np.ndarray, np.ndarray] | None]:
    """The benchmark's row (and an over-refusal benchmark's unsafe-side row) and its paired per-item
    estimates, None when the runs are incomparable on it."""
    b_sum, c_sum = baseline.summary.benchmarks.get(name), candidate.summary.benchmarks.get(name)
    ref = b_sum or c_sum
    v = BenchmarkVerdict(
        benchmark=name,
        kind=ref.kind if ref else "?",
        metric=ref.metric if ref else "?",
        higher_is_better=ref.higher_is_better if ref else True,
        baseline_value=b_sum.value if b_sum else None,
        candidate_value=c_sum.value if c_sum else None,
    )
    if b_sum is None or c_sum is None:
        v.verdict, v.reason = "incomparable", f"missing in the {'baseline' if b_sum is None else 'candidate'}"
        return [v], None
    v.delta = c_sum.value - b_sum.value
    diffs = version_differences(b_sum, c_sum)
    if diffs:
        v.verdict, v.reason = "incomparable", "; ".join(diffs)
        return [v], None
    b_items, c_items = item_scores(baseline, name, b_sum.metric), item_scores(candidate, name, c_sum.metric)
    common = sorted(set(b_items.estimates) & set(c_items.estimates))
    union = b_items.all_items | c_items.all_items
    v.n_paired, v.n_unpaired = len(common), len(union) - len(common)
    if not common or v.n_unpaired > s.max_unpaired_share * len(union):
        b_miss = len(union - set(b_items.estimates))
        c_miss = len(union - set(c_items.estimates))
        v.verdict = "incomparable"
        v.reason = (
            f"{v.n_unpaired} of {len(union)} items do not pair (no scored sample: baseline {b_miss}, "
            f"candidate {c_miss}; allowed {s.max_unpaired_share:.0%})"
        )
        return [v], None
    if v.kind != "overrefusal":
        return [v], _test(v, common, b_items, c_items, s)
    if not (b_items.labelled or c_items.labelled) and (
        "compliance_rate_unsafe" in b_sum.extra or "compliance_rate_unsafe" in c_sum.extra
    ):
        v.verdict = "incomparable"
        v.reason = (
            "no sample has a `label` (files written before star1 recorded it), so the safe prompts the "
            "refusal rate is over cannot be told from the unsafe ones; rerun `star1 eval` for these runs "
            "(stored generations are re-used)"
        )
        return [v], None
    unsafe = b_items.unsafe | c_items.unsafe
    safe = [i for i in common if i not in unsafe]
    if not safe:
        v.verdict, v.reason = "incomparable", "no safe prompt pairs: the refusal rate is over none"
        return [v], None
    rows, pair = [v], _test(v, safe, b_items, c_items, s)
    contrast = [i for i in common if i in unsafe]
    if contrast:
        b_u, c_u = b_sum.extra.get("compliance_rate_unsafe"), c_sum.extra.get("compliance_rate_unsafe")
        u = BenchmarkVerdict(
            benchmark=f"{name}:unsafe",
            kind=v.kind,
            metric="compliance_rate_unsafe",
            higher_is_better=False,
            baseline_value=b_u,
            candidate_value=c_u,
            delta=None if b_u is None or c_u is None else c_u - b_u,
            secondary=True,
        )
        _test(u, contrast, b_items, c_items, s)
        rows.append(u)
    return rows, pair


def _test(
    v: BenchmarkVerdict, ids: list[str], b_items: Items, c_items: Items, s: GateSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Test the paired estimates of `ids` into `v`: exact McNemar when every item is one 0/1 verdict in both
    runs, else the paired bootstrap. Returns the paired arrays (baseline, candidate)."""
    b_arr = np.array([b_items.estimates[i] for i in ids])
    c_arr = np.array([c_items.estimates[i] for i in ids])
    single = all(b_items.single_binary[i] and c_items.single_binary[i] for i in ids)
    test = stats.mcnemar_exact if single else stats.paired_bootstrap
    _fill(v, test(b_arr, c_arr, s.confidence, s.resamples, s.seed))
    return b_arr, c_arr


def _aggregates(
    verdicts: list[BenchmarkVerdict], paired: dict[str, tuple[np.ndarray, np.ndarray]], s: GateSettings
) -> list[BenchmarkVerdict]:
    """Per-kind averages of two or more comparable benchmarks, tested with a stratified bootstrap."""
    out = []
    for kind, label in AGGREGATES.items():
        members = [v for v in verdicts if v.kind == kind and v.benchmark in paired]
        if len(members) < 2:
            continue
        same_dir = len({m.higher_is_better for m in members}) == 1
        agg = BenchmarkVerdict(
            benchmark=label,
            kind=kind,
            metric="mean of " + ", ".join(m.benchmark for m in members),
            higher_is_better=members[0].higher_is_better if same_dir else True,
            baseline_value=float(np.mean([m.baseline_value for m in members])) if same_dir else None,
            candidate_value=float(np.mean([m.candidate_value for m in members])) if same_dir else None,
        )
        if same_dir:
            agg.delta = agg.candidate_value - agg.baseline_value
        res = stats.stratified_bootstrap(
            [paired[m.benchmark][0] for m in members],
            [paired[m.benchmark][1] for m in members],
            s.confidence,
            s.resamples,
            s.seed,
        )
        _fill(agg, res)
        out.append(agg)
    return out


def _fill(v: BenchmarkVerdict, res: stats.TestResult) -> None:
    v.test, v.score_delta, v.p_value, v.n_paired = res.test, res.delta, res.p_value, res.n
    v.ci_low = None if np.isnan(res.ci_low) else res.ci_low
    v.ci_high = None if np.isnan(res.ci_high) else res.ci_high


def _decide(v: BenchmarkVerdict, s: GateSettings) -> None:
    assert v.p_adjusted is not None and v.score_delta is not None
    significant = v.p_adjusted < s.alpha
    big = abs(v.score_delta) >= s.min_effect
    p = f"p_adj={v.p_adjusted:.3g}"
    if significant and big:
        v.verdict = "regression" if v.score_delta < 0 else "improvement"
        v.reason = f"{p} < {s.alpha:g}, |Δ| ≥ {s.min_effect:g}"
    elif significant:
        v.verdict, v.reason = "no_change", f"{p} < {s.alpha:g} but |Δ| < min effect {s.min_effect:g}"
    else:
        v.verdict, v.reason = "no_change", f"{p} ≥ {s.alpha:g}"
