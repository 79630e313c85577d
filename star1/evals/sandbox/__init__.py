"""Run untrusted generated code: a separate process with CPU, memory, file-size, file-count and process
limits, a wall-clock timeout that kills its process group, a fresh temporary directory as its only
writable place, an empty environment, no network, no child processes.

Layers (each recorded in the result): rlimits (RLIMIT_CPU/AS/FSIZE/NOFILE/NPROC/CORE); a new network
namespace (`unshare(CLONE_NEWNET)`, no interfaces) where the kernel allows it; and always a CPython audit
hook, installed before the program runs, that ends the process (exit 97, it cannot be caught) on socket
use, fork/exec/spawn/subprocess, ctypes, and any file write, delete, rename or permission change outside
the temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

LAUNCHER = Path(__file__).with_name("launcher.py")
BLOCKED_EXIT = 97
MARK = "STAR1-SANDBOX-BLOCKED:"


@dataclass
class SandboxResult:
    status: str  # passed / failed / timeout / blocked / memory / error
    returncode: int | None
    detail: str = ""
    layers: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def run_program(
    code: str, timeout_s: float = 3.0, cpu_s: int = 5, memory_mb: int = 1024, max_output: int = 4000
) -> SandboxResult:
    """Run `code` as `__main__` in the sandbox; passed = exit code 0 within the limits."""
    work = Path(tempfile.mkdtemp(prefix="star1-sbx-"))
    try:
        (work / "program.py").write_text(code, encoding="utf-8")
        limits = {"cpu_s": cpu_s, "memory_mb": memory_mb, "fsize_mb": 16, "nofile": 64, "nproc": 64}
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(work), "TMPDIR": str(work),
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}  # fmt: skip
        cmd = [sys.executable, "-I", "-B", str(LAUNCHER), str(work), json.dumps(limits), "program.py"]
        proc = subprocess.Popen(
            cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return SandboxResult("timeout", None, f"killed after {timeout_s:g} s wall clock")
        _kill_group(proc)  # anything the program left behind in its group
        stderr = err.decode("utf-8", "replace")
        layers = tuple(
            ln.split(":", 1)[1].strip().split(",")
            for ln in stderr.splitlines()
            if ln.startswith("STAR1-SANDBOX-LAYERS:")
        )
        got = tuple(layers[0]) if layers else ()
        tail = stderr[-max_output:]
        if proc.returncode == 0:
            return SandboxResult("passed", 0, "", got)
        if proc.returncode == BLOCKED_EXIT and MARK in stderr:
            what = stderr.split(MARK, 1)[1].splitlines()[0].strip()
            return SandboxResult("blocked", proc.returncode, what, got)
        if proc.returncode == -signal.SIGXCPU or "SIGXCPU" in tail:
            return SandboxResult("timeout", proc.returncode, "CPU time limit", got)
        if "MemoryError" in tail:
            return SandboxResult("memory", proc.returncode, "memory limit", got)
        return SandboxResult("failed", proc.returncode, tail[-800:], got)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
