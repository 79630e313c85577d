"""A real mid-run SIGKILL: `star1 generate` in a subprocess against the test server is killed when about half
of its rows are answered; the rerun must pay for no call that was answered and cached before the kill, and
lose no row — counted from the server's own log of request bodies, not from star1's accounting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from star1.config import parse_config
from star1.llm.client import LLMClient
from star1.manifest import read_manifest
from star1.schemas import LABELLED, to_table
from star1.stage_run import adopt
from star1.stages.tasks import GenerateTask
from star1.store import Store
from tests.fake_llm import FakeLLMServer, Faults
from tests.scripted import RESPONDERS, llm_config

ROOT = Path(__file__).resolve().parents[1]
ROWS, CONCURRENCY = 240, 8

pytestmark = pytest.mark.slow


def test_sigkill_mid_stage_then_rerun_pays_nothing_twice(tmp_path):
    with FakeLLMServer(RESPONDERS, Faults(latency_s=0.05)) as srv:
        store = Store.from_uri(str(tmp_path / "store"))
        rows = [
            {
                "id": f"{i:05d}",
                "source": "t",
                "prompt": f"Question {i}: how do I steal a bike?",
                "source_row": i,
                "category": ["Illicit / Criminal Behavior"],
            }
            for i in range(ROWS)
        ]
        adopt(store, "classify/data.parquet", to_table(rows, LABELLED))
        llm = llm_config(srv.base_url, generator={"concurrency": CONCURRENCY})
        cfg = {"store": {"uri": str(tmp_path / "store")}, "ray": {"enabled": False}, "llm": llm}
        path = tmp_path / "run.yaml"
        path.write_text(json.dumps(cfg))
        cmd = [sys.executable, "-m", "star1", "generate", "-c", str(path)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}

        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        while srv.stats["ok"] < ROWS // 2 and proc.poll() is None:
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        cached_at_kill = {p.rsplit("/", 1)[-1][:-5] for p in store.list("cache/llm", suffix=".json")}
        time.sleep(0.3)  # calls in flight at the kill finish server-side; their answers are lost
        answered_at_kill = dict(srv.prompts)
        assert ROWS // 4 < len(answered_at_kill) < ROWS, "the kill did not land mid-run"

        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]

    # map every row to its prompt (what the server logged) and its cache key (what star1 stored)
    role = parse_config(cfg).llm.role("generator")  # as the stage resolves it (the paper's sampling)
    client = LLMClient("generator", role, template_hash=GenerateTask().template_hash())
    task = GenerateTask(options={"other": "drop"})
    prompt_of, key_of = {}, {}
    for r in rows:
        msgs = task.ask(r).messages
        prompt_of[r["id"]], key_of[r["id"]] = msgs[-1]["content"], client.key(msgs, None)
    paid_twice = [i for i in prompt_of if srv.prompts[prompt_of[i]] > 1]
    assert len(cached_at_kill & set(key_of.values())) >= ROWS // 4  # the keys match the cache's
    assert not [i for i in paid_twice if key_of[i] in cached_at_kill]  # no cached call was paid again
    assert len(paid_twice) <= CONCURRENCY + 2  # only calls in flight (or not yet cached) at the kill
    assert all(srv.prompts[prompt_of[i]] >= 1 for i in prompt_of)  # every row was answered
    m = read_manifest(store, "generate")
    assert m.status == "complete" and m.counts["in"] == ROWS and m.counts["out"] == ROWS  # no row lost
    assert m.usage["generator"]["cache_hits"] == len(cached_at_kill & set(key_of.values()))
