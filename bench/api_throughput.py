"""Throughput against a rate-limited OpenAI-compatible server: how close to the provider's ceiling, how many
rows lost, how many 429s per success.

The test server (tests/fake_llm.py) answers after a fixed latency and enforces 1,200 requests per minute
one of two ways — a sliding 60 s window (bursts allowed) or a strict 20-per-rolling-second window — with
429 + Retry-After beyond it, optionally failing 5% of requests with a 500. star1 runs the classify stage's
calls through a Ray Data actor pool (1, 2, 4 workers) sharing one limiter actor configured with the
provider's published limit.

Reported per run: successful requests/s ÷ ceiling (strict window), finish time ÷ burst-optimal finish time
(sliding window: the first 1,200 at once, the rest when the window frees), rows lost, 429s per success.
Baseline in the same run: a plain asyncio client with the same concurrency and no limiter (`--baseline`).

    python bench/api_throughput.py [--prompts 2000] [--workers 1 2 4] [--latency 0.25]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from star1.config import RoleConfig  # noqa: E402
from star1.stages.llm_runner import run_task  # noqa: E402
from star1.stages.tasks import ClassifyTask  # noqa: E402
from tests.fake_llm import FakeLLMServer, Faults  # noqa: E402
from tests.scripted import classifier  # noqa: E402

LIMIT_RPM = 1200


def role(srv: FakeLLMServer, window: str, concurrency: int) -> RoleConfig:
    limits = {"rpm": LIMIT_RPM} if window == "sliding" else {"rps": LIMIT_RPM // 60}
    return RoleConfig(
        base_url=srv.base_url,
        model="classifier-m",
        timeout_s=30,
        max_attempts=20,
        concurrency=concurrency,
        **limits,
    )


def optimal_finish(n: int, latency: float, window: str, concurrency_total: int) -> float:
    if window == "strict":
        return n / (LIMIT_RPM / 60) + latency
    first = min(n, LIMIT_RPM)
    rest = n - first
    burst = lambda k: (k / concurrency_total) * latency + latency  # noqa: E731 - bounded by in-flight slots
    return burst(first) if rest == 0 else 60.0 + burst(rest)


def run_star1(n: int, workers: int, window: str, p500: float, latency: float, concurrency: int) -> dict:
    faults = Faults(
        latency_s=latency,
        p500=p500,
        rpm=LIMIT_RPM if window == "sliding" else None,
        rps=LIMIT_RPM // 60 if window == "strict" else None,
    )
    rows = [
        {"id": f"r{i}", "source": "bench", "prompt": f"prompt number {i} about wifi", "source_row": i}
        for i in range(n)
    ]
    with FakeLLMServer({"classifier-m": classifier}, faults, seed=workers) as srv:
        cfg = role(srv, window, concurrency)
        t0 = time.perf_counter()
        out = run_task(
            ClassifyTask(), rows, cfg, None, use_ray=True, actors=workers, batch_size=max(1, n // workers)
        )
        wall = time.perf_counter() - t0
        stats = dict(srv.stats)
    ok = sum(1 for r in out if not r.get("_reject"))
    return {
        "client": "star1",
        "window": window,
        "workers": workers,
        "p500": p500,
        "rows": n,
        "ok": ok,
        "rejected": n - ok,
        "lost": n - len(out),
        "wall_s": round(wall, 2),
        "req_per_s": round(ok / wall, 2),
        "ceiling_frac": round(ok / wall / (LIMIT_RPM / 60), 3),
        "optimal_ratio": round(wall / optimal_finish(n, latency, window, workers * concurrency), 3),
        "429_per_success": round(stats.get("429", 0) / max(ok, 1), 4),
        "server": stats,
    }


def run_plain(n: int, window: str, p500: float, latency: float, concurrency: int) -> dict:
    """Baseline: asyncio.gather with a semaphore and the SDK's own retries, no shared limiter."""
    from openai import AsyncOpenAI

    faults = Faults(
        latency_s=latency,
        p500=p500,
        rpm=LIMIT_RPM if window == "sliding" else None,
        rps=LIMIT_RPM // 60 if window == "strict" else None,
    )
    with FakeLLMServer({"classifier-m": classifier}, faults) as srv:

        async def go() -> tuple[int, float]:
            client = AsyncOpenAI(base_url=srv.base_url, api_key="x", max_retries=2, timeout=30)
            sem = asyncio.Semaphore(concurrency)

            async def one(i: int) -> bool:
                async with sem:
                    try:
                        await client.chat.completions.create(
                            model="classifier-m", messages=[{"role": "user", "content": f"prompt {i} wifi"}]
                        )
                        return True
                    except Exception:
                        return False

            t0 = time.perf_counter()
            res = await asyncio.gather(*(one(i) for i in range(n)))
            return sum(res), time.perf_counter() - t0

        ok, wall = asyncio.run(go())
        stats = dict(srv.stats)
    return {
        "client": "plain-asyncio",
        "window": window,
        "workers": 1,
        "p500": p500,
        "rows": n,
        "ok": ok,
        "rejected": 0,
        "lost": n - ok,
        "wall_s": round(wall, 2),
        "req_per_s": round(ok / wall, 2),
        "ceiling_frac": round(ok / wall / (LIMIT_RPM / 60), 3),
        "optimal_ratio": round(wall / optimal_finish(n, latency, window, concurrency), 3),
        "429_per_success": round(stats.get("429", 0) / max(ok, 1), 4),
        "server": stats,
    }


