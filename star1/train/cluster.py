"""What the Ray cluster must hold for a run: workers × resources, GPUs for a GPU config, an accelerator type;
`num_workers: auto` picks the largest worker count that fits and divides the effective batch (or keeps the
world size of the sharded checkpoint the run resumes from, when the cluster holds it)."""

from __future__ import annotations

from star1.config import TrainConfig
from star1.train.errors import TrainSetupError


def per_worker(tc: TrainConfig) -> dict[str, float]:
    """What one Ray Train worker asks for: `resources_per_worker` (default 1 CPU), plus 1 GPU with use_gpu."""
    per = dict(tc.scaling.resources_per_worker or {"CPU": 1.0})
    if tc.scaling.use_gpu:
        per.setdefault("GPU", 1.0)
    return per


def worker_bundles(tc: TrainConfig) -> list[dict[str, float]]:
    """The resources the whole worker group needs (one worker for `num_workers: auto`)."""
    from star1.ray_utils import bundles

    n = tc.scaling.num_workers
    return bundles(per_worker(tc), n if isinstance(n, int) else 1, tc.scaling.accelerator_type)


def resolve_scaling(
    tc: TrainConfig, cluster: dict[str, float], keep: int | None = None
) -> tuple[int, dict[str, float], list[str]]:
    """(workers, resources per worker, notes); raise when the cluster cannot hold the run. `keep`: the world
    size a ZeRO checkpoint of the run was written with, which `auto` takes when the cluster holds it."""
    s, r = tc.scaling, tc.recipe
    per = per_worker(tc)
    notes: list[str] = []
    where = f" (preset {tc.preset})" if tc.preset else ""
    if s.check_resources:
        if s.use_gpu and cluster.get("GPU", 0) <= 0:
            raise TrainSetupError(
                f"train.scaling asks for GPUs{where} but the Ray cluster has none (CPU only: "
                f"{int(cluster.get('CPU', 0))} CPUs); use a GPU cluster, or drop the preset / use_gpu "
                "(joining a running cluster, train first waits ray.resource_wait_s for its GPU nodes)"
            )
        if s.accelerator_type and not any(k == f"accelerator_type:{s.accelerator_type}" for k in cluster):
            raise TrainSetupError(f"the Ray cluster has no accelerator of type {s.accelerator_type}")
    if s.num_workers == "auto":
        fit = min(int(cluster.get(k, 0) // v) for k, v in per.items() if v > 0)
        if keep and keep <= fit and r.effective_batch % (keep * r.per_device_batch) == 0:
            notes.append(f"num_workers auto: {keep}, as the checkpoint it resumes (the cluster holds {fit})")
            return keep, per, notes
        workers = next((w for w in range(fit, 0, -1) if r.effective_batch % (w * r.per_device_batch) == 0), 0)
        if workers == 0:
            raise TrainSetupError(f"the Ray cluster cannot hold one worker with {per}")
        notes.append(f"num_workers auto: {workers} (the cluster holds {fit})")
        return workers, per, notes
    workers = s.num_workers
    if s.check_resources:
        short = {k: v * workers for k, v in per.items() if cluster.get(k, 0) < v * workers}
        if short:
            have = {k: cluster.get(k, 0) for k in short}
            raise TrainSetupError(
                f"{workers} workers need {short} but the Ray cluster has {have}; lower "
                "train.scaling.num_workers (or 'auto') or resources_per_worker"
            )
    return workers, per, notes
