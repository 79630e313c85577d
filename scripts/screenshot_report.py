"""Render the demo scorecard and trend pages from synthetic runs and screenshot them with headless Chromium.

    python scripts/screenshot_report.py [--out docs/report-demo] [--chromium /usr/bin/chromium]

Chromium (the Debian package: `apt-get install -y chromium`) is driven over the DevTools protocol on a pipe
(`--remote-debugging-pipe`: no port, no extra Python package). For each page it records what rendered —
every table with its rows and size, every plot image with its decoded size, and any request that left the
machine (an offline page makes none) — and takes a full-page PNG. The runs are synthetic (planted verdicts,
rates near the paper's 7B rows) and every page says so.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
INSPECT = """(async () => {
  await Promise.all([...document.images].map(i => i.decode().catch(() => null)));
  const box = e => {
    const r = e.getBoundingClientRect();
    return {w: Math.round(r.width), h: Math.round(r.height)};
  };
  return JSON.stringify({
    title: document.title,
    tables: [...document.querySelectorAll('table')].map(
      t => ({cls: t.className, rows: t.rows.length, ...box(t)})),
    images: [...document.images].map(i => ({alt: i.alt, complete: i.complete, natural_w: i.naturalWidth,
                                            natural_h: i.naturalHeight, ...box(i)})),
    height: document.documentElement.scrollHeight,
  });
})()"""


def _high(fd: int) -> int:
    """`fd` moved to a descriptor number ≥ 10 (bash redirects it; only our child inherits it)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Chromium:
    """A headless Chromium with a DevTools-protocol session over a pipe (fd 3 in, fd 4 out)."""

    def __init__(self, binary: str = CHROMIUM, width: int = 1400, timeout: float = 60.0) -> None:
        self.width, self.timeout = width, timeout
        self.profile = tempfile.mkdtemp(prefix="star1-chromium-")
        cmd_r, self._cmd_w = os.pipe()
        self._evt_r, evt_w = os.pipe()
        # the child's end must not sit on fd 3 or 4 itself, or `3<&x 4>&y` would overwrite it
        cmd_r, evt_w = (_high(fd) for fd in (cmd_r, evt_w))
        argv = [
            binary,
            *FLAGS,
            f"--user-data-dir={self.profile}",
            "--remote-debugging-pipe",
            f"--window-size={width},900",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{cmd_r} 4>&{evt_w}', "bash", *argv],
            pass_fds=(cmd_r, evt_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(cmd_r)
        os.close(evt_w)
        self._buf = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._evt_r], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._evt_r, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium exited (code {self.proc.poll()})")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        while True:
            e = self._read(deadline)
            if e.get("method") == method:
                return e
            self.events.append(e)

    def render(self, page: Path, png: Path | None = None) -> dict[str, Any]:
        """Open `page`, report what rendered (tables, images, external requests), optionally screenshot."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.events.clear()
        for domain in ("Page", "Network"):
            self.send(f"{domain}.enable", session=s)
        self.send("Page.navigate", {"url": page.resolve().as_uri()}, session=s)
        self.wait_event("Page.loadEventFired")
        out = self.send(
            "Runtime.evaluate",
            {"expression": INSPECT, "awaitPromise": True, "returnByValue": True},
            session=s,
        )
        info = json.loads(out["result"]["value"])
        info["requests"] = sorted(
            {
                e["params"]["request"]["url"]
                for e in self.events
                if e.get("method") == "Network.requestWillBeSent"
                and not e["params"]["request"]["url"].startswith(("data:", "file:", "about:"))
            }
        )
        if png is not None:
            height = int(info["height"])
            self.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": self.width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                session=s,
            )
            shot = self.send(
                "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=s
            )
            png.write_bytes(base64.b64decode(shot["data"]))
        self.send("Target.closeTarget", {"targetId": target})
        return info

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._cmd_w, self._evt_r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


def build_demo(store_dir: Path, nights: int = 8) -> tuple[Any, list[Any]]:
    """Synthetic runs near the paper's 7B rows (R1-Distill, STAR-1) and nightly runs of the STAR-1 model: the
    same per-item verdicts with 1-2 % of items flipping both ways as noise, and on the fifth night a planted
    drop (WildJailbreak −9 points, WildChat −2). Every night is compared with the STAR-1 run."""
    sys.path.insert(0, str(ROOT))
    from star1.report import history
    from star1.report import synthetic as syn
    from star1.report.compare import GateSettings, compare_runs
    from star1.report.published import select_published
    from star1.report.runs import open_run
    from star1.store import Store

    store = Store.from_uri(str(store_dir))
    harm = ["violence", "illicit", "privacy", "self_harm", "harassment", "sexual"]
    sizes = {
        "strongreject": 313,
        "jbb": 100,
        "wildchat": 370,
        "wildjailbreak": 250,
        "xstest": 250,
        "mmlu_pro": 1200,
        "aime24": 30,
        "math500": 500,
        "gpqa_diamond": 198,
        "humaneval": 164,
    }
    samples = {"aime24": 8, "gpqa_diamond": 4}
    version = {
        "data": "v1",
        "prompt_template": "3f2a9c0d",
        "generation": "paper-greedy",
        "scorer": "llama-guard-3",
    }

    def planted(paper_key: str, seed: int, compliance: float) -> dict[str, Any]:
        rates = {**select_published([paper_key])[0].values, "xstest": 100 * compliance}
        out = {}
        for i, (bench, n) in enumerate(sizes.items()):
            kind = "overrefusal" if bench == "xstest" else "safety" if i < 4 else "reasoning"
            out[bench] = syn.Planted(
                kind,
                syn.binary(n, rates[bench] / 100, seed * 100 + i, samples.get(bench, 1)),
                metric={"safety": "safe_rate", "overrefusal": "refusal_rate"}.get(
                    kind, "pass@1" if bench in samples or bench == "humaneval" else "accuracy"
                ),
                higher_is_better=kind != "overrefusal",
                categories=syn.categories(n, harm) if kind == "safety" else None,
                version=version,
            )
        return out

    def noisy(base: dict[str, Any], seed: int, drops: dict[str, float]) -> dict[str, Any]:
        rng = np.random.default_rng(seed)
        out = {}
        for i, (bench, p) in enumerate(base.items()):
            share = 100 * float(np.mean(p.scores))
            wobble = float(
                np.clip(rng.normal(0, 0.8), -(100 - share) / 2, share / 2)
            )  # nightly noise, points
            scores = syn.with_drop(p.scores, drops.get(bench, wobble), seed * 31 + i, churn=0.015)
            out[bench] = syn.Planted(p.kind, scores, p.metric, p.higher_is_better, p.categories, p.version)
        return out

    day, t0 = 86_400.0, 1_764_000_000.0
    sha = "{:07x}".format
    r1 = syn.write_run(
        store,
        "r1-distill-7b",
        "synthetic/R1-Distill-Qwen-7B",
        planted("7b-r1-distill", 1, 0.96),
        created_at=t0,
        git_sha=sha(1),
    )
    star_planted = planted("7b-star1", 2, 0.90)
    star = syn.write_run(
        store, "star1-7b", "synthetic/STAR1-R1-Distill-7B", star_planted, created_at=t0 + day, git_sha=sha(2)
    )
    base = open_run(star)
    nightly = []
    for n in range(nights):
        drops = {"wildjailbreak": 9.0, "wildchat": 2.0} if n == 4 else {}
        r = syn.write_run(
            store,
            f"nightly-{n + 1:02d}",
            "synthetic/STAR1-R1-Distill-7B",
            noisy(star_planted, 10 + n, drops),
            created_at=t0 + (n + 2) * day,
            git_sha=sha(0x1000 + n),
        )
        nightly.append(open_run(r))
        history.append(store, compare_runs(base, nightly[-1], GateSettings(resamples=2000)))
    return store, [open_run(r1), base, nightly[4]]


def shoot(out_dir: Path, chromium: str = CHROMIUM) -> dict[str, dict[str, Any]]:
    """Render the demo scorecard and trend pages into `out_dir` and screenshot each beside it (`*.png`);
    returns what Chromium saw on each page."""
    sys.path.insert(0, str(ROOT))
    from star1.report.render import render_history, render_scorecard
    from star1.store import Store

    out_dir.mkdir(parents=True, exist_ok=True)
    out = Store.from_uri(str(out_dir))
    with tempfile.TemporaryDirectory(prefix="star1-demo-") as tmp:
        store, runs = build_demo(Path(tmp))
        _, card = render_scorecard(
            store,
            runs,
            published=["7b"],
            reference="r1-distill-7b",
            out=out,
            title="star1 scorecard — demo on synthetic runs",
        )
        _, trend = render_history(store, out=out, title="star1 nightly history — demo on synthetic runs")
    seen = {}
    with Chromium(chromium) as browser:
        for page in (card, trend):
            html = Path(page)
            seen[html.name] = browser.render(html, html.with_suffix(".png"))
    return seen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "report-demo")
    ap.add_argument("--chromium", default=CHROMIUM)
    args = ap.parse_args(argv)
    if not Path(args.chromium).exists():
        print(f"{args.chromium} not found: apt-get install -y chromium", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    seen = shoot(args.out, args.chromium)
    for page, info in seen.items():
        tables = ", ".join(f"{t['cls']} {t['rows']} rows {t['w']}x{t['h']}" for t in info["tables"])
        images = ", ".join(f"{i['natural_w']}x{i['natural_h']}" for i in info["images"] if i["complete"])
        print(f"{page}: tables [{tables}]; plots [{images}]; external requests {len(info['requests'])}")
        if info["requests"]:
            print(f"{page}: requests left the machine: {info['requests']}", file=sys.stderr)
            return 1
    print(f"screenshots in {args.out} ({time.monotonic() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