def run_distilabel(python: str, n: int, window: str, p500: float, latency: float) -> dict:
    """distilabel's OpenAILLM (in its own virtualenv) on the same workload and server."""
    import subprocess

    faults = Faults(
        latency_s=latency,
        p500=p500,
        rpm=LIMIT_RPM if window == "sliding" else None,
        rps=LIMIT_RPM // 60 if window == "strict" else None,
    )
    with FakeLLMServer({"classifier-m": classifier}, faults) as srv:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                python,
                str(ROOT / "bench" / "distilabel_side.py"),
                "--base-url",
                srv.base_url,
                "--prompts",
                str(n),
            ],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        wall = time.perf_counter() - t0
        stats = dict(srv.stats)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    res = json.loads(lines[-1]) if lines else {"ok": 0, "wall_s": wall, "out_rows": 0}
    ok = res["ok"]
    return {
        "client": "distilabel",
        "window": window,
        "workers": 1,
        "p500": p500,
        "rows": n,
        "ok": ok,
        "rejected": 0,
        "lost": n - ok,
        "wall_s": res["wall_s"],
        "req_per_s": round(ok / res["wall_s"], 2),
        "ceiling_frac": round(ok / res["wall_s"] / (LIMIT_RPM / 60), 3),
        "optimal_ratio": round(res["wall_s"] / optimal_finish(n, latency, window, 50), 3),
        "429_per_success": round(stats.get("429", 0) / max(ok, 1), 4),
        "server": stats,
        "error": proc.stderr[-500:] if proc.returncode else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=2000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--windows", nargs="+", default=["strict", "sliding"], choices=["strict", "sliding"])
    ap.add_argument("--p500", type=float, nargs="+", default=[0.0, 0.05])
    ap.add_argument("--latency", type=float, default=0.25)
    ap.add_argument("--concurrency", type=int, default=32, help="in-flight requests per worker")
    ap.add_argument("--baseline", action="store_true", help="also run a plain asyncio client")
    ap.add_argument("--distilabel", metavar="PYTHON", help="python of a virtualenv with distilabel[openai]")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import ray

    ray.init(
        address="local", num_cpus=max(4, max(args.workers)), include_dashboard=False, log_to_driver=False
    )
    results = []
    header = (
        f"{'client':<14}{'window':<9}{'workers':>8}{'500s':>6}{'ok/rows':>12}{'lost':>6}{'wall s':>8}"
        f"{'req/s':>8}{'ceiling':>9}{'vs opt':>8}{'429/ok':>8}"
    )
    print(header)
    for window in args.windows:
        for p500 in args.p500:
            runs = [
                run_star1(args.prompts, w, window, p500, args.latency, args.concurrency) for w in args.workers
            ]
            if args.baseline:
                runs.append(run_plain(args.prompts, window, p500, args.latency, args.concurrency))
            if args.distilabel:
                runs.append(run_distilabel(args.distilabel, args.prompts, window, p500, args.latency))
            for r in runs:
                results.append(r)
                print(
                    f"{r['client']:<14}{window:<9}{r['workers']:>8}{p500:>6.2f}{r['ok']:>6}/{r['rows']:<5}"
                    f"{r['lost']:>6}{r['wall_s']:>8}{r['req_per_s']:>8}{r['ceiling_frac']:>9}"
                    f"{r['optimal_ratio']:>8}{r['429_per_success']:>8}",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
