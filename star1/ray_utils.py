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
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
from collections.abc import Iterator
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
