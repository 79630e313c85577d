"""Submitting star1 jobs: to a running Ray cluster through the Ray Jobs API, or to Kubernetes as a KubeRay
RayJob rendered from the chart (`star1.deploy.rayjob`). Both follow the job to its end and say how it ended:
exit 0 when it succeeded, 1 when it failed or was stopped, 2 for a problem found before submitting,
130 on Ctrl-C (a Ray job is stopped; a RayJob keeps running on the cluster).

    star1 submit ray jobs/collect.py --config run.yaml --address http://HEAD:8265
    = ray job submit --address http://HEAD:8265 --working-dir . -- python jobs/collect.py --config run.yaml
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shlex
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130
# Excluded from the uploaded working dir (Ray also honours .gitignore).
DEFAULT_EXCLUDES = [".git", ".venv", "artifacts", ".cache", "__pycache__", "*.pyc", ".pytest_cache"]
# Env var names that hold credentials (OPENAI_API_KEY, HF_TOKEN, AWS_SECRET_ACCESS_KEY, …), not TOKENIZERS_*.
SECRET_NAME = re.compile(r"(?i)^(.*_)?(api_?key|apikey|key|secret|password|passwd|token|credentials?)(_.*)?$")


class SubmitError(ValueError):
    """A problem found before submitting (bad paths, env, cluster unreachable): nothing was submitted."""


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


@dataclass
class RaySubmission:
    """What `ray job submit` gets: an entrypoint run in `working_dir` (uploaded) with a runtime env."""

    script: str
    args: list[str] = field(default_factory=list)
    working_dir: Path = Path(".")
    python: str = "python"
    env: dict[str, str] = field(default_factory=dict)
    runtime_env: dict[str, Any] = field(default_factory=dict)
    excludes: list[str] = field(default_factory=list)
    logs_to: str | None = None
    submission_id: str | None = None

    def entrypoint(self) -> str:
        cmd = [self.python, self.script, *self.args]
        if self.logs_to:
            cmd = [self.python, "-m", "star1.deploy.runlog", "--to", self.logs_to, "--", *cmd]
        return shlex.join(cmd)

    def full_runtime_env(self) -> dict[str, Any]:
        for name in self.env:
            if SECRET_NAME.search(name):
                raise SubmitError(
                    f"--env {name}: secrets do not travel in a job's runtime env (the dashboard and job "
                    "info show it); set it in the cluster's environment or a Kubernetes Secret"
                )
        env = dict(self.runtime_env)
        env["working_dir"] = str(self.working_dir)
        env["excludes"] = [*DEFAULT_EXCLUDES, *env.get("excludes", []), *self.excludes]
        if self.env:
            env["env_vars"] = {**env.get("env_vars", {}), **self.env}
        return env

    def job_id(self) -> str:
        return self.submission_id or f"star1-{Path(self.script).stem}-{stamp()}-{secrets.token_hex(2)}"


def relative_to_working_dir(path: Path, working_dir: Path, what: str) -> str:
    """`path` as the job sees it: relative to the uploaded working dir, which it must lie in."""
    try:
        return path.resolve().relative_to(working_dir.resolve()).as_posix()
    except ValueError:
        raise SubmitError(
            f"{what} {path} is outside the working dir {working_dir.resolve()}: only the working dir is "
            "uploaded to the cluster (move the file there or pass --working-dir)"
        ) from None


def ray_client(address: str):
    """A JobSubmissionClient; unreachable dashboards and auth mismatches become SubmitErrors that say so."""
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as e:  # ConnectionError, AuthenticationError, RuntimeError from the SDK
        hint = ""
        if "auth" in str(e).lower() or "401" in str(e) or "403" in str(e):
            hint = (
                " — the cluster and this client disagree on RAY_AUTH_MODE: with token auth on the cluster, "
                "set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or ~/.ray/auth_token) here"
            )
        raise SubmitError(f"cannot use the Ray cluster at {address}: {e}{hint}") from None


def submit_ray(
    sub: RaySubmission,
    address: str,
    follow: bool = True,
    say: Callable[[str], None] = print,
    out: Any = None,
) -> int:
    """Submit, then (with `follow`) stream the job's logs to `out` until it ends; returns the exit code."""
    import ray

    out = out or sys.stdout
    if not (sub.working_dir / sub.script).is_file():
        raise SubmitError(f"{sub.script} is not a file under the working dir {sub.working_dir.resolve()}")
    runtime_env = sub.full_runtime_env()
    client = ray_client(address)
    remote = getattr(client, "_server_ray_version", None)
    if remote and remote != ray.__version__:
        say(f"warning: the cluster runs Ray {remote}, this client Ray {ray.__version__} (pin them equal)")
    job_id = client.submit_job(
        entrypoint=sub.entrypoint(), runtime_env=runtime_env, submission_id=sub.job_id()
    )
    say(f"submitted {job_id} to {address}: {sub.entrypoint()}")
    if not follow:
        say(f"follow it: ray job logs --address {address} --follow {job_id}")
        return OK
    try:
        info = _follow(client, job_id, out, say)
    except KeyboardInterrupt:
        say(f"interrupted: stopping {job_id}")
        client.stop_job(job_id)
        info = _wait_terminal(client, job_id, timeout=60)
        say(f"{job_id}: {info.status}")
        return INTERRUPTED
    status = str(info.status)
    if status == "SUCCEEDED":
        say(f"{job_id}: SUCCEEDED")
        return OK
    say(f"{job_id}: {status}" + (f" — {info.message}" if info.message else ""))
    return FAILED


