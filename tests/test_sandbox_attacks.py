"""The code sandbox against an attacker: every probe is a program a hostile model could emit, and each is run
twice through the same entry point (`run_program`): behind the isolation this host offers (the probe must be
stopped: its effect is checked from outside — files, processes, a listening server) and with every layer
switched off (the probe must succeed, so each test can fail). Probes are bounded: run unisolated, none harms
the machine (victims are this test's own processes, sizes are a few hundred MB at most)."""

from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from star1.evals.sandbox import Isolation, IsolationError, Limits, SandboxResult, detect, run_program
from star1.evals.sandbox.launcher import seccomp_filter

try:
    ISOLATION: Isolation | None = detect()
except IsolationError as e:  # pragma: no cover - hosts without bubblewrap
    ISOLATION, WHY = None, str(e)

needs_isolation = pytest.mark.skipif(ISOLATION is None, reason="no OS isolation on this host")
UNISOLATED = Isolation("none", os.path.realpath(sys.executable), None, "test: every layer off")
ROOMY = Limits(timeout_s=20, cpu_s=30, memory_mb=8192, disk_mb=2048, output_bytes=200 << 20, nproc=4096)
STRICT = Limits(timeout_s=5, cpu_s=5, memory_mb=512)


def isolated(code: str, layers: str = "all") -> SandboxResult:
    """`layers`: all, or "namespaces" (bubblewrap alone, no seccomp or audit hook: the OS boundary)."""
    inner = layers == "all"
    return run_program(code, STRICT, seccomp=inner, audit_hook=inner)


LAYERS = pytest.mark.parametrize("layers", ["all", "namespaces"])


def unisolated(code: str) -> SandboxResult:
    return run_program(code, ROOMY, UNISOLATED, seccomp=False, audit_hook=False)


# --------------------------------------------------------------------------------------------- targets


@dataclass
class Target:
    """A world-writable folder outside the sandbox with files to attack: only isolation protects them."""

    dir: Path

    def file(self, name: str, text: str = "keep me") -> Path:
        p = self.dir / name
        p.write_text(text)
        p.chmod(0o666)
        return p


@pytest.fixture
def target(tmp_path: Path) -> Target:
    d = tmp_path / "outside"
    d.mkdir()
    d.chmod(0o777)
    tmp_path.chmod(0o755)
    return Target(d)


@pytest.fixture
def victim() -> Iterator[subprocess.Popen]:
    """A process of ours holding a secret in its environment."""
    p = subprocess.Popen(
        ["sleep", "60"], env={"PATH": "/usr/bin:/bin", "STAR1_PROBE_SECRET": "s3cr3t-" + uuid.uuid4().hex}
    )
    yield p
    p.kill()
    p.wait()


