"""Following a submitted Ray job, against a stand-in for Ray's JobSubmissionClient (no cluster): Ctrl-C
stops the job even when the log stream absorbs task cancellation (as a websocket read can), the last log
lines arrive after the job ends, and a broken log stream still waits for the job's real end."""

from __future__ import annotations

import asyncio
import io
import signal
import threading
import time
from pathlib import Path

import pytest

from star1.deploy import submit as submit_mod
from star1.deploy.submit import INTERRUPTED, OK, RaySubmission, submit_ray


class _Status(str):
    def is_terminal(self) -> bool:
        return self in ("SUCCEEDED", "FAILED", "STOPPED")


class _Info:
    def __init__(self, status: str) -> None:
        self.status, self.message = _Status(status), ""


class FakeJobs:
    """Job state and a log stream; `stubborn` makes the stream swallow CancelledError and keep waiting."""

    def __init__(self, lines: list[str], *, stubborn: bool = False, end_after: float = 30.0,
                 stream_error: Exception | None = None) -> None:  # fmt: skip
        self.lines, self.stubborn, self.stream_error = lines, stubborn, stream_error
        self.ends_at = time.monotonic() + end_after
        self.stopped = False
        self.tail_started = threading.Event()

    def status(self) -> str:
        if self.stopped:
            return "STOPPED"
        return "SUCCEEDED" if time.monotonic() >= self.ends_at else "RUNNING"

    def submit_job(self, entrypoint: str, runtime_env: dict, submission_id: str) -> str:
        return submission_id

    def get_job_info(self, job_id: str) -> _Info:
        return _Info(self.status())

    def stop_job(self, job_id: str) -> bool:
        self.stopped = True
        return True

    async def tail_job_logs(self, job_id: str):
        for line in self.lines:
            yield line
        self.tail_started.set()
        if self.stream_error:
            raise self.stream_error
        while self.status() == "RUNNING":
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                if not self.stubborn:
                    raise
        await asyncio.sleep(0.3)  # Ray delivers the last lines after the status turns terminal
        yield "last line\n"


@pytest.fixture
def run(tmp_path: Path, monkeypatch):
    (tmp_path / "job.py").write_text("print('hi')\n")

    def go(jobs: FakeJobs) -> tuple[int, str, list[str]]:
        monkeypatch.setattr(submit_mod, "ray_client", lambda address: jobs)
        said: list[str] = []
        out = io.StringIO()
        code = submit_ray(RaySubmission("job.py", working_dir=tmp_path), "http://x:8265", say=said.append,
                          out=out)  # fmt: skip
        return code, out.getvalue(), said

    return go


@pytest.fixture
def ctrl_c_enabled():
    """Python's own Ctrl-C handler, even when this process inherited SIGINT ignored (a shell's `cmd &`)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_ctrl_c_stops_the_job_even_when_the_log_stream_absorbs_cancellation(run, ctrl_c_enabled):
    jobs = FakeJobs(["started\n"], stubborn=True, end_after=20.0)

    def interrupt() -> None:
        jobs.tail_started.wait(10)
        time.sleep(0.3)
        signal.raise_signal(signal.SIGINT)  # one Ctrl-C, delivered to the main thread

    threading.Thread(target=interrupt, daemon=True).start()
    code, out, said = run(jobs)
    assert code == INTERRUPTED, said
    assert jobs.stopped and time.monotonic() < jobs.ends_at  # stopped, not waited out
    assert any("interrupted: stopping" in s for s in said) and said[-1].endswith("STOPPED")
    assert out.startswith("started")


def test_the_last_lines_after_the_job_ends_are_printed(run):
    code, out, said = run(FakeJobs(["a\n", "b\n"], end_after=0.5))
    assert code == OK and said[-1].endswith("SUCCEEDED")
    assert out == "a\nb\nlast line\n"


def test_a_broken_log_stream_waits_for_the_job_and_says_so(run):
    jobs = FakeJobs(["a\n"], end_after=1.5, stream_error=RuntimeError("websocket closed"))
    code, out, said = run(jobs)
    assert code == OK and time.monotonic() >= jobs.ends_at  # waited for the real end
    assert out == "a\n"
    assert any("log stream" in s and "websocket closed" in s for s in said), said
