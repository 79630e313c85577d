"""Screenshot the MLflow UI on the demo's tracker runs (docs/tracking.md), in headless Chromium.

    python scripts/screenshot_mlflow.py --demo /tmp/demo-store --ui-build /tmp/ui/mlflow/server/js/build

`--demo` is a copy of a `make run` store (manifests, summaries, metrics.json, export; no models needed). Its
runs are logged into `<demo>/mlflow/mlflow.db` by star1's own tracking code, as `make run` logs them: the
data run, the training run (every step of metrics.json), both eval runs with the scorecard linked, and a
comparison of the fine-tuned model with the base one (a compare run and the trend). star1 installs
mlflow-skinny, whose server has no web UI: `--ui-build` is the `mlflow/server/js/build` folder of the full
`mlflow` wheel of the same version (`pip download mlflow==<version> --no-deps`, unzip that folder); a run's
page also needs `graphene` (`pip install graphene --target DIR`, then `STAR1_MLFLOW_UI_PATH=DIR`). The UI is
served by mlflow-skinny's own Flask app on 127.0.0.1 with that folder as its static files.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.screenshot_report import CHROMIUM, Chromium  # noqa: E402


def log_demo(demo: Path) -> str:
    """Log the demo's runs into `<demo>/mlflow/mlflow.db`; its sqlite URI."""
    from star1.config import load_config
    from star1.evals.results import RunSummary
    from star1.evals.tracking import log_eval
    from star1.manifest import read_manifest
    from star1.report import history
    from star1.report.compare import GateSettings, compare_runs
    from star1.report.runs import open_run as open_eval
    from star1.report.tracking import link_scorecard, log_comparison
    from star1.stages.runner import data_stage_names
    from star1.stages.tracking import log_data_run
    from star1.store import Store
    from star1.train.layout import RunLayout
    from star1.train.tracker import TrainTracker

    cfg = load_config(ROOT / "star1/data/demo/demo.yaml")
    cfg.store.uri = str(demo)
    store = Store.from_uri(str(demo))
    log_data_run(cfg, store, data_stage_names(cfg), before={})
    assert cfg.train is not None
    layout = RunLayout(cfg.train.run_name or cfg.run_name)
    m = read_manifest(store, layout.stage)
    assert m is not None
    tracker = TrainTracker(cfg, cfg.train, layout.stage.split("/")[-1], store, layout)
    tracker.log_setup(m.fingerprint, 2, m.params.get("geometry", {}), str(m.params.get("precision", "")))
    tracker.finish(m.status, m.inputs, store.read_json(layout.metrics)["history"])
    for name in ("base", "finetuned"):
        em = read_manifest(store, f"eval/{name}")
        summary = RunSummary.model_validate(store.read_json(f"eval/{name}/summary.json"))
        log_eval(cfg, store, summary, em.params if em else {}, em.status if em else "complete")
    link_scorecard(cfg, store, ["base", "finetuned"], store.url("report/pipeline/scorecard.html"))
    c = compare_runs(open_eval("base", store), open_eval("finetuned", store), GateSettings(resamples=1000))
    log_comparison(cfg, store, c, {"history": history.append(store, c, cfg.report.folder)})
    return f"sqlite:///{demo / 'mlflow' / 'mlflow.db'}"


def serve(uri: str, build: Path, port: int) -> subprocess.Popen:
    code = (
        "import sys, mlflow.server as s; s.app.static_folder = sys.argv[1]; "
        "s.app.run(host='127.0.0.1', port=int(sys.argv[2]))"
    )
    extra = os.environ.get("STAR1_MLFLOW_UI_PATH")  # e.g. `pip install --target` of graphene (run pages)
    path = os.pathsep.join(p for p in (extra, os.environ.get("PYTHONPATH")) if p)
    env = {
        **os.environ,
        "PYTHONPATH": path,
        "_MLFLOW_SERVER_FILE_STORE": uri,
        "_MLFLOW_SERVER_ARTIFACT_ROOT": tempfile.mkdtemp(prefix="mlflow-artifacts-"),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    proc = subprocess.Popen([sys.executable, "-c", code, str(build), str(port)], env=env)
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the MLflow UI did not start")


def shoot(browser: Chromium, url: str, png: Path, wait_for: str, height: int = 900) -> None:
    """Open `url`, wait until the page's text holds `wait_for` (the SPA has rendered), screenshot."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    s = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    size = {"width": browser.width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    browser.send("Emulation.setDeviceMetricsOverride", size, session=s)
    browser.send("Page.enable", session=s)
    browser.send("Page.navigate", {"url": url}, session=s)
    deadline = time.monotonic() + 90
    probe = f"document.body && document.body.innerText.includes({json.dumps(wait_for)})"
    while not browser.send("Runtime.evaluate", {"expression": probe, "returnByValue": True}, session=s)[
        "result"
    ].get("value"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}: '{wait_for}' never appeared")
        time.sleep(0.5)
    time.sleep(4)  # charts draw after the text
    close = "document.querySelectorAll('[aria-label=\"Close\"]').forEach(b => b.click())"
    browser.send("Runtime.evaluate", {"expression": close}, session=s)  # the UI's assistant side panel
    time.sleep(1)
    shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=s)
    png.write_bytes(base64.b64decode(shot["data"]))
    browser.send("Target.closeTarget", {"targetId": target})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, required=True)
    ap.add_argument("--ui-build", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--chromium", default=CHROMIUM)
    ap.add_argument("--port", type=int, default=5077)
    args = ap.parse_args(argv)
    uri = log_demo(args.demo.resolve())
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("star1")
    runs = {r.info.run_name: r.info.run_id for r in client.search_runs([exp.experiment_id])}
    proc = serve(uri, args.ui_build.resolve(), args.port)
    base = f"http://127.0.0.1:{args.port}/#/experiments/{exp.experiment_id}"
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with Chromium(args.chromium, width=1500, timeout=120) as browser:
            shoot(browser, f"{base}/runs", args.out / "mlflow-demo-runs.png", "eval/finetuned")
            train = f"{base}/runs/{runs['train/demo']}/model-metrics"
            shoot(browser, train, args.out / "mlflow-demo-train.png", "train/loss", height=1100)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    print(f"runs: {sorted(runs)}; screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