@pytest.fixture
def tcp_server() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP and a UDP server on one port of 127.0.0.1, recording what reaches them."""
    got: list[bytes] = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the same port number, for datagrams
    udp.bind(srv.getsockname())
    udp.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                got.append(udp.recv(100))
            except TimeoutError:
                pass
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    got.append(conn.recv(100))
                except OSError:
                    got.append(b"")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], got
    stop.set()
    t.join()
    srv.close()
    udp.close()


# --------------------------------------------------------------------------------------------- file system

# name -> (program template, check that the attack took effect); {d} is the target folder
FS_PROBES: dict[str, tuple[str, Callable[[Path], bool]]] = {
    "open_write": ("open('{d}/a', 'w').write('pwned')", lambda d: (d / "a").exists()),
    "dir_fd": (
        "import os\nfd = os.open('{d}', os.O_RDONLY)\n"
        "os.write(os.open('b', os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd), b'pwned')",
        lambda d: (d / "b").exists(),
    ),
    "sqlite3": (
        "import sqlite3\nc = sqlite3.connect('{d}/c.db')\nc.execute('create table t (x)')\nc.commit()",
        lambda d: (d / "c.db").exists(),
    ),
    "mmap": (
        "import mmap\nf = open('{d}/victim', 'r+b')\nm = mmap.mmap(f.fileno(), 0)\n"
        "m[:4] = b'PWND'\nm.flush()",
        lambda d: (d / "victim").read_text().startswith("PWND"),
    ),
    "shutil_copy": (
        "import shutil\nopen('src', 'w').write('x')\nshutil.copyfile('src', '{d}/copied')",
        lambda d: (d / "copied").exists(),
    ),
    "shutil_rmtree": ("import shutil\nshutil.rmtree('{d}/tree')", lambda d: not (d / "tree").exists()),
    "shutil_move": (
        "import shutil\nshutil.move('{d}/victim', '{d}/moved')",
        lambda d: not (d / "victim").exists(),
    ),
    "remove": ("import os\nos.remove('{d}/victim')", lambda d: not (d / "victim").exists()),
    "rename": ("import os\nos.rename('{d}/victim', '{d}/renamed')", lambda d: (d / "renamed").exists()),
    "truncate": ("import os\nos.truncate('{d}/victim', 0)", lambda d: (d / "victim").read_text() == ""),
    "hard_link": ("import os\nos.link('{d}/victim', '{d}/hard')", lambda d: (d / "hard").exists()),
    "symlink": ("import os\nos.symlink('/etc/passwd', '{d}/soft')", lambda d: (d / "soft").is_symlink()),
    "chmod": ("import os\nos.chmod('{d}/victim', 0o777)", lambda d: (d / "victim").stat().st_mode & 0o111),
    "pathlib_write": (
        "import pathlib\npathlib.Path('{d}/p').write_bytes(b'pwned')",
        lambda d: (d / "p").exists(),
    ),
    "read_secret_file": (
        "print(open('{d}/secret').read())",
        None,  # checked on stdout below
    ),
}


def _fs_setup(t: Target) -> None:
    t.file("victim")
    t.file("secret", "TOP-SECRET-" + t.dir.name)
    (t.dir / "tree").mkdir()
    (t.dir / "tree").chmod(0o777)
    t.file("tree/leaf")


def _fs_effect(name: str, t: Target, res: SandboxResult) -> bool:
    check = FS_PROBES[name][1]
    if check is None:
        return "TOP-SECRET-" in res.stdout
    return bool(check(t.dir))


@needs_isolation
@pytest.mark.parametrize("name", sorted(FS_PROBES))
@LAYERS
def test_filesystem_probe_is_stopped(name: str, layers: str, target: Target) -> None:
    _fs_setup(target)
    res = isolated(FS_PROBES[name][0].format(d=target.dir), layers)
    assert not _fs_effect(name, target, res), (name, res)
    assert not res.passed, res
    assert (target.dir / "tree" / "leaf").exists() and (target.dir / "secret").exists()


@pytest.mark.parametrize("name", sorted(FS_PROBES))
def test_filesystem_probe_succeeds_without_isolation(name: str, target: Target) -> None:
    _fs_setup(target)
    res = unisolated(FS_PROBES[name][0].format(d=target.dir))
    assert _fs_effect(name, target, res), (name, res)


# --------------------------------------------------------------------------------------------- processes

ECHO = "/bin/echo"
PROC_PROBES = {
    "os_fork": "import os\npid = os.fork()\nif pid == 0:\n    print('CHILD-RAN', flush=True)\n"
    "    os._exit(0)\nos.waitpid(pid, 0)",
    "posixsubprocess": (
        "import _posixsubprocess, os, sys\nr, w = os.pipe()\n"
        "pid = _posixsubprocess.fork_exec([b'{echo}', b'CHILD-RAN'], [b'{echo}'], True, (1,), None, None,"
        " -1, -1, -1, -1, -1, -1, r, w, True, False, -1, None, None, None, -1, None, False)\n"
        "os.waitpid(pid, 0)"
    ),
    "posix_spawn": "import os\npid = os.posix_spawn('{echo}', ['echo', 'CHILD-RAN'], {{}})\n"
    "os.waitpid(pid, 0)",
    "subprocess": "import subprocess\nsubprocess.run(['{echo}', 'CHILD-RAN'])",
    "os_system": "import os\nos.system('{echo} CHILD-RAN')",
    "pty_fork": "import os, pty\npid, fd = pty.fork()\nif pid == 0:\n    os.execv('{echo}', ['echo', 'x'])\n"
    "print('CHILD-RAN' if pid > 0 else '', flush=True)\nos.waitpid(pid, 0)",
    "multiprocessing": (
        "import multiprocessing as mp\n"
        "def f():\n    print('CHILD-RAN', flush=True)\n"
        "p = mp.get_context('fork').Process(target=f)\np.start()\np.join()"
    ),
    "exec_replace": "import os\nos.execv('{echo}', ['echo', 'CHILD-RAN'])",
    "ctypes_fork": (
        "import ctypes, os\npid = ctypes.CDLL(None).fork()\nif pid == 0:\n    os.write(1, b'CHILD-RAN\\n')\n"
        "    os._exit(0)\nos.waitpid(pid, 0)"
    ),
}


@needs_isolation
@pytest.mark.parametrize("name", sorted(PROC_PROBES))
def test_process_creation_is_stopped(name: str) -> None:
    res = isolated(PROC_PROBES[name].format(echo=ECHO))
    assert "CHILD-RAN" not in res.stdout, (name, res)
    assert not res.passed


@needs_isolation
@pytest.mark.parametrize("name", sorted(PROC_PROBES))
def test_process_creation_is_stopped_by_seccomp_without_the_hook(name: str) -> None:
    """The audit hook is a tripwire; the kernel's filter stops the same routes on its own."""
    res = run_program(PROC_PROBES[name].format(echo=ECHO), STRICT, audit_hook=False)
    assert "CHILD-RAN" not in res.stdout, (name, res)


