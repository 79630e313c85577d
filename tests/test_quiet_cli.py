"""A quiet terminal: through the real CLI with Ray, star1's lines and counts show and Ray's chatter goes to a
log file whose path is printed once; a failing Ray task's error still shows; `--verbose` shows everything."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
RAY_NOISE = (
    "logging_progress",
    "core_worker",
    "streaming_executor",
    "Token authentication",
    "INFO worker.py",
)


def star1(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "STAR1_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "star1", *args, "--set", "ray.num_cpus=2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def broken_config(tmp_path: Path) -> Path:
    write(tmp_path / "bad.csv", 'prompt\n"an unterminated quote\nmore\n')
    return write(
        tmp_path / "bad.yaml",
        f"store: {{uri: {tmp_path / 'store'}}}\n"
        "collect:\n  sources:\n    - {name: bad, loader: {uri: bad.csv}, prompt_column: prompt}\n",
    )


def test_demo_collect_is_short_shows_counts_and_logs_ray_to_a_file(tmp_path):
    r = star1(tmp_path, "collect", "--set", f"store.uri={tmp_path / 'store'}")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    lines = out.strip().splitlines()
    assert len(lines) < 25, out
    assert "collect: 45 rows in → 35 kept, 10 rejected" in out and "done: 45 in, 35 kept, 10 rejected" in out
    assert not [n for n in RAY_NOISE if n in out], out
    paths = re.findall(r"Ray's output goes to (\S+)", out)
    assert len(paths) == 1, out  # printed once
    log = Path(paths[0]).read_text()
    assert "Execution plan of Dataset" in log and "core_worker" in log  # Ray's detail is all there


def test_failing_ray_task_still_shows_its_error(tmp_path):
    r = star1(tmp_path, "collect", "--config", str(broken_config(tmp_path)))
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "bad.csv" in out and "malformed CSV" in out, out  # raised inside the Ray loading task
    assert len(out.strip().splitlines()) < 40, out


def test_verbose_shows_rays_output(tmp_path):
    r = star1(tmp_path, "--verbose", "collect", "--config", str(broken_config(tmp_path)))
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "malformed CSV" in out
    assert "Started a local Ray instance" in out and "Ray's output goes to" not in out, out
