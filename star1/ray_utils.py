"""Connecting to Ray, and keeping Ray's own output off a user's terminal.

`init_ray(cfg)` starts or joins Ray: the cluster at `ray.address` / `RAY_ADDRESS` when set, else a local one.

A command-line process calls `quiet_ray()` once, before any Ray work (the `star1` CLI does, unless
`--verbose`). From the first `init_ray` on, Ray's driver-side output goes to one log file whose path is
printed once: its Python loggers (`ray`, `ray.data`, …: start-up notices, the token-auth warning, Ray Data's
execution plans and periodic progress dumps) and everything Ray's C++ core writes to the process's stderr
(file descriptor 2, e.g. the actor-restart warning). Python's own `sys.stderr` is kept on the terminal, so
star1's console, progress bars, warnings and every traceback (a failed Ray task re-raises its error in the
driver) still show. Ray Data's own progress bars are switched off; star1 shows its own.
A train or eval command gets the same behaviour by calling `init_ray` (after the CLI's `quiet_ray()`).

`wait_for_resources(bundles, timeout_s)` is what a job calls before work that needs GPUs, an accelerator type
or a custom resource: on an autoscaling cluster whose GPU groups start at zero nodes, the cluster is "ready"
as soon as its head is, and without this wait a job with no GPU capacity behind it would wait for its
deadline. `is_infra_error(e)` tells Ray's own failures (a node or worker lost) from application errors.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from star1.config import RayConfig

_QUIET: dict[str, Path | None] = {"log_dir": None}
_ROUTED_PATH: list[Path] = []
_FILE_HANDLER: list[logging.FileHandler] = []
_STDERR: list[TextIO] = []


def log_dir() -> Path:
    """Default folder for run logs: `$STAR1_CACHE/logs` (default `~/.cache/star1/logs`)."""
    return Path(os.environ.get("STAR1_CACHE", Path.home() / ".cache" / "star1")) / "logs"


def quiet_ray(folder: Path | None = None) -> None:
    """Ask for Ray's output to go to a log file under `folder` once Ray starts in this process."""
    _QUIET["log_dir"] = folder or log_dir()


def quiet_log_dir() -> Path | None:
    """The folder run logs go to when this process keeps library output off the terminal (else None)."""
    return _QUIET["log_dir"]


def ray_log_path() -> Path | None:
    """The log file Ray's output goes to in this process (None: Ray prints where it likes)."""
    return _ROUTED_PATH[0] if _ROUTED_PATH else None


def init_ray(cfg: RayConfig) -> str:
    """Start or join Ray once per process; returns a description of where work runs."""
    import ray

    if ray.is_initialized():
        return "ray (already initialised)"
    quiet = _QUIET["log_dir"] is not None
    if quiet:
        _route_ray_output()
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    # quiet: Ray leaves logging alone, and what it says while starting goes to the log (sys.stderr is the
    # log until ray.init returns); then its loggers are pointed at the log file.
    opts = {"configure_logging": not quiet}
    with _stderr_to_log() if quiet else contextlib.nullcontext():
        if address:
            ray.init(address=address, log_to_driver=not quiet, **opts)
            where = f"ray cluster at {address}"
        else:  # address="local" avoids joining a stale cluster recorded in Ray's temp dir
            ray.init(
                address="local", num_cpus=cfg.num_cpus, include_dashboard=False, log_to_driver=False, **opts
            )
            where = f"local ray ({int(ray.cluster_resources().get('CPU', 0))} CPUs)"
    if quiet:
        _loggers_to_file()
    return where


def _route_ray_output() -> None:
    if _ROUTED_PATH:
        return
    import ray.data

    folder = Path(_QUIET["log_dir"])  # type: ignore[arg-type]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ray-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _FILE_HANDLER.append(handler)
    _loggers_to_file()  # ray.data configured its loggers on import
    ray.data.DataContext.get_current().enable_progress_bars = False

    # Ray's C++ core writes to fd 2: point fd 2 at the log, and sys.stderr at a copy of the terminal.
    sys.stderr.flush()
    terminal = os.dup(2)
    log_fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    _STDERR.append(sys.stderr)  # still writes to fd 2: now the log
    sys.stderr = io.TextIOWrapper(
        os.fdopen(terminal, "wb", buffering=0),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )
    _ROUTED_PATH.append(path)
    print(f"Ray's output goes to {path} (--verbose shows it here)", file=sys.stderr)


def _loggers_to_file() -> None:
    """Replace the console handlers of Ray's loggers (`ray`, `ray.*`) with the log file."""
    to_file = _FILE_HANDLER[0]
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger) or not (name == "ray" or name.startswith("ray.")):
            continue
        streams = [h for h in logger.handlers if _is_console(h)]
        for h in streams:
            logger.removeHandler(h)
        if (streams or name == "ray") and to_file not in logger.handlers:
            logger.addHandler(to_file)
            logger.propagate = False


@contextlib.contextmanager
def _stderr_to_log() -> Iterator[None]:
    terminal, sys.stderr = sys.stderr, _STDERR[0]
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr = terminal


def _is_console(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    if stream is None or isinstance(handler, logging.FileHandler):
        return False
    try:
        return stream.fileno() in (1, 2)
    except (OSError, ValueError, AttributeError):
        return stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)


# ------------------------------------------------------------------ waiting for the resources a job needs

# resources every Ray node has: asking for them alone never needs a special worker group
_PLAIN = ("CPU", "memory", "object_store_memory")


class ResourceWaitTimeout(RuntimeError):
    """The cluster did not show the resources a job asks for within `ray.resource_wait_s` (exit INFRA)."""