@pytest.mark.parametrize("name", sorted(PROC_PROBES))
def test_process_creation_succeeds_without_isolation(name: str) -> None:
    res = unisolated(PROC_PROBES[name].format(echo=ECHO))
    assert "CHILD-RAN" in res.stdout, (name, res)


# ----------------------------------------------------------------------------------------- other processes

OTHER_PROBES = {
    "proc_environ": "print(open('/proc/{pid}/environ', 'rb').read())",
    "proc_environ_of_all": (  # what an attacker does: sweep every pid for keys, print only the hits
        "import os\nfor p in os.listdir('/proc'):\n    if p.isdigit():\n        try:\n"
        "            env = open(f'/proc/{{p}}/environ', 'rb').read().split(b'\\0')\n"
        "        except OSError:\n            continue\n"
        "        hits = [v for v in env if b'SECRET' in v or b'KEY' in v]\n"
        "        if hits:\n            print(hits)"
    ),
    "kill": "import os, signal\nos.kill({pid}, signal.SIGKILL)",
    "pidfd_send_signal": "import os, signal\nsignal.pidfd_send_signal(os.pidfd_open({pid}), signal.SIGKILL)",
    "killpg_all": "import os, signal\nos.kill(-1, signal.SIGKILL)",
}


def _other_effect(name: str, victim: subprocess.Popen, res: SandboxResult) -> bool:
    if name.startswith("proc_"):
        return "STAR1_PROBE_SECRET" in res.stdout
    try:
        victim.wait(timeout=1)
    except subprocess.TimeoutExpired:
        return False
    return True


@needs_isolation
@pytest.mark.parametrize("name", sorted(OTHER_PROBES))
@LAYERS
def test_other_processes_are_out_of_reach(name: str, layers: str, victim: subprocess.Popen) -> None:
    res = isolated(OTHER_PROBES[name].format(pid=victim.pid), layers)
    assert not _other_effect(name, victim, res), (name, res)


@pytest.mark.parametrize("name", sorted(set(OTHER_PROBES) - {"killpg_all"}))  # -1 would kill this test
def test_other_processes_are_reachable_without_isolation(name: str, victim: subprocess.Popen) -> None:
    res = unisolated(OTHER_PROBES[name].format(pid=victim.pid))
    assert _other_effect(name, victim, res), (name, res)


# --------------------------------------------------------------------------------------------- network

NET_PROBES = {
    "tcp_connect": "import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
    "s.sendall(b'ESCAPED')",
    "tcp_raw_syscall_route": (
        "import _socket\ns = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)\ns.settimeout(2)\n"
        "s.connect(('127.0.0.1', {port}))\ns.send(b'ESCAPED')"
    ),
    "dns": "import socket\nprint('RESOLVED', socket.getaddrinfo('localhost', 80))",
    "udp": "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.sendto(b'ESCAPED', ('127.0.0.1', {port}))",
}


def _net_effect(name: str, got: list[bytes], res: SandboxResult) -> bool:
    if name == "dns":
        return "RESOLVED" in res.stdout
    return b"ESCAPED" in got


@needs_isolation
@pytest.mark.parametrize("name", sorted(NET_PROBES))
@LAYERS
def test_network_is_unreachable(name: str, layers: str, tcp_server: tuple[int, list[bytes]]) -> None:
    port, got = tcp_server
    res = isolated(NET_PROBES[name].format(port=port), layers)
    threading.Event().wait(0.3)  # anything sent has arrived by now
    assert not _net_effect(name, got, res), (name, res)


