"""`python -m star1.deploy.runlog`: the driver log and run manifest land in S3 (moto's real S3 protocol
server) while the command runs and when it ends; a stop (SIGTERM) reaches the command, is recorded as stopped
and exits 143; a destination it cannot write fails the run before the command starts (exit 8); with --retries
only the retryable codes (5 incomplete, 7 infrastructure) run the command again, and run.json lists every
attempt."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from star1.store import Store

REPO = Path(__file__).resolve().parents[1]


def runlog(to: str, *command: str, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "star1.deploy.runlog", "--to", to, "--run-id", "r1", *extra, "--", *command],
        cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_log_and_manifest_reach_s3_during_and_after_the_run(bucket, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("run_name: x\n")
    script = "import sys, time; print('first line', flush=True); time.sleep(3); print('last line'); exit(4)"
    command = f'{sys.executable} -c "{script}" --config {config}'
    proc = runlog(f"s3://{bucket}/_runs", "sh", "-c", command, extra=("--interval", "0.3"))
    store = Store.from_uri(f"s3://{bucket}/_runs/r1")
    deadline = time.monotonic() + 60
    while not (store.exists("driver.log") and b"first line" in store.read_bytes("driver.log")):
        assert time.monotonic() < deadline and proc.poll() is None, "no log uploaded while running"
        time.sleep(0.2)
    during = store.read_json("run.json")
    assert during["status"] == "running" and during["finished_at"] is None
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 4 and "last line" in out
    record = store.read_json("run.json")
    assert record["status"] == "failed" and record["exit_code"] == 4 and record["finished_at"]
    sha = hashlib.sha256(config.read_bytes()).hexdigest()
    assert record["configs"] == [{"path": str(config), "sha256": sha, "text": "run_name: x\n"}]
    assert store.read_bytes("driver.log").decode().splitlines()[-1] == "last line"


def test_sigterm_reaches_the_command_and_is_recorded_as_stopped(tmp_path):
    script = (
        "import signal, sys, time\n"
        "def bye(*a):\n    print('got SIGTERM, saving', flush=True); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\nprint('ready', flush=True)\ntime.sleep(60)\n"
    )
    (tmp_path / "job.py").write_text(script)
    proc = runlog(str(tmp_path / "runs"), "sh", "-c", f"{sys.executable} {tmp_path / 'job.py'}")
    assert proc.stdout is not None
    for line in proc.stdout:
        if "ready" in line:
            break
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 143
    record = Store.from_uri(str(tmp_path / "runs" / "r1")).read_json("run.json")
    assert record["status"] == "stopped"
    assert "got SIGTERM, saving" in (tmp_path / "runs" / "r1" / "driver.log").read_text()


def test_a_command_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    proc = runlog(str(tmp_path / "runs"), sys.executable, "-c", script, extra=("--grace", "1"))
    assert proc.stdout is not None
    for line in proc.stdout:
        if "ready" in line:
            break
    t = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 143 and time.monotonic() - t < 50
    assert Store.from_uri(str(tmp_path / "runs" / "r1")).read_json("run.json")["status"] == "stopped"


def test_unwritable_destination_fails_before_the_command_runs(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    marker = tmp_path / "ran"
    proc = runlog(str(blocker / "runs"), "touch", str(marker))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 8 and "cannot write" in err
    assert not marker.exists()


def flaky(tmp_path: Path, codes: list[int]) -> str:
    """A command that exits with codes[i] on its i-th run (the last one thereafter), printing its attempt."""
    script = tmp_path / "flaky.py"
    script.write_text(
        "import os, pathlib, sys\n"
        f"runs = pathlib.Path({str(tmp_path / 'runs.txt')!r})\n"
        "n = len(runs.read_text().splitlines()) if runs.exists() else 0\n"
        "runs.write_text((runs.read_text() if runs.exists() else '') + 'run\\n')\n"
        "env = os.environ\n"
        "print('attempt', env['STAR1_ATTEMPT'], 'started', env['STAR1_RUN_STARTED_AT'], flush=True)\n"
        f"codes = {codes!r}\n"
        "sys.exit(codes[min(n, len(codes) - 1)])\n"
    )
    return f"{sys.executable} {script}"


def test_an_infrastructure_failure_is_retried_in_place_and_every_attempt_recorded(tmp_path):
    proc = runlog(str(tmp_path / "rec"), "sh", "-c", flaky(tmp_path, [7, 0]),
                  extra=("--retries", "2", "--retry-delay", "0"))  # fmt: skip
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    record = Store.from_uri(str(tmp_path / "rec" / "r1")).read_json("run.json")
    assert record["status"] == "succeeded" and record["exit_code"] == 0 and record["retries"] == 2
    attempts = [(a["attempt"], a["exit_code"], a["meaning"], a["retried"]) for a in record["attempts"]]
    assert attempts == [(1, 7, "infrastructure failure", True), (2, 0, "succeeded", False)]
    log = (tmp_path / "rec" / "r1" / "driver.log").read_text()
    assert "attempt 1 exited 7 (infrastructure failure): retrying" in log
    starts = {line.split("started ")[1] for line in log.splitlines() if line.startswith("attempt ")}
    assert len(starts) == 1  # every attempt sees the run's start, not its own (one nightly date)
    assert "after 2 attempts" in out


NOT_RETRIED = [(2, "config error"), (3, "regression"), (6, "failed its checks")]


@pytest.mark.parametrize(("code", "meaning"), NOT_RETRIED)
def test_config_errors_regressions_and_failed_checks_are_not_retried(tmp_path, code, meaning):
    proc = runlog(str(tmp_path / "rec"), "sh", "-c", flaky(tmp_path, [code, 0]),
                  extra=("--retries", "3", "--retry-delay", "0"))  # fmt: skip
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == code, out
    assert (tmp_path / "runs.txt").read_text().count("run") == 1
    record = Store.from_uri(str(tmp_path / "rec" / "r1")).read_json("run.json")
    assert record["outcome"] == meaning and len(record["attempts"]) == 1
    assert record["attempts"][0]["retryable"] is False and record["attempts"][0]["retried"] is False


def test_retries_run_out(tmp_path):
    proc = runlog(str(tmp_path / "rec"), "sh", "-c", flaky(tmp_path, [5]),
                  extra=("--retries", "1", "--retry-delay", "0"))  # fmt: skip
    proc.communicate(timeout=120)
    assert proc.returncode == 5
    record = Store.from_uri(str(tmp_path / "rec" / "r1")).read_json("run.json")
    assert [a["exit_code"] for a in record["attempts"]] == [5, 5] and record["status"] == "failed"
    assert record["outcome"] == "incomplete (a rerun resumes)"
