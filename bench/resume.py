"""Kill the generate stage with SIGKILL at ~50%, rerun it, and count model calls paid twice.

A `star1 generate` process runs against the test server (fixed latency); when half of the rows have been
answered it is killed with SIGKILL. The rerun must re-use every call that finished (the response cache in
the store) and may repeat at most the calls that were in flight when the process died.

    python bench/resume.py [--rows 400] [--concurrency 16] [--latency 0.1] [--ray]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from star1.schemas import LABELLED, to_table  # noqa: E402
from star1.stage_run import adopt  # noqa: E402
from star1.store import Store  # noqa: E402
from tests.fake_llm import FakeLLMServer, Faults  # noqa: E402
from tests.scripted import RESPONDERS, llm_config  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--kill-at", type=float, default=0.5)
    ap.add_argument("--ray", action="store_true", help="run the stage on a local Ray cluster (2 actors)")
    args = ap.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="star1-resume-") as tmp,
        FakeLLMServer(RESPONDERS, Faults(latency_s=args.latency)) as srv,
    ):
        store = Store.from_uri(f"{tmp}/store")
        rows = [
            {
                "id": f"{i:06d}",
                "source": "bench",
                "prompt": f"Question {i}: how do I steal a bike?",
                "source_row": i,
                "source_meta": None,
                "category": ["Illicit / Criminal Behavior"],
            }
            for i in range(args.rows)
        ]
        adopt(store, "classify/data.parquet", to_table(rows, LABELLED))
        cfg = {
            "store": {"uri": f"{tmp}/store"},
            "ray": {"enabled": args.ray, "num_cpus": 2},
            "curate": {"actors": 2, "batch_size": max(1, args.rows // 8)},
            "llm": llm_config(srv.base_url, generator={"concurrency": args.concurrency}),
        }
        Path(tmp, "cfg.yaml").write_text(json.dumps(cfg))  # JSON is valid YAML
        cmd = [
            sys.executable,
            "-c",
            "from star1.cli import app; app()",
            "generate",
            "--config",
            f"{tmp}/cfg.yaml",
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}

        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        target = int(args.rows * args.kill_at)
        while srv.stats["ok"] < target and proc.poll() is None:
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(
            args.latency + 1.0
        )  # requests in flight at the kill finish server-side; their answers are lost
        answered = len(srv.prompts)  # distinct rows the server answered for the killed run
        ok_before = srv.stats["ok"]
        cached = len(store.list("cache/llm", suffix=".json"))
        print(
            f"killed at {answered} answered calls of {args.rows} rows; {cached} responses were in the cache"
        )

        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"rerun failed:\n{done.stderr[-2000:]}")
        rerun_calls = srv.stats["ok"] - ok_before
        repeated = sum(1 for n in srv.prompts.values() if n > 1)
        assert rerun_calls == (args.rows - answered) + repeated
        lost_in_flight = answered - cached  # answered by the server, but the client died before caching them
        manifest = store.read_json("generate/manifest.json")
        window = args.concurrency * (2 if args.ray else 1)
        print(
            f"rerun: {time.perf_counter() - t0:.1f} s, {manifest['counts']['out']} rows out, "
            f"{manifest['usage']['generator']['cache_hits']} answers from the cache, {rerun_calls} new calls"
        )
        print(
            f"calls repeated: {repeated} (in flight or not yet cached when killed: {lost_in_flight}; "
            f"in-flight window: {window}); cached calls repeated: {repeated - lost_in_flight}"
        )
        print(
            json.dumps(
                {
                    "rows": args.rows,
                    "answered_at_kill": answered,
                    "cached_at_kill": cached,
                    "repeated": repeated,
                    "cached_repeated": repeated - lost_in_flight,
                    "window": window,
                }
            )
        )


if __name__ == "__main__":
    main()