def submit_k8s(
    rayjob: dict,
    configmap: dict | None = None,
    *,
    context: str | None = None,
    follow: bool = True,
    poll: float = 10.0,
    timeout: float | None = None,
    say: Callable[[str], None] = print,
    kube: Any = None,
    policies: list[dict] | tuple[dict, ...] = (),
) -> int:
    """Create the RayJob (and its NetworkPolicies and ConfigMap), then follow it to a terminal state; returns
    the exit code."""
    from star1.deploy.rayjob import Kube
    from star1.deploy.rayjob import follow as follow_rayjob

    kube = kube or Kube(context)
    ns, name = rayjob["metadata"]["namespace"], rayjob["metadata"]["name"]
    kube.create(rayjob, configmap, say, policies)
    if not follow:
        say(
            f"follow it: kubectl -n {ns} get rayjob {name} -w; driver log: kubectl -n {ns} logs -f job/{name}"
        )
        return OK
    try:
        ok, state = follow_rayjob(kube, ns, name, say, poll=poll, timeout=timeout)
    except KeyboardInterrupt:
        say(f"detached: rayjob/{name} keeps running (stop it: kubectl -n {ns} delete rayjob {name})")
        return INTERRUPTED
    say(f"rayjob/{name}: {'SUCCEEDED' if ok else 'did not succeed'} — {state}")
    return OK if ok else FAILED


def _follow(client: Any, job_id: str, out: Any, say: Callable[[str], None], drain: float = 15.0) -> Any:
    """Stream the job's logs to `out` until the job ends; return its final info.

    The log stream runs on its own event loop in a daemon thread, and this (main) thread only waits and
    polls the job's status. Ctrl-C therefore always lands here as KeyboardInterrupt: under `asyncio.run`
    the first Ctrl-C only cancels the stream's task, and a stream that absorbed the cancellation would
    lose it. After the job ends the stream gets `drain` seconds to deliver its last lines."""
    failure: list[BaseException] = []

    def stream() -> None:
        try:
            asyncio.run(_tail(client, job_id, out))
        except Exception as e:  # the log stream broke; the job goes on
            failure.append(e)

    tail = threading.Thread(target=stream, name=f"logs-{job_id}", daemon=True)
    tail.start()
    ended_at = None
    while tail.is_alive():
        tail.join(0.5)
        if ended_at is None and client.get_job_info(job_id).status.is_terminal():
            ended_at = time.monotonic()
        if ended_at is not None and time.monotonic() - ended_at > drain:
            break
    if failure:
        say(f"log stream of {job_id} ended early ({failure[0]}); waiting for the job to finish")
    return _wait_terminal(client, job_id)


async def _tail(client: Any, job_id: str, out: Any) -> None:
    async for chunk in client.tail_job_logs(job_id):
        out.write(chunk)
        out.flush()


def _wait_terminal(client: Any, job_id: str, timeout: float | None = None) -> Any:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        info = client.get_job_info(job_id)
        if info.status.is_terminal() or (deadline is not None and time.monotonic() > deadline):
            return info
        time.sleep(0.5)
