"""The whole curation pipeline on a local Ray cluster through the fault-injecting server: actor pools sharing
one limiter actor, every accounting identity, the response cache across reruns, selection statistics."""

from __future__ import annotations

import json
import time

import pytest

from star1.stages.runner import BENIGN, CURATE, run_stages
from star1.store import Store
from tests.fake_llm import FakeLLMServer, Faults
from tests.scripted import RESPONDERS
from tests.test_curate import PROMPTS, config, write_pool

pytestmark = pytest.mark.slow
STAGES = [*CURATE, "select", *BENIGN, "export"]
PLAN = {
    "generator-m:TRUNC": ["truncated"] * 40,  # 4 rows × the paper's 10 samples, all cut off
    "classifier-m:GARBAGE": ["malformed_json"] * 100,
}


def test_pipeline_on_ray_with_shared_limit_faults_and_cache(tmp_path, ray_local):
    prompts = [f"{p} (variant {i})" for i in range(4) for p in PROMPTS]  # 48 rows
    faults = Faults(p500=0.05, pdrop=0.02, rps=8, retry_after_s=0.2, plan=PLAN)
    with FakeLLMServer(RESPONDERS, faults, seed=3) as srv:
        store = Store.from_uri(str(tmp_path))
        write_pool(store, prompts)
        roles = {r: {"rps": 8} for r in ("classifier", "generator", "judge", "rewriter")}
        cfg = config(srv, str(tmp_path), roles=roles, curate={"actors": 2, "batch_size": 8, "select_n": 10})
        res = run_stages(STAGES, cfg, store, use_ray=True, log=print)
        answered = srv.stats["ok"]
        # every stage: in = out + rejected; usage accounts for every request the server saw
        for name in STAGES[:-1]:
            c = res[name].manifest.counts
            assert c["in"] == c["out"] + sum(c["rejected"].values()), name
        requests = sum(u["requests"] for name in STAGES[:-1] for u in res[name].manifest.usage.values())
        assert requests == srv.stats["requests"]
        assert res["classify"].manifest.counts == {"in": 48, "out": 44, "rejected": {"unparseable": 4}}
        assert res["generate"].manifest.counts["rejected"] == {
            "no_think_block": 4,
            "other_category": 4,
            "truncated": 4,
        }
        # output order follows input order whatever actor answered
        labelled = store.read_table("classify/data.parquet").to_pylist()
        assert [r["prompt"] for r in labelled] == [p for p in prompts if "GARBAGE" not in p]
        # two actors shared one limiter: the server rarely had to refuse
        assert srv.stats["429"] <= 0.1 * srv.stats["ok"]
        # selection statistics: 10 kept, balanced, and the card says so
        sel = res["select"].manifest.counts
        assert sel["out"] == 10 and sel["eligible"] == 28 and sum(sel["composition"]["source"].values()) == 10
        records = json.loads(store.read_bytes("export/star1.json"))
        assert len(records) == 10 and len({r["id"] for r in records}) == 10

        # rerun everything from scratch: the response cache answers every call, the server sees nothing new
        again = run_stages(STAGES, cfg, store, force=True, use_ray=True, log=print)
        assert srv.stats["ok"] == answered
        assert all(u["requests"] == 0 for name in STAGES[:-1] for u in again[name].manifest.usage.values())
        assert json.loads(store.read_bytes("export/star1.json")) == records


def test_pool_waits_for_its_actors_then_goes_ahead_with_those_that_started(ray_local):
    """5 actors at half a CPU each need 2.5 CPUs; the cluster has 2. No request is sent before the whole pool
    is up or the wait has passed; then the 4 that started do all the rows."""
    from star1.config import RoleConfig
    from star1.stages.llm_runner import run_task
    from star1.stages.tasks import ClassifyTask

    rows = [{"id": f"r{i}", "source": "t", "prompt": f"p{i}", "source_row": i} for i in range(20)]
    with FakeLLMServer(RESPONDERS) as srv:
        cfg = RoleConfig(base_url=srv.base_url, model="classifier-m")
        t0 = time.time()
        out = run_task(ClassifyTask(), rows, cfg, None, use_ray=True, actors=5, batch_size=2, start_wait_s=4)
        assert srv.first_request is not None and srv.first_request - t0 >= 4
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    assert not any(r.get("_reject") for r in out)
