"""Throughput against providers that enforce their published limit in different ways: how close to the
ceiling, how many rows lost, how many 429s per success — star1 as a user runs it, next to baselines.

The test server (tests/fake_llm.py, in its own process) answers after a fixed latency and enforces 1,200
requests per minute one of three ways:
- `sliding`: a sliding 60 s window (a minute's budget may be spent in a burst);
- `strict`: at most 20 in any rolling second;
- `bucket`: a token bucket of 20, refilled at 20/s, with integer-second Retry-After only.
Each runs under three conditions: the advertised limit configured (`rpm: 1200`), nothing configured, and the
limit configured with 5% of requests failing with a 500 (a 500 still spends its slot at the provider).

star1 runs exactly as a user would: `star1 classify` as a subprocess on a pool of `--prompts` rows (Ray start
included in its wall time), with its shipped defaults (2 actors × 16 in flight) and tuned (4 actors × 32).
Baselines on the same server: a plain asyncio client with the same in-flight window, and distilabel when
`--distilabel PYTHON` names a virtualenv that has it. Every client gets the same retry budget
(`--attempts`, 8 = star1's default) and the same definition of a lost row: one without a usable answer.

Reported: successful requests/s ÷ 20 over the provider's span (first request → last answer) and over the
client's wall time, rows lost, 429s per success.

    python bench/api_throughput.py [--prompts 2000] [--latency 0.25] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from star1.schemas import PROMPT, to_table  # noqa: E402
from star1.stage_run import adopt  # noqa: E402
from star1.store import Store  # noqa: E402
from tests.fake_llm import FakeLLMProcess, Faults  # noqa: E402
from tests.scripted import classifier  # noqa: E402

RPM, CEILING = 1200, 20.0
MODELS = {
    "sliding": {"rpm": RPM},
    "strict": {"rps": 20},
    "bucket": {"bucket": (20, 20.0), "retry_after_style": "seconds"},
}
CONDITIONS = {"rpm": ({"rpm": RPM}, 0.0), "none": ({}, 0.0), "rpm+500s": ({"rpm": RPM}, 0.05)}
PROFILES = {"defaults": {}, "tuned": {"actors": 4, "concurrency": 32}}


def faults(model: str, p500: float, latency: float) -> Faults:
    return Faults(latency_s=latency, p500=p500, **MODELS[model])


def prompts(n: int) -> list[str]:
    return [f"prompt number {i} about wifi" for i in range(n)]


def summarize(client: str, model: str, cond: str, n: int, ok: int, wall: float, srv: FakeLLMProcess) -> dict:
    span = (srv.last_ok - srv.first_request) if srv.last_ok and srv.first_request else wall
    stats = srv.stats
    return {
        "client": client,
        "model": model,
        "condition": cond,
        "rows": n,
        "ok": ok,
        "lost": n - ok,
        "span_s": round(span, 2),
        "wall_s": round(wall, 2),
        "ceiling": round(ok / span / CEILING, 3),
        "ceiling_wall": round(ok / wall / CEILING, 3),
        "429_per_success": round(stats.get("429", 0) / max(ok, 1), 4),
        "server": dict(stats),
    }


def run_star1(n: int, model: str, cond: str, profile: str, latency: float, attempts: int) -> dict:
    limits, p500 = CONDITIONS[cond]
    knobs = PROFILES[profile]
    with (
        tempfile.TemporaryDirectory(prefix="star1-bench-") as tmp,
        FakeLLMProcess({"classifier-m": classifier}, faults(model, p500, latency)) as srv,
    ):
        store = Store.from_uri(f"{tmp}/store")
        rows = [
            {"id": f"r{i:05d}", "source": "bench", "prompt": p, "source_row": i, "source_meta": None}
            for i, p in enumerate(prompts(n))
        ]
        adopt(store, "collect/pool.parquet", to_table(rows, PROMPT))
        role = {
            "base_url": srv.base_url,
            "model": "classifier-m",
            "api_key_env": None,
            "max_attempts": attempts,
        }
        role.update(limits)
        if "concurrency" in knobs:
            role["concurrency"] = knobs["concurrency"]
        cfg = {
            "store": {"uri": f"{tmp}/store"},
            "llm": {"classifier": role},
            "curate": {"actors": knobs.get("actors", 2)},
        }
        Path(tmp, "run.yaml").write_text(json.dumps(cfg))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""}
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "star1", "classify", "-c", f"{tmp}/run.yaml"],
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        wall = time.perf_counter() - t0
        m = store.read_json("classify/manifest.json") if store.exists("classify/manifest.json") else {}
        ok = m.get("counts", {}).get("out", 0)
        res = summarize(f"star1 {profile}", model, cond, n, ok, wall, srv)
        res["exit_code"] = done.returncode
        if done.returncode:
            res["error"] = done.stderr[-400:]
        return res


def run_plain(n: int, model: str, cond: str, latency: float, attempts: int, in_flight: int) -> dict:
    """Baseline: asyncio.gather under a semaphore, the SDK's own retries (same budget), no limiter."""
    from openai import AsyncOpenAI

    p500 = CONDITIONS[cond][1]
    with FakeLLMProcess({"classifier-m": classifier}, faults(model, p500, latency)) as srv:

        async def go() -> int:
            client = AsyncOpenAI(base_url=srv.base_url, api_key="x", max_retries=attempts - 1, timeout=30)
            sem = asyncio.Semaphore(in_flight)

            async def one(p: str) -> bool:
                async with sem:
                    try:
                        r = await client.chat.completions.create(
                            model="classifier-m", messages=[{"role": "user", "content": p}]
                        )
                        return bool(r.choices[0].message.content)
                    except Exception:
                        return False

            try:
                return sum(await asyncio.gather(*(one(p) for p in prompts(n))))
            finally:
                await client.close()

        t0 = time.perf_counter()
        ok = asyncio.run(go())
        return summarize("plain asyncio", model, cond, n, ok, time.perf_counter() - t0, srv)


