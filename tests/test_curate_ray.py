"""The curate stages on a local Ray cluster: actor pools sharing one limiter actor, results in order."""

from __future__ import annotations

import pytest

from star1.stages.curate import run_model_stage, run_select
from star1.store import Store
from tests.fake_llm import FakeLLMServer, Faults
from tests.scripted import RESPONDERS
from tests.test_curate import PROMPTS, config, write_pool

pytestmark = pytest.mark.slow


def test_ray_actor_pool_with_shared_limit_and_faults(tmp_path, ray_local):
    prompts = [f"{p} (variant {i})" for i in range(4) for p in PROMPTS]  # 48 rows
    faults = Faults(p500=0.05, rps=8, retry_after_s=0.2, plan={"TRUNC": ["truncated"] * 20})
    with FakeLLMServer(RESPONDERS, faults, seed=3) as srv:
        store = Store.from_uri(str(tmp_path))
        write_pool(store, prompts)
        cfg = config(
            srv,
            str(tmp_path),
            roles={r: {"rps": 8} for r in ("classifier", "generator", "judge")},
            curate={"actors": 2, "batch_size": 8, "select_n": 10},
        )
        res = {
            s: run_model_stage(s, cfg, store, use_ray=True, log=print)
            for s in ("classify", "generate", "score")
        }
        sel = run_select(cfg, store, log=print)
    for r in [*res.values(), sel]:
        c = r.manifest.counts
        assert c["in"] == c["out"] + sum(c["rejected"].values())
    assert res["classify"].manifest.counts == {"in": 48, "out": 44, "rejected": {"unparseable": 4}}
    assert res["generate"].manifest.counts["rejected"] == {
        "no_think_block": 4,
        "only_other": 4,
        "truncated": 4,
    }
    # output order follows input order whatever actor answered
    labelled = store.read_table("classify/data.parquet").to_pylist()
    assert [r["prompt"] for r in labelled] == [p for p in prompts if "GARBAGE" not in p]
    # two actors shared one limiter: the server rarely had to refuse
    assert srv.stats["429"] <= 0.1 * srv.stats["ok"]
    assert sel.manifest.counts["out"] == 10
