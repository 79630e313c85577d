"""Kill the generate stage with SIGKILL at ~50%, rerun it, and count model calls paid twice.

A `star1 generate` process runs against the test server (fixed latency); when half of the rows have been
answered it is killed with SIGKILL. The rerun must re-use every call that finished (the response cache in
the store) and may repeat at most the calls that were in flight when the process died. Paid-twice calls
are counted from the server's own log of request bodies, each matched to the row it belongs to.

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

from star1.config import parse_config  # noqa: E402
from star1.llm.client import LLMClient  # noqa: E402
from star1.schemas import LABELLED, to_table  # noqa: E402
from star1.stage_run import adopt  # noqa: E402
from star1.stages.tasks import GenerateTask  # noqa: E402
from star1.store import Store  # noqa: E402
from tests.fake_llm import FakeLLMServer, Faults, body_hash  # noqa: E402
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
            "-m",
            "star1",
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
        cached_at_kill = {p.rsplit("/", 1)[-1][:-5] for p in store.list("cache/llm", suffix=".json")}
        time.sleep(args.latency + 1.0)  # requests in flight at the kill finish server-side; answers lost
        answered_at_kill = len(srv.answered)
        print(
            f"killed at {answered_at_kill} answered calls of {args.rows}; {len(cached_at_kill)} were cached"
        )

        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"rerun failed:\n{done.stderr[-2000:]}")
        rerun_s = time.perf_counter() - t0
        # from the server's own log: which request bodies were answered more than once, and were they cached?
        role = parse_config(cfg).llm.role("generator")
        client = LLMClient("generator", role, template_hash=GenerateTask().template_hash())
        task = GenerateTask(options={"other": "drop"})
        key_of_body = {}
        for r in rows:
            msgs = task.ask(r).messages
            key_of_body[body_hash(client.body(msgs, None))] = client.key(msgs, None)
        twice = [h for h, n in srv.answered.items() if n > 1]
        cached_twice = [h for h in twice if key_of_body.get(h) in cached_at_kill]
        unknown = [h for h in srv.answered if h not in key_of_body]
        manifest = store.read_json("generate/manifest.json")
        window = args.concurrency * (2 if args.ray else 1)
        print(
            f"rerun: {rerun_s:.1f} s, {manifest['counts']['out']} rows out, "
            f"{manifest['usage']['generator']['cache_hits']} answers from the cache"
        )
        print(
            f"request bodies answered twice: {len(twice)} (in-flight window {window}); of them cached "
            f"before the kill (paid twice for nothing): {len(cached_twice)}; not matched to a row: "
            f"{len(unknown)}"
        )
        print(
            json.dumps(
                {
                    "rows": args.rows,
                    "answered_at_kill": answered_at_kill,
                    "cached_at_kill": len(cached_at_kill),
                    "answered_twice": len(twice),
                    "cached_answered_twice": len(cached_twice),
                    "rows_out": manifest["counts"]["out"],
                    "window": window,
                    "rerun_s": round(rerun_s, 2),
                }
            )
        )


if __name__ == "__main__":
    main()
