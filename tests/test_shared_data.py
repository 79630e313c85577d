"""Optional: a pool from the real AdvBench, HarmBench and Do-Not-Answer files in ../shared (skips without)."""

from __future__ import annotations

import pytest

from star1.config import parse_config
from star1.stages.collect import run_collect
from star1.store import Store
from tests.conftest import SHARED

DATA = SHARED / "data"
pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(not (DATA / "sources").is_dir(), reason="no ../shared/data"),
]


def test_real_sources_pool(tmp_path):
    dna = sorted(str(p) for p in (DATA / "sources" / "do-not-answer").glob("*.txt"))
    cfg = parse_config(
        {
            "store": {"uri": str(tmp_path / "store")},
            "ray": {"enabled": False},
            "collect": {
                "sources": [
                    {
                        "name": "AdvBench",
                        "loader": {"uri": str(DATA / "sources/advbench/harmful_behaviors.csv")},
                        "prompt_column": "goal",
                        "ngram": 8,
                    },
                    {
                        "name": "HarmBench",
                        "loader": {"uri": str(DATA / "sources/harmbench/harmbench_behaviors_text_all.csv")},
                        "prompt_column": "Behavior",
                        "ngram": 8,
                        "filters": [{"column": "FunctionalCategory", "op": "ne", "value": "contextual"}],
                    },
                    {"name": "DoNotAnswer", "loader": {"uri": dna}, "ngram": 7},
                ],
                "eval_sets": [
                    {
                        "name": "StrongREJECT",
                        "loader": {"uri": str(DATA / "benchmarks/strongreject/strongreject_dataset.csv")},
                        "prompt_column": "forbidden_prompt",
                    },
                    {
                        "name": "JBB",
                        "loader": {"uri": str(DATA / "benchmarks/jbb-behaviors/harmful-behaviors.csv")},
                        "prompt_column": "Goal",
                    },
                    {
                        "name": "XSTest",
                        "loader": {"uri": str(DATA / "benchmarks/xstest/xstest_prompts.csv")},
                        "prompt_column": "prompt",
                        "filters": [{"column": "label", "op": "eq", "value": "safe"}],
                    },
                ],
            },
        }
    )
    res = run_collect(cfg, Store.from_uri(cfg.store.uri), use_ray=False, log=lambda m: None)
    c = res.manifest.counts
    assert c["sources"]["AdvBench"]["read"] == 520
    assert (
        c["sources"]["HarmBench"]["read"] == 400 and c["sources"]["HarmBench"]["rejected"]["filtered"] == 100
    )
    assert c["sources"]["DoNotAnswer"]["read"] == 939
    assert c["eval_sets"] == {
        "StrongREJECT": {"read": 313, "prompts": 313},
        "JBB": {"read": 100, "prompts": 100},
        "XSTest": {"read": 450, "prompts": 250},
    }
    for s in c["sources"].values():
        assert s["read"] == s["kept"] + sum(s["rejected"].values())
    # JBB-Behaviors reuses AdvBench and HarmBench behaviours: decontamination must find them
    rej = c["sources"]["AdvBench"]["rejected"]
    assert rej.get("ngram_overlap", 0) + rej.get("tfidf_overlap", 0) >= 10
    # AdvBench is famously repetitive (many near-identical bomb/hacking requests)
    assert sum(rej.values()) > 100
    assert 0 < c["total"]["kept"] < c["total"]["read"]
