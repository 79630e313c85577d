"""Every shipped config validates and resolves its sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from star1.config import load_config
from star1.stages.collect import resolve_specs

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_is_valid(path):
    cfg = load_config(path)
    sources, evals = resolve_specs(cfg.collect, cfg.base_dir)
    assert len(sources) == 18 and len(evals) == 5