@pytest.mark.parametrize("name", sorted(NET_PROBES))
def test_network_is_reachable_without_isolation(name: str, tcp_server: tuple[int, list[bytes]]) -> None:
    port, got = tcp_server
    res = unisolated(NET_PROBES[name].format(port=port))
    if name != "dns":
        for _ in range(20):
            if got:
                break
            threading.Event().wait(0.1)
    assert _net_effect(name, got, res), (name, res)


# --------------------------------------------------------------------------------------------- exhaustion

EXHAUST = {
    # name -> (program, what it prints when it got what it asked for)
    "memory": ("b = bytearray(1536 << 20)\nb[::4096] = b'x' * len(b[::4096])\nprint('GOT-IT')", "GOT-IT"),
    "disk": (
        "for i in range(10):\n    open(f'f{i}', 'wb').write(b'x' * (10 << 20))\nprint('GOT-IT')",
        "GOT-IT",
    ),
    "pids": (
        "import os\nkids = []\nfor _ in range(80):\n    pid = os.fork()\n"
        "    if pid == 0:\n        os._exit(0)\n    kids.append(pid)\n"
        "for k in kids:\n    os.waitpid(k, 0)\nprint('GOT-IT')",
        "GOT-IT",
    ),
    "threads": (
        "import threading\nev = threading.Event()\n"
        "ts = [threading.Thread(target=ev.wait) for _ in range(300)]\n"
        "for t in ts:\n    t.start()\nev.set()\nprint('GOT-IT')",
        "GOT-IT",
    ),
    "output": (
        "import sys\nfor _ in range(64):\n    sys.stdout.write('x' * (1 << 20))\nprint('GOT-IT')",
        "GOT-IT",
    ),
}


@needs_isolation
@pytest.mark.parametrize("name", sorted(EXHAUST))
def test_exhaustion_is_bounded(name: str) -> None:
    code, mark = EXHAUST[name]
    res = isolated(code)
    assert mark not in res.stdout and not res.passed, (name, res.status, res.detail)
    if name == "output":
        assert res.status == "output_limit"


@pytest.mark.parametrize("name", sorted(EXHAUST))
def test_exhaustion_succeeds_without_limits(name: str) -> None:
    code, mark = EXHAUST[name]
    res = unisolated(code)
    assert mark in res.stdout and res.passed, (name, res.status, res.detail)


@needs_isolation
def test_wall_clock_kills_the_whole_sandbox() -> None:
    res = run_program("import threading\nwhile True:\n    pass", Limits(timeout_s=1))
    assert res.status == "timeout"


# --------------------------------------------------------------------------------------------- what is inside


@needs_isolation
def test_the_sandbox_sees_no_host() -> None:
    res = isolated(
        "import os\nprint(sorted(os.listdir('/')))\nprint(dict(os.environ))\nprint(os.getuid())\n"
        "print(sorted(p for p in os.listdir('/proc') if p.isdigit()))"
    )
    assert res.passed, res
    lines = res.stdout.splitlines()
    top = set(ast.literal_eval(lines[0]))
    assert top <= {
        "usr",
        "bin",
        "lib",
        "lib64",
        "lib32",
        "sbin",
        "proc",
        "dev",
        "tmp",
        "sandbox",
        "star1",
    } | {
        Path(ISOLATION.python).parts[1]  # type: ignore[union-attr]
    }
    assert "etc" not in top and "work" not in top and "home" not in top
    env = ast.literal_eval(lines[1])
    assert not any(k.startswith(("AWS", "OPENAI", "HF_", "STAR1")) for k in env)
    assert lines[2] == "65534"
    assert len(ast.literal_eval(lines[3])) <= 3  # bwrap's init and the launcher
    assert res.layers[0] == "bubblewrap" and {"seccomp", "rlimits", "audit_hook"} <= set(res.layers)


def test_seccomp_filter_is_well_formed() -> None:
    prog = seccomp_filter("x86_64", 2)
    assert prog is not None and len(prog) % 8 == 0 and 0 < len(prog) // 8 < 4096
    assert seccomp_filter("riscv64", 2) is None


def test_no_isolation_is_refused_unless_opted_out(monkeypatch: pytest.MonkeyPatch) -> None:
    detect.cache_clear()
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("STAR1_SANDBOX_POD", raising=False)
    try:
        with pytest.raises(IsolationError, match="unsafe_allow_no_isolation"):
            detect()
        assert detect(True).kind == "none"
        monkeypatch.setenv("STAR1_SANDBOX_POD", "1")
        assert detect(False, "pod").kind == "pod"
    finally:
        detect.cache_clear()
