"""Shared fixtures: a moto S3 server on 127.0.0.1, a local Ray cluster, small source files."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DEMO = Path(__file__).resolve().parents[1] / "star1" / "data" / "demo"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 protocol server (moto, threaded) on 127.0.0.1; AWS_* env points at it for the session."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env["AWS_ENDPOINT_URL"]
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def bucket(s3_server, request):
    import re
    import uuid

    import boto3

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + uuid.uuid4().hex[:8]
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def ray_local(s3_server):
    """A local Ray cluster started after the S3 env is set, so workers inherit it."""
    import ray

    # `star1_sandbox`: the custom resource of the chart's code sandbox worker group
    ray.init(
        address="local",
        num_cpus=2,
        resources={"star1_sandbox": 2},
        include_dashboard=False,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _keep_ray_output_in_tests(monkeypatch):
    """CLI tests run `star1` in this process: undo its quiet_ray() afterwards, so a later init_ray never
    re-routes the test process's stderr (tests/test_quiet_cli.py runs the CLI in subprocesses)."""
    from star1 import ray_utils

    monkeypatch.setitem(ray_utils._QUIET, "log_dir", None)