def joins_cluster(cfg: RayConfig) -> bool:
    """Whether `init_ray` joins a running cluster (which may grow) rather than starting a local one."""
    return bool(cfg.address or os.environ.get("RAY_ADDRESS"))


def bundles(per: dict[str, float], count: int, accelerator_type: str | None = None) -> list[dict[str, float]]:
    """`count` copies of one worker's resources, plus a sliver of `accelerator_type:<T>` when the type is
    pinned: every node of that type advertises 1, and Ray Train and Ray Data LLM ask for it this way."""
    one = dict(per)
    if accelerator_type:
        one[f"accelerator_type:{accelerator_type}"] = 0.001
    return [dict(one) for _ in range(count)]


def total(bundles: list[dict[str, float]]) -> dict[str, float]:
    """The sum of resource bundles, e.g. 2 × {GPU: 4} → {GPU: 8}."""
    out: dict[str, float] = {}
    for b in bundles:
        for k, v in b.items():
            out[k] = out.get(k, 0.0) + float(v)
    return out


def needs_special_resources(bundles: list[dict[str, float]]) -> bool:
    """Whether the bundles ask for more than CPUs and memory: GPUs, an accelerator type, a custom resource."""
    return any(k not in _PLAIN and v > 0 for b in bundles for k, v in b.items())


def _show(res: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(res.items())) + "}"


def _short(need: dict[str, float], have: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in need.items() if have.get(k, 0.0) + 1e-9 < v}


def _request(bundles: list[dict[str, float]]) -> None:
    """Ask the autoscaler for `bundles` (a standing request; [] withdraws it). Never fatal: a cluster without
    an autoscaler simply records the request."""
    try:
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=bundles)
    except Exception as e:  # an old cluster, no GCS support: waiting still works, it just cannot hurry
        logging.getLogger(__name__).warning("could not ask the autoscaler for %s: %s", bundles, e)


def wait_for_resources(
    bundles: list[dict[str, float]],
    timeout_s: float,
    *,
    what: str,
    poll_s: float = 5.0,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """Wait until `ray.cluster_resources()` holds the sum of `bundles`; returns what the cluster has.

    An autoscaler adds worker nodes only for resources that are asked for, so while waiting the bundles are
    requested (`ray.autoscaler.sdk.request_resources`); the request is withdrawn when the wait ends, by then
    the job's own tasks and placement groups hold what they need. Raises ResourceWaitTimeout after
    `timeout_s` naming what was asked for and what the cluster shows (0: look once, do not wait).
    """
    import ray

    need = total(bundles)
    have = ray.cluster_resources()
    if not _short(need, have):
        return have
    if timeout_s <= 0:
        raise ResourceWaitTimeout(_timeout_message(what, need, have, timeout_s))
    _request(bundles)
    started = time.monotonic()
    log(
        f"{what}: waiting up to {timeout_s:.0f} s for the cluster to show {_show(need)} (it has "
        f"{_show({k: have.get(k, 0.0) for k in need})}); the autoscaler has been asked for them"
    )
    try:
        while True:
            left = started + timeout_s - time.monotonic()
            if left <= 0:
                raise ResourceWaitTimeout(_timeout_message(what, need, have, timeout_s))
            time.sleep(min(poll_s, left))
            have = ray.cluster_resources()
            if not _short(need, have):
                log(f"{what}: the cluster shows {_show(need)} after {time.monotonic() - started:.0f} s")
                return have
    finally:
        _request([])


def _timeout_message(what: str, need: dict[str, float], have: dict[str, float], timeout_s: float) -> str:
    short = _short(need, have)
    special = {k: v for k, v in short.items() if k not in _PLAIN} or short
    accel = [k.split(":", 1)[1] for k in special if k.startswith("accelerator_type:")]
    pool = " and ".join(
        [f"{v:g} GPU" for k, v in special.items() if k == "GPU"]
        + [f"accelerator type {a}" for a in accel]
        + [f"{k} × {v:g}" for k, v in special.items() if k != "GPU" and not k.startswith("accelerator_type:")]
    )
    job = os.environ.get("STAR1_JOB")  # the chart's job key: its worker groups are jobs.<job>.workers
    values = "jobs.eval.workers" if job == "nightly" else f"jobs.{job}.workers"
    group = (
        f"The worker group of {values} that has them (gpus, acceleratorType) did not come up"
        if job
        else "No worker node that has them came up"
    )
    return (
        f"{what}: no capacity for {pool} after {timeout_s:.0f} s: asked for {_show(need)}, the Ray cluster "
        f"shows {_show({k: have.get(k, 0.0) for k in need})}. {group}: "
        "check the node pool's capacity and quota, the group's nodeSelector and tolerations, pending pods "
        "(`kubectl get pods`) and the autoscaler's log in the head pod; ray.resource_wait_s waits longer"
    )


def is_infra_error(e: BaseException) -> bool:
    """A failure of the cluster rather than of the work: a node, worker or actor process lost (spot
    preemption, OOM kill), objects lost with their node, or the GPUs never showing up."""
    if isinstance(e, ResourceWaitTimeout):
        return True
    if "ray" not in sys.modules:
        return False
    from ray import exceptions as rex

    infra = tuple(
        getattr(rex, n)
        for n in ("NodeDiedError", "WorkerCrashedError", "ActorDiedError", "ActorUnavailableError",
                  "ObjectLostError", "OwnerDiedError", "RaySystemError", "OutOfMemoryError")
        if hasattr(rex, n)
    )  # fmt: skip
    return isinstance(e, infra)
