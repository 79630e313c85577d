"""`curate:` — knobs of the model-driven stages."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from star1.config.base import Strict


class CurateConfig(Strict):
    """Knobs of the model-driven stages (classify → generate → score → select → benign → export)."""

    actors: int = Field(2, ge=1, description="Ray actors per stage (each holds one client)")
    batch_size: int = Field(32, ge=1, description="rows per actor call; all rows of a call run concurrently")
    actor_start_wait_s: float = Field(
        120,
        ge=0,
        description="hold the actors until the whole pool has started, at most this long (so early actors "
        "do not spend a burst budget alone); past it the started ones go ahead; 0: each goes as it starts",
    )
    other: Literal["drop", "strip"] = Field(
        "drop",
        description="drop: items whose labels include 'Other' are dropped (the paper); strip: 'Other' is "
        "removed from mixed label lists and the item kept",
    )
    accept_failures: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of rows whose calls may fail (outages) and be recorded as rejects; above it the "
        "stage ends incomplete and a rerun retries only those rows",
    )
    max_reject_share: float = Field(
        0.5, ge=0, le=1, description="a model stage rejecting more than this share of its rows fails"
    )
    limiter_idle_exit_s: float = Field(900, gt=0, description="a shared limiter actor exits unused this long")
    benign_threshold: int = Field(
        5, ge=1, le=5, description="benign add-on: every 1-5 score must reach this (paper: 5)"
    )
    select_threshold: int = Field(10, ge=0, le=10, description="every score must reach this (paper: 10)")
    select_n: int = Field(1000, ge=1)
    benign: bool = Field(True, description="build the benign add-on (STAR-benign-915 style)")