def run_distilabel(python: str, n: int, model: str, cond: str, latency: float, attempts: int) -> dict:
    """distilabel's OpenAILLM (in its own virtualenv) on the same workload and server."""
    p500 = CONDITIONS[cond][1]
    with FakeLLMProcess({"classifier-m": classifier}, faults(model, p500, latency)) as srv:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                python,
                str(ROOT / "bench" / "distilabel_side.py"),
                "--base-url",
                srv.base_url,
                "--prompts",
                str(n),
                "--max-retries",
                str(attempts - 1),
            ],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        wall = time.perf_counter() - t0
        lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
        ok = json.loads(lines[-1])["ok"] if lines else 0
        res = summarize("distilabel", model, cond, n, ok, wall, srv)
    if proc.returncode:
        res["error"] = proc.stderr[-400:]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=2000)
    ap.add_argument("--latency", type=float, default=0.25)
    ap.add_argument("--attempts", type=int, default=8, help="attempts per request, for every client")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    ap.add_argument("--profiles", nargs="+", default=list(PROFILES), choices=list(PROFILES))
    ap.add_argument("--no-baseline", action="store_true", help="skip the plain asyncio client")
    ap.add_argument("--distilabel", metavar="PYTHON", help="python of a virtualenv with distilabel[openai]")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    header = (
        f"{'client':<16}{'provider':<9}{'configured':<11}{'ok/rows':>11}{'lost':>6}{'span s':>8}{'wall s':>8}"
        f"{'ceiling':>9}{'(wall)':>8}{'429/ok':>8}"
    )
    print(header, flush=True)
    results = []
    for model in args.models:
        for cond in args.conditions:
            runs = [
                partial(run_star1, args.prompts, model, cond, p, args.latency, args.attempts)
                for p in args.profiles
            ]
            if not args.no_baseline:
                runs.append(partial(run_plain, args.prompts, model, cond, args.latency, args.attempts, 32))
            if args.distilabel:
                runs.append(
                    partial(
                        run_distilabel,
                        args.distilabel,
                        args.prompts,
                        model,
                        cond,
                        args.latency,
                        args.attempts,
                    )
                )
            for run in runs:
                r = run()
                results.append(r)
                print(
                    f"{r['client']:<16}{model:<9}{cond:<11}{r['ok']:>5}/{r['rows']:<5}{r['lost']:>6}"
                    f"{r['span_s']:>8}{r['wall_s']:>8}{r['ceiling']:>9}{r['ceiling_wall']:>8}"
                    f"{r['429_per_success']:>8}" + (f"  exit {r['exit_code']}" if r.get("exit_code") else ""),
                    flush=True,
                )
                if args.json:
                    args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
