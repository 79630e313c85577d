"""`star1 submit ray` against a real Ray head (`ray start --head` with the dashboard, CPU only, token auth,
free ports, its own temp dir): a collection job succeeds and writes its artifacts and run record; a failing
job exits non-zero; a client without the cluster's token is refused before anything runs; Ctrl-C stops it.

The head is stopped by killing its own process group (and any process still naming its temp dir), never with
`ray stop`, which would stop every Ray cluster on the machine.
"""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from star1.stages.collect import OUTPUTS
from star1.store import Store

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "submit"
VENV_BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_range(n: int) -> int:
    for _ in range(200):
        start = random.randrange(20000, 29000)
        try:
            for p in range(start, start + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return start
        except OSError:
            continue
    raise RuntimeError("no free port range")


def _kill_ours(pgid: int, temp_dir: str) -> None:
    import psutil

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        time.sleep(3)
    # Ray processes that left the group still name our temp dir on their command line
    for p in psutil.process_iter(["pid", "cmdline"]):
        if any(temp_dir in arg for arg in p.info["cmdline"] or []):
            try:
                p.kill()
            except psutil.Error:
                pass


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head with the dashboard and token auth; yields (dashboard URL, client env)."""
    temp_dir = tempfile.mkdtemp(prefix="s1ray", dir="/tmp")  # short: Ray's socket paths have a length limit
    token = secrets.token_hex(16)
    ports = {name: _free_port() for name in ("gcs", "dash", "client", "nm", "om", "al", "ag", "me", "re")}
    workers = _free_range(40)
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",  # the entrypoint's `python` is the venv's
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_USAGE_STATS_ENABLED": "0",
        "HOME": temp_dir,  # no ~/.ray/auth_token of anyone else
    }
    cmd = [
        str(VENV_BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2", "--num-gpus", "0",
        "--node-ip-address", "127.0.0.1", "--port", str(ports["gcs"]),
        "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
        "--dashboard-port", str(ports["dash"]),
        "--ray-client-server-port", str(ports["client"]), "--node-manager-port", str(ports["nm"]),
        "--object-manager-port", str(ports["om"]), "--dashboard-agent-listen-port", str(ports["al"]),
        "--dashboard-agent-grpc-port", str(ports["ag"]), "--metrics-export-port", str(ports["me"]),
        "--runtime-env-agent-port", str(ports["re"]),
        "--min-worker-port", str(workers), "--max-worker-port", str(workers + 39),
        "--temp-dir", temp_dir, "--disable-usage-stats",
    ]  # fmt: skip
    log = open(Path(temp_dir) / "ray-start.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{ports['dash']}"
    try:
        deadline = time.monotonic() + 120
        while True:
            req = urllib.request.Request(f"{url}/api/version", headers={"Authorization": f"Bearer {token}"})
            try:
                urllib.request.urlopen(req, timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((Path(temp_dir) / "ray-start.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        yield url, env
    finally:
        _kill_ours(proc.pid, temp_dir)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


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
