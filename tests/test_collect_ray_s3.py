"""The collection stage through Ray (local cluster) into a real S3 protocol server: same bytes as local."""

from __future__ import annotations

import pytest

from star1.stages.collect import OUTPUTS, run_collect
from star1.store import Store
from tests.test_collect import make_config, make_sources

pytestmark = pytest.mark.slow


def test_ray_run_on_s3_gives_identical_bytes_to_local(tmp_path, bucket, ray_local):
    make_sources(tmp_path)
    local_cfg = make_config(tmp_path, str(tmp_path / "local"))
    s3_cfg = make_config(tmp_path, f"s3://{bucket}/runs/demo")
    local_store, s3_store = Store.from_uri(local_cfg.store.uri), Store.from_uri(s3_cfg.store.uri)

    a = run_collect(local_cfg, local_store, use_ray=True, log=lambda m: None)
    b = run_collect(s3_cfg, s3_store, use_ray=True, log=lambda m: None)
    for rel in OUTPUTS.values():
        assert local_store.read_bytes(rel) == s3_store.read_bytes(rel), rel
    assert a.manifest.counts == b.manifest.counts and a.manifest.fingerprint == b.manifest.fingerprint
    # embedding chunks were written to S3 by Ray actors, and a rerun from S3 is skipped
    assert s3_store.list("cache/embeddings", suffix=".npy")
    assert run_collect(s3_cfg, s3_store, use_ray=True, log=lambda m: None).skipped
