"""Throughput against a rate-limited OpenAI-compatible server: how close to the provider's ceiling, how many
rows lost, how many 429s per success.

The test server (tests/fake_llm.py, in its own process so it does not share the driver's interpreter with
Ray Data's executor) answers after a fixed latency and enforces 1,200 requests per minute
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
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from star1.config import RoleConfig  # noqa: E402
from star1.stages.llm_runner import run_task  # noqa: E402
from star1.stages.tasks import ClassifyTask  # noqa: E402
from tests.fake_llm import FakeLLMProcess, Faults  # noqa: E402
from tests.scripted import classifier  # noqa: E402

LIMIT_RPM = 1200


def role(srv: FakeLLMProcess, window: str, concurrency: int) -> RoleConfig:
    limits = {"rpm": LIMIT_RPM} if window == "sliding" else {"rps": LIMIT_RPM // 60}
    return RoleConfig(
        base_url=srv.base_url,
        model="classifier-m",
        timeout_s=30,
        max_attempts=20,
        concurrency=concurrency,
        **limits,
    )


def faults_for(window: str, p500: float, latency: float) -> Faults:
    return Faults(
        latency_s=latency,
        p500=p500,
        rpm=LIMIT_RPM if window == "sliding" else None,
        rps=LIMIT_RPM // 60 if window == "strict" else None,
    )


def optimal_finish(n: int, latency: float, window: str, in_flight: int) -> float:
    """Best possible time from the first request to the last answer under the provider's limit, for `n`
    requests that count against it (successes and injected 500s: a failed request still spends its slot)."""
    if window == "strict":
        return (n - 1) / (LIMIT_RPM / 60) + latency
    burst = lambda k: (k / in_flight) * latency + latency  # noqa: E731 - bounded by in-flight slots
    return burst(min(n, LIMIT_RPM)) if n <= LIMIT_RPM else 60.0 + burst(n - LIMIT_RPM)


def summarize(
    client: str,
    window: str,
    workers: int,
    p500: float,
    n: int,
    ok: int,
    returned: int,
    wall: float,
    srv: FakeLLMProcess,
    latency: float,
    in_flight: int,
) -> dict:
    """Rates over the wall clock (includes starting workers) and over the provider's view: first request
    to last answer."""
    span = (srv.last_ok - srv.first_request) if srv.last_ok and srv.first_request else wall
    stats = srv.stats
    slots = stats.get("requests", 0) - stats.get("429_enforced", 0)  # requests the provider counted
    ceiling = LIMIT_RPM / 60
    return {
        "client": client,
        "window": window,
        "workers": workers,
        "p500": p500,
        "rows": n,
        "ok": ok,
        "rejected": returned - ok,
        "lost": n - ok if client != "star1" else n - returned,
        "wall_s": round(wall, 2),
        "span_s": round(span, 2),
        "ceiling_frac": round(ok / span / ceiling, 3),
        "ceiling_frac_wall": round(ok / wall / ceiling, 3),
        "optimal_ratio": round(span / optimal_finish(slots, latency, window, in_flight), 3),
        "429_per_success": round(stats.get("429", 0) / max(ok, 1), 4),
        "server": dict(stats),
    }


def run_star1(n: int, workers: int, window: str, p500: float, latency: float, concurrency: int) -> dict:
    rows = [
        {"id": f"r{i}", "source": "bench", "prompt": f"prompt number {i} about wifi", "source_row": i}
        for i in range(n)
    ]
    with FakeLLMProcess({"classifier-m": classifier}, faults_for(window, p500, latency), seed=workers) as srv:
        t0 = time.perf_counter()
        out = run_task(
            ClassifyTask(),
            rows,
            role(srv, window, concurrency),
            None,
            use_ray=True,
            actors=workers,
            batch_size=max(1, n // workers),
        )
        wall = time.perf_counter() - t0
        ok = sum(1 for r in out if not r.get("_reject"))
        return summarize(
            "star1", window, workers, p500, n, ok, len(out), wall, srv, latency, workers * concurrency
        )


def run_plain(n: int, window: str, p500: float, latency: float, concurrency: int) -> dict:
    """Baseline: asyncio.gather with a semaphore and the SDK's own retries (2), no shared limiter."""
    from openai import AsyncOpenAI

    with FakeLLMProcess({"classifier-m": classifier}, faults_for(window, p500, latency)) as srv:

        async def go() -> int:
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

            return sum(await asyncio.gather(*(one(i) for i in range(n))))

        t0 = time.perf_counter()
        ok = asyncio.run(go())
        return summarize(
            "plain-asyncio", window, 1, p500, n, ok, n, time.perf_counter() - t0, srv, latency, concurrency
        )


def run_distilabel(python: str, n: int, window: str, p500: float, latency: float) -> dict:
    """distilabel's OpenAILLM (in its own virtualenv) on the same workload and server."""
    import subprocess

    with FakeLLMProcess({"classifier-m": classifier}, faults_for(window, p500, latency)) as srv:
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
        lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
        ok = json.loads(lines[-1])["ok"] if lines else 0
        res = summarize("distilabel", window, 1, p500, n, ok, n, wall, srv, latency, 50)
    if proc.returncode:
        res["error"] = proc.stderr[-500:]
    return res


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
    ray.data.DataContext.get_current().enable_progress_bars = False
    results = []
    print(
        f"{'client':<14}{'window':<9}{'workers':>8}{'500s':>6}{'ok/rows':>12}{'lost':>6}{'wall s':>8}"
        f"{'span s':>8}{'ceiling':>9}{'(wall)':>8}{'vs opt':>8}{'429/ok':>8}",
        flush=True,
    )
    for window in args.windows:
        for p500 in args.p500:
            runs = [
                partial(run_star1, args.prompts, w, window, p500, args.latency, args.concurrency)
                for w in args.workers
            ]
            if args.baseline:
                runs.append(partial(run_plain, args.prompts, window, p500, args.latency, args.concurrency))
            if args.distilabel:
                runs.append(
                    partial(run_distilabel, args.distilabel, args.prompts, window, p500, args.latency)
                )
            for run in runs:
                r = run()
                results.append(r)
                print(
                    f"{r['client']:<14}{window:<9}{r['workers']:>8}{p500:>6.2f}{r['ok']:>6}/{r['rows']:<5}"
                    f"{r['lost']:>6}{r['wall_s']:>8}{r['span_s']:>8}{r['ceiling_frac']:>9}"
                    f"{r['ceiling_frac_wall']:>8}{r['optimal_ratio']:>8}{r['429_per_success']:>8}",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
