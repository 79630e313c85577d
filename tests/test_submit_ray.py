"""`star1 submit ray` against a real Ray head (`ray start --head` with the dashboard, CPU only, token auth,
free ports, its own temp dir): a collection job succeeds and writes its artifacts and run record; a failing
job exits non-zero; a client without the cluster's token is refused before anything runs; Ctrl-C stops it.

The head is tests/ray_cluster.py's: stopped by killing its own process group, never with `ray stop`.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from star1.stages.collect import OUTPUTS
from star1.store import Store
from tests.ray_cluster import LocalRayCluster

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "submit"


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head with the dashboard and token auth; yields (dashboard URL, client env)."""
    cluster = LocalRayCluster()
    try:
        yield cluster.start_head(num_cpus=2), cluster.client_env
    finally:
        cluster.stop()


def submit(url: str, env: dict, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "star1", "submit", "ray", "--address", url, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_collect_job_succeeds_with_artifacts_and_run_record(ray_head, tmp_path):
    url, env = ray_head
    store_uri, runs = tmp_path / "store", tmp_path / "runs"
    config = FIXTURE / "collect.yaml"
    r = submit(
        url, env, "jobs/collect.py", "--config", str(config), "--set", f"store.uri={store_uri}",
        "--logs-to", str(runs),
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCEEDED" in r.stderr
    assert "collect →" in r.stdout  # the job's own output, streamed back
    store = Store.from_uri(str(store_uri))
    manifest = store.read_json("collect/manifest.json")
    counts = manifest["counts"]["total"]
    # 6 questions (one exact repeat) + 4 lines; the held-out question is decontaminated
    assert counts["read"] == 10 and counts["kept"] + counts["rejected"] == counts["read"]
    assert 0 < counts["kept"] < 10
    assert store.read_table(OUTPUTS["pool"]).num_rows == counts["kept"]
    # the run record shipped by star1.deploy.runlog: log, status, the exact config it ran
    (run_id,) = [p.name for p in runs.iterdir()]
    record = Store.from_uri(str(runs / run_id)).read_json("run.json")
    assert record["status"] == "succeeded" and record["exit_code"] == 0
    assert record["ray_submission_id"] in r.stderr
    assert record["configs"][0]["sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert "collect →" in (runs / run_id / "driver.log").read_text()
    # the token never shows up in what the user sees
    assert env["RAY_AUTH_TOKEN"] not in r.stdout + r.stderr


def test_failing_job_exits_nonzero_and_says_so(ray_head, tmp_path):
    url, env = ray_head
    r = submit(
        url, env, "jobs/collect.py", "--config", str(FIXTURE / "collect.yaml"),
        "--set", f"store.uri={tmp_path / 'store'}", "--set", "collect.sources.0.loader.uri=missing.csv",
        "--logs-to", str(tmp_path / "runs"),
    )  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAILED" in r.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert Store.from_uri(str(run_dir)).read_json("run.json")["status"] == "failed"
    assert not (tmp_path / "store" / "collect" / "manifest.json").exists()


def test_client_without_the_token_is_refused_before_submitting(ray_head, tmp_path):
    url, env = ray_head
    env = {k: v for k, v in env.items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
    r = submit(url, env, "jobs/collect.py", "--config", str(FIXTURE / "collect.yaml"), timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "RAY_AUTH_MODE" in r.stderr


def test_bad_config_is_refused_before_submitting(ray_head, tmp_path):
    url, env = ray_head
    bad = tmp_path / "bad.yaml"
    bad.write_text("collect: {sources: [x], tfidf_treshold: 0.5}\n")
    r = submit(url, env, "jobs/collect.py", "--config", str(bad), timeout=60)
    assert r.returncode == 2 and "tfidf_treshold" in r.stderr, r.stderr


def test_ctrl_c_stops_the_job(ray_head, tmp_path):
    url, env = ray_head
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "star1", "submit", "ray", "--address", url,
         "tests/fixtures/submit/sleeper.py", "--logs-to", str(runs)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a terminal's Ctrl-C: SIGINT at its default even if this run inherited it ignored (`cmd &`)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if "sleeper started" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "STOPPED" in err and "sleeper was not stopped" not in out
    (run_dir,) = runs.iterdir()
    record = Store.from_uri(str(run_dir)).read_json("run.json")
    assert record["status"] == "stopped" and record["finished_at"]
