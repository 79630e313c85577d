"""Which OS isolation a sandboxed program gets on this host, and the bubblewrap command that gives it.

- `bubblewrap`: new user, mount, PID, network, IPC, UTS and cgroup namespaces; the root is an empty tmpfs with
  only the interpreter's files bound read-only (no /etc, no /home, no store, no repository), a private /proc
  that shows only the sandbox's own processes, a minimal /dev, a size-capped tmpfs as the only writable place,
  an empty environment. Run by root, the sandbox drops to an unprivileged uid first (uid 0 ignores
  RLIMIT_NPROC and owns root's files even inside a user namespace).
- `pod`: the process already runs in a pod made for it (the chart's sandbox worker group: no secrets, egress
  denied by a NetworkPolicy, optionally gVisor). Declared by that pod's environment (`STAR1_SANDBOX_POD=1`),
  because a pod cannot prove it from inside; bubblewrap is still preferred where it works.
- `none`: no OS isolation; only with `eval.sandbox.unsafe_allow_no_isolation: true`, and the results say so.

The seccomp filter, rlimits and the audit hook (`launcher.py`) apply on top of every one of them.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SANDBOX_UID = 65534  # nobody: what root drops to before entering the sandbox
POD_ENV = "STAR1_SANDBOX_POD"
WORKDIR = "/sandbox"  # inside the bubblewrap sandbox
SPEC = "/star1/spec.json"
LAUNCHER = "/star1/launcher.py"


class IsolationError(RuntimeError):
    """No OS isolation is available and the user did not opt out."""


@dataclass(frozen=True)
class Isolation:
    """How programs run here: `kind` (bubblewrap / pod / none), the interpreter, the uid, and why."""

    kind: str
    python: str
    uid: int | None = None  # the uid to switch to before bwrap (root only)
    detail: str = ""

    def describe(self) -> dict[str, str | int | None]:
        return {"isolation": self.kind, "python": self.python, "uid": self.uid, "detail": self.detail}


def _interpreters() -> list[str]:
    """This interpreter's real binary first (a venv's python is a link into its base install), then the
    system's: the sandbox needs the standard library only."""
    out = [os.path.realpath(sys.executable)]
    for p in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(p) and os.path.realpath(p) not in out:
            out.append(os.path.realpath(p))
    return out


def _prefix_of(python: str) -> str:
    """The install folder that holds `python`'s binary and standard library (bound read-only)."""
    p = Path(python).resolve().parent.parent  # …/bin/python3.11 → …
    return str(p)


def bwrap_command(python: str, tmpfs_mb: int, fds: dict[str, int]) -> list[str]:
    """The bubblewrap command line; `fds` maps the in-sandbox paths of `SPEC`, `LAUNCHER` and the program to
    readable descriptors whose contents bwrap copies in."""
    bwrap = shutil.which("bwrap") or "bwrap"
    cmd = [
        bwrap, "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try", "--die-with-parent", "--new-session",
        "--hostname", "sandbox", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
        "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8",
        "--setenv", "HOME", WORKDIR, "--setenv", "TMPDIR", "/tmp", "--setenv", "PYTHONHASHSEED", "0",
        "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
        "--ro-bind", "/usr", "/usr",
    ]  # fmt: skip
    for name in ("bin", "lib", "lib64", "lib32", "sbin"):
        host = Path("/") / name
        if host.is_symlink():
            cmd += ["--symlink", os.readlink(host), f"/{name}"]
        elif host.is_dir():
            cmd += ["--ro-bind", str(host), f"/{name}"]
    prefix = _prefix_of(python)
    if not prefix.startswith("/usr/"):
        cmd += ["--ro-bind", prefix, prefix]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    cmd += ["--size", str(tmpfs_mb << 20), "--tmpfs", WORKDIR, "--size", str(4 << 20), "--tmpfs", "/tmp"]
    for dest, fd in fds.items():
        cmd += ["--perms", "0444", "--ro-bind-data", str(fd), dest]
    cmd += ["--chdir", WORKDIR, "--", python, "-I", "-S", "-B", LAUNCHER, SPEC]
    return cmd


def _probe_bwrap(python: str, uid: int | None) -> str | None:
    """None when a trivial program runs under bubblewrap with `python` as `uid`; else why not."""
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    r, w = os.pipe()
    os.write(w, b"print('ok')\n")
    os.close(w)
    cmd = bwrap_command(python, 1, {"/star1/probe.py": r})
    cmd = [*cmd[: cmd.index("--")], "--", python, "-I", "-S", "-B", "/star1/probe.py"]
    try:
        done = subprocess.run(
            cmd, capture_output=True, timeout=30, pass_fds=(r,), user=uid, group=uid,
            extra_groups=[] if uid is not None else None, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as e:
        return f"bubblewrap did not start: {e}"
    finally:
        os.close(r)
    if done.returncode != 0 or done.stdout.strip() != b"ok":
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return f"bubblewrap failed ({err[-1] if err else 'exit ' + str(done.returncode)})"
    return None


@functools.cache
def detect(allow_none: bool = False, want: str = "auto") -> Isolation:
    """The strongest isolation this host offers (`want`: auto, bubblewrap, pod); IsolationError when there is
    none and `allow_none` is false. Probed once per process."""
    uid = SANDBOX_UID if os.geteuid() == 0 else None
    reasons = []
    if want in ("auto", "bubblewrap"):
        for py in _interpreters():
            why = _probe_bwrap(py, uid)
            if why is None:
                return Isolation("bubblewrap", py, uid, "namespaces: user, mount, pid, net, ipc, uts")
            reasons.append(f"{py}: {why}")
            if "not installed" in why:
                break
    if want in ("auto", "pod") and os.environ.get(POD_ENV) == "1":
        return Isolation("pod", os.path.realpath(sys.executable), None, f"declared by {POD_ENV}=1")
    if want == "pod":
        reasons.append(f"{POD_ENV}=1 is not set (only the chart's sandbox worker group sets it)")
    if allow_none:
        return Isolation("none", os.path.realpath(sys.executable), None, "; ".join(reasons))
    raise IsolationError(
        "generated code must run behind OS isolation, and none is available here: "
        + "; ".join(reasons)
        + ". Install bubblewrap (apt-get install bubblewrap) where unprivileged user namespaces work, run "
        "the code benchmarks on the chart's sandbox worker group, or — only on a throwaway machine — set "
        "eval.sandbox.unsafe_allow_no_isolation: true"
    )
