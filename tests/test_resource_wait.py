"""Waiting for GPU capacity: on a real local Ray cluster, resources the cluster has are found at once, and a
resource that never appears fails within the configured time with a message that names what was asked for
and what the cluster shows; the job's exit code says "infrastructure" (7), which the job wrapper retries."""

from __future__ import annotations

import time

import pytest

from star1.exits import Exit, retryable
from star1.ray_utils import (
    ResourceWaitTimeout,
    is_infra_error,
    needs_special_resources,
    total,
    wait_for_resources,
)


def test_resources_the_cluster_has_are_found_at_once(ray_local):
    said: list[str] = []
    t = time.monotonic()
    have = wait_for_resources([{"CPU": 1, "star1_sandbox": 1}] * 2, 30, what="sandbox", log=said.append)
    assert time.monotonic() - t < 5 and have["star1_sandbox"] == 2 and not said


def test_a_gpu_pool_that_never_comes_fails_in_time_naming_it(ray_local, monkeypatch):
    monkeypatch.setenv("STAR1_JOB", "eval")
    bundles = [{"GPU": 1, "accelerator_type:H100": 0.001}] * 8
    said: list[str] = []
    t = time.monotonic()
    with pytest.raises(ResourceWaitTimeout) as err:
        wait_for_resources(bundles, 2.0, what="eval engines", poll_s=0.5, log=said.append)
    took = time.monotonic() - t
    assert 2.0 <= took < 15, took
    msg = str(err.value)
    assert "eval engines: no capacity for 8 GPU and accelerator type H100 after 2 s" in msg
    assert "asked for {GPU: 8, accelerator_type:H100: 0.008}" in msg
    assert "shows {GPU: 0, accelerator_type:H100: 0}" in msg
    assert "jobs.eval.workers" in msg and "ray.resource_wait_s" in msg
    assert said and "waiting up to 2 s" in said[0]
    assert is_infra_error(err.value) and retryable(Exit.INFRA)


def test_a_custom_resource_short_of_the_amount_is_not_enough(ray_local):
    shown = r"no capacity for star1_sandbox × 5 after 0 s.*shows \{star1_sandbox: 2\}"
    with pytest.raises(ResourceWaitTimeout, match=shown):
        wait_for_resources([{"star1_sandbox": 1}] * 5, 0, what="sandbox")


def test_what_needs_waiting_for():
    assert total([{"GPU": 4}, {"GPU": 4, "CPU": 2}]) == {"GPU": 8.0, "CPU": 2.0}
    assert needs_special_resources([{"CPU": 8, "GPU": 1}])
    assert needs_special_resources([{"CPU": 1, "accelerator_type:L4": 0.001}])
    assert not needs_special_resources([{"CPU": 8, "memory": 1e9}])
    assert not is_infra_error(ValueError("a bug"))
