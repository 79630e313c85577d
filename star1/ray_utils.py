"""Connecting to Ray: the cluster at `ray.address` / `RAY_ADDRESS` when set, else a local one."""

from __future__ import annotations

import os

from star1.config import RayConfig


def init_ray(cfg: RayConfig) -> str:
    """Start or join Ray once per process; returns a description of where work runs."""
    import ray

    if ray.is_initialized():
        return "ray (already initialised)"
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return f"ray cluster at {address}"
    # address="local" avoids joining a stale cluster recorded in Ray's temp dir
    ray.init(address="local", num_cpus=cfg.num_cpus, include_dashboard=False, log_to_driver=False)
    return f"local ray ({int(ray.cluster_resources().get('CPU', 0))} CPUs)"
