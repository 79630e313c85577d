"""Programs run as Ray tasks on the nodes that advertise a custom resource (the chart's sandbox worker group,
`star1_sandbox`): the driver and the GPU pods, which hold the store's and the APIs' keys, never run generated
code. Each task finds the isolation of its own node, as a local run does."""

from __future__ import annotations

from typing import Any

from star1.evals.sandbox import Isolation, Limits, SandboxResult, detect, run_program

WAIT_S = 600.0  # how long the first task may wait for a sandbox node to appear (autoscaling from zero)


def _isolation_here(allow_none: bool, want: str) -> tuple[Isolation, str]:
    import ray

    return detect(allow_none, want), ray.get_runtime_context().get_node_id()


def _run_batch(codes: list[str], limits: Limits, allow_none: bool, want: str, workers: int) -> list[Any]:
    from concurrent.futures import ThreadPoolExecutor

    iso = detect(allow_none, want)
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda c: run_program(c, limits, iso), codes))


class RemoteSandbox:
    """Run programs on nodes with `resource`, `batch` programs per task, one task per unit of the resource."""

    def __init__(self, resource: str, allow_none: bool, want: str, batch: int = 16) -> None:
        self.resource, self.allow_none, self.want, self.batch = resource, allow_none, want, batch

    def _opts(self) -> dict[str, Any]:
        # a unit of the resource is one CPU of the sandbox group, which advertises CPU 0
        return {"num_cpus": 0, "resources": {self.resource: 1}, "max_retries": 1}

    def probe(self, wait_s: float = WAIT_S) -> Isolation:
        """The isolation of a node with the resource; RuntimeError naming the resource when none appears."""
        import ray

        ref = ray.remote(_isolation_here).options(**self._opts()).remote(self.allow_none, self.want)
        try:
            iso, node = ray.get(ref, timeout=wait_s)
        except ray.exceptions.GetTimeoutError:
            ray.cancel(ref, force=True)
            raise RuntimeError(
                f"no Ray node with the resource '{self.resource}' (eval.sandbox.ray_resource) appeared "
                f"within {wait_s:g} s: is the sandbox worker group enabled and schedulable?"
            ) from None
        where = f"{iso.detail}; ray node {node[:12]}, resource {self.resource}"
        return Isolation(iso.kind, iso.python, iso.uid, where)

    def run(self, codes: list[str], limits: Limits, workers: int = 1) -> list[SandboxResult]:
        import ray

        task = ray.remote(_run_batch).options(**self._opts())
        refs = [
            task.remote(codes[i : i + self.batch], limits, self.allow_none, self.want, workers)
            for i in range(0, len(codes), self.batch)
        ]
        return [r for batch in ray.get(refs) for r in batch]
