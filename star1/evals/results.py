"""Per-sample eval results and per-benchmark summaries: the contract between `star1 eval` (the writer) and
`star1 report` / `star1 compare` (the readers).

One eval run is a folder in the store (`eval/<run_name>/` by default):

    manifest.json                  the run's manifest (stage "eval"): everything that moves scores
    summary.json                   RunSummary: the model and every benchmark's summary
    <benchmark>/samples.parquet    one row per (item, sample), SAMPLE schema
    <benchmark>/summary.json       BenchmarkSummary

`score` is the per-sample verdict on the benchmark's own metric, in [0, 1], higher is better (safe = 1 on a
safety benchmark, correct = 1 on a reasoning one); null when the sample could not be scored, with the reason
in `error` and the sample counted under `unscored`, never as a silent zero. Two runs are comparable on a
benchmark only when their `version` maps are equal (data, prompt template, generation profile, scorer).

`label` (over-refusal benchmarks) is the prompt's label, `safe` or `unsafe` (see `is_unsafe`); the headline
refusal rate is over the safe prompts. It is null on other kinds, and absent from files written before it
was added: readers fill it with nulls (`OPTIONAL`), and a null label counts as safe.
`BenchmarkSummary.n_rate_items` is the number of items `value` is a mean over (over-refusal: the safe prompts
with a scored sample); `binomial` says each of them is one 0/1 verdict, so `value` is a proportion of
`n_rate_items`. Both are None in summaries written before they were added.
"""

from __future__ import annotations

from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, Field

SAMPLE = pa.schema(
    [
        pa.field("benchmark", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("sample_idx", pa.int32(), nullable=False),
        pa.field("category", pa.string()),  # harm category, subject, split (for breakdowns)
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("output", pa.string()),  # the model's full text (reasoning included)
        pa.field("finish_reason", pa.string()),
        pa.field("answer", pa.string()),  # what the scorer extracted (final answer, letter, code, verdict)
        pa.field("verdict", pa.string()),  # outcome label: safe / unsafe / correct / full_refusal / …
        pa.field("score", pa.float64()),  # [0, 1], higher is better; null = unscored
        pa.field("judge_output", pa.string()),  # raw judge text, when a model judged
        pa.field("p_unsafe", pa.float64()),  # guard-model probability, where logprobs were available
        pa.field("error", pa.string()),  # why a sample is unscored
        pa.field("label", pa.string()),  # over-refusal: safe / unsafe (null elsewhere; absent in older files)
    ]
)
OPTIONAL = ("label",)  # columns older files lack: readers fill them with nulls

Kind = Literal["safety", "overrefusal", "reasoning"]


def is_unsafe(label: str | None) -> bool:
    """An over-refusal prompt labelled unsafe (a contrast prompt); anything else, null included, is safe."""
    return (label or "safe").strip().lower() == "unsafe"


class BenchmarkSummary(BaseModel):
    """One benchmark's result in one run. `value` is in percent."""

    benchmark: str
    kind: Kind
    metric: str = Field(description="e.g. safe_rate, compliance_rate, refusal_rate, pass@1, accuracy")
    value: float
    higher_is_better: bool = True
    stderr: float | None = None  # of `value`, in percent points
    n_items: int
    n_rate_items: int | None = None  # items `value` is a mean over (over-refusal: safe prompts); None: older
    binomial: bool | None = None  # each of those items is one 0/1 verdict: `value` is a proportion
    n_samples: int
    unscored: int = 0
    outcomes: dict[str, int] = Field(default_factory=dict)  # verdict -> count
    by_category: dict[str, float] = Field(default_factory=dict)  # category -> value (percent)
    extra: dict[str, float] = Field(default_factory=dict)  # secondary metrics (percent)
    version: dict[str, str] = Field(default_factory=dict)  # what must match for two runs to be comparable


class RunSummary(BaseModel):
    """Every benchmark of one eval run of one model."""

    run_name: str
    model: str  # name or path as configured
    model_hash: str | None = None  # content hash of weights (or the endpoint's model id for API engines)
    engine: str | None = None  # vllm / openai / …
    created_at: float
    git_sha: str | None = None
    benchmarks: dict[str, BenchmarkSummary] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)


def samples_path(benchmark: str) -> str:
    return f"{benchmark}/samples.parquet"


def summary_path(benchmark: str | None = None) -> str:
    return f"{benchmark}/summary.json" if benchmark else "summary.json"


def confidence_interval(s: BenchmarkSummary, confidence: float) -> tuple[tuple[float, float], str]:
    """`value`'s interval in percent, and how it was made: a Wilson interval on the items `value` is a
    proportion of when each is one 0/1 verdict (or `stderr` is missing or zero), else value ± z·stderr;
    clipped to [0, 100]. The scorecard and the experiment tracker both show this one."""
    from scipy import stats as sps

    if not s.binomial and s.stderr:
        z = float(sps.norm.ppf(0.5 + confidence / 2))
        lo, hi = s.value - z * s.stderr, s.value + z * s.stderr
        return (max(0.0, lo), min(100.0, hi)), "stderr"
    n = max(s.n_items if s.n_rate_items is None else s.n_rate_items, 1)
    k = min(n, max(0, round(s.value / 100 * n)))
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return (100.0 * ci.low, 100.0 * ci.high), "wilson"
