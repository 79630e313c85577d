"""`report:` — the scorecard and the regression gate (`star1 report`, `star1 compare`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from star1.config.base import Strict


class ReportConfig(Strict):
    """Defaults of `star1 report` / `star1 compare`; each has a command-line option too."""

    alpha: float = Field(0.05, gt=0, lt=1, description="significance level of the regression gate")
    min_effect: float = Field(
        1.0, ge=0, description="smallest drop, in points, that counts as a regression even when significant"
    )
    correction: Literal["holm", "bonferroni", "fdr_bh", "none"] = Field(
        "holm", description="multiplicity adjustment across the benchmarks of one comparison"
    )
    bootstrap_resamples: int = Field(10_000, ge=1000, description="paired bootstrap resamples")
    confidence: float = Field(0.95, gt=0, lt=1, description="confidence level of intervals")
    seed: int = Field(0, description="bootstrap seed: the same runs give the same verdict")
    max_unpaired_share: float = Field(
        0.05,
        ge=0,
        le=1,
        description="largest share of a benchmark's items that may lack a scored sample in either run before "
        "the runs count as incomparable on it (unscored items could hide a regression)",
    )
    manifest_keys: list[str] = Field(
        default_factory=list,
        description="dotted paths into the runs' manifest.json that must be equal too (e.g. params.judge)",
    )
    folder: str = Field("report", description="store folder for scorecards and the comparison history")
    baseline: str | None = Field(
        None,
        description="the nightly job's baseline eval run (a run name under <store>/eval/, a folder or URI); "
        "`star1 nightly --baseline` and env STAR1_BASELINE override it",
    )
    reference: str | None = Field(None, description="scorecard row the deltas are taken against")
    published: list[str] = Field(
        default_factory=list, description="paper rows to include: keys (7b-star1), sizes (7b) or 'all'"
    )
