"""Runs inside the sandbox process (trusted, standard library only): apply the limits, install the seccomp
filter and the audit hook, run the untrusted program as a module (not `__main__`), and write the completion
marker once it returned. Usage: `python -I -S -B launcher.py SPEC_JSON`.

The spec names the program, the limits, the marker's file descriptor and nonce, and which layers to apply.
This file is also imported by star1 (for `seccomp_filter` and the tests); it imports nothing outside the
standard library, because inside a bubblewrap sandbox nothing else is mounted.
"""

import json
import os
import resource
import struct
import sys

BLOCKED_EXIT = 97
MARK = "STAR1-SANDBOX-BLOCKED:"
LAYERS = "STAR1-SANDBOX-LAYERS:"
RUN_NAME = "star1_sandboxed_program"  # never "__main__": a solution's `if __name__ == "__main__":` stays off

# --------------------------------------------------------------------------------------------- seccomp (BPF)
# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6]   (little-endian hosts)
_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _KILL = 0x7FFF0000, 0x80000000
_EPERM, _EACCES, _ENOSYS = 1, 13, 38
_CLONE_THREAD, _AF_UNIX = 0x00010000, 1

# arch -> (AUDIT_ARCH value, syscall numbers). Only the syscalls the filter names.
_ARCHES = {
    "x86_64": (0xC000003E, {
        "clone": 56, "fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "clone3": 435, "socket": 41,
        "kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297,
        "pidfd_open": 434, "pidfd_send_signal": 424, "pidfd_getfd": 438, "ptrace": 101,
        "process_vm_readv": 310, "process_vm_writev": 311, "mount": 165, "umount2": 166, "unshare": 272,
        "setns": 308, "pivot_root": 155, "chroot": 161, "keyctl": 250, "add_key": 248, "request_key": 249,
        "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "setrlimit": 160, "prlimit64": 302,
        "personality": 135,
    }),
    "aarch64": (0xC00000B7, {
        "clone": 220, "execve": 221, "execveat": 281, "clone3": 435, "socket": 198, "kill": 129,
        "tkill": 130, "tgkill": 131, "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240, "pidfd_open": 434,
        "pidfd_send_signal": 424, "pidfd_getfd": 438, "ptrace": 117, "process_vm_readv": 270,
        "process_vm_writev": 271, "mount": 40, "umount2": 39, "unshare": 97, "setns": 268,
        "pivot_root": 41, "chroot": 51, "keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280,
        "perf_event_open": 241, "userfaultfd": 282, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "setrlimit": 164, "prlimit64": 261, "personality": 92,
    }),
}  # fmt: skip
# Refused outright (EPERM): new processes and programs, other processes' memory and signals, namespaces and
# mounts, kernel interfaces a test program never needs, and raising its own limits.
_DENY = (
    "fork", "vfork", "execve", "execveat", "kill", "tkill", "rt_sigqueueinfo", "pidfd_open",
    "pidfd_send_signal", "pidfd_getfd", "ptrace", "process_vm_readv", "process_vm_writev", "mount",
    "umount2", "unshare", "setns", "pivot_root", "chroot", "keyctl", "add_key", "request_key", "bpf",
    "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "setrlimit",
    "prlimit64", "personality",
)  # fmt: skip


def _insn(code, k, jt=0, jf=0):
    return struct.pack("=HBBI", code, jt, jf, k)


def seccomp_filter(machine, own_pid):
    """A classic-BPF seccomp program (bytes) for `machine` (x86_64 or aarch64), or None elsewhere.

    - clone only with CLONE_THREAD (threads, not processes); clone3 answers ENOSYS (glibc falls back);
    - socket only for AF_UNIX (no network, no DNS, no netlink);
    - tgkill / rt_tgsigqueueinfo only to this process (`own_pid`), the rest of `_DENY` never;
    - x32 system calls on x86_64 and a foreign architecture kill the process."""
    if machine not in _ARCHES:
        return None
    arch, nr = _ARCHES[machine]
    errno = lambda e: 0x00050000 | e  # noqa: E731  (SECCOMP_RET_ERRNO | errno)
    # every check loads nr again, so each block stands alone: [check..., ret], jumps are relative
    blocks = [[_insn(_LD_W_ABS, 4), _insn(_JEQ, arch, 1, 0), _insn(_RET, _KILL)]]
    if machine == "x86_64":
        blocks.append([_insn(_LD_W_ABS, 0), _insn(_JGE, 0x40000000, 0, 1), _insn(_RET, _KILL)])

    def on_arg(name, arg, test, k, ok, bad):
        # if nr == name: load args[arg] (low word); test it against k; return ok or bad
        return [
            _insn(_LD_W_ABS, 0), _insn(_JEQ, nr[name], 0, 4),
            _insn(_LD_W_ABS, 16 + 8 * arg), _insn(test, k, 0, 1), _insn(_RET, ok), _insn(_RET, bad),
        ]  # fmt: skip

    blocks.append(on_arg("clone", 0, _JSET, _CLONE_THREAD, _ALLOW, errno(_EPERM)))
    blocks.append(on_arg("socket", 0, _JEQ, _AF_UNIX, _ALLOW, errno(_EACCES)))
    blocks.append(on_arg("tgkill", 0, _JEQ, own_pid, _ALLOW, errno(_EPERM)))
    blocks.append(on_arg("rt_tgsigqueueinfo", 0, _JEQ, own_pid, _ALLOW, errno(_EPERM)))
    blocks.append([_insn(_LD_W_ABS, 0), _insn(_JEQ, nr["clone3"], 0, 1), _insn(_RET, errno(_ENOSYS))])
    for name in _DENY:
        if name in nr:
            blocks.append([_insn(_LD_W_ABS, 0), _insn(_JEQ, nr[name], 0, 1), _insn(_RET, errno(_EPERM))])
    blocks.append([_insn(_RET, _ALLOW)])
    return b"".join(b"".join(b) for b in blocks)


def install_seccomp(program):
    """no_new_privs, then the filter (prctl through ctypes, before the audit hook exists). True if loaded."""
    import ctypes

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2
    if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0:
        return False
    prog = SockFprog(len(program) // 8, program)
    return libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(prog), 0, 0) == 0


# --------------------------------------------------------------------------------------------- limits


def set_limits(lim):
    mb = 1024 * 1024
    for res, value in (
        (resource.RLIMIT_CPU, lim["cpu_s"]),
        (resource.RLIMIT_AS, lim["memory_mb"] * mb),
        (resource.RLIMIT_FSIZE, lim["fsize_mb"] * mb),
        (resource.RLIMIT_NOFILE, lim["nofile"]),
        (resource.RLIMIT_NPROC, lim["nproc"]),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(res, (value, value))


# --------------------------------------------------------------------------------------------- audit hook


def audit_hook(workdir):
    """PEP 578 hook (an extra layer, not a boundary): ends the process (exit 97) on the events a test program
    has no business raising, and on writes outside `workdir`."""
    root = os.path.realpath(workdir)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    deny = {
        "socket.__new__", "socket.bind", "socket.connect", "socket.connect_ex", "socket.getaddrinfo",
        "socket.gethostbyname", "socket.sendto", "os.fork", "os.forkpty", "os.system", "os.exec",
        "os.posix_spawn", "os.spawn", "os.startfile", "subprocess.Popen", "pty.spawn", "ctypes.dlopen",
        "ctypes.dlsym", "ctypes.call_function", "ctypes.cdata", "os.kill", "os.killpg", "signal.pthread_kill",
        "resource.setrlimit", "resource.prlimit", "sys.addaudithook", "os.putenv", "os.unsetenv", "os.chroot",
        "socket.sethostname", "sqlite3.connect", "mmap.__new__",
    }  # fmt: skip
    path_events = {
        "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link", "os.symlink",
        "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile", "os.setxattr",
        "os.removexattr", "os.chflags",
    }  # fmt: skip

    def inside(path):
        if isinstance(path, int):
            return True  # an already-open descriptor (opened under this hook)
        try:
            p = os.path.realpath(os.fsdecode(path))
        except Exception:
            return False
        return p == root or p.startswith(root + os.sep)

    def stop(what):
        os.write(2, f"\n{MARK} {what}\n".encode())
        os._exit(BLOCKED_EXIT)

    def hook(event, args):
        if event in deny:
            stop(event)
        elif event == "open":
            path, mode, flags = [*list(args), None, None, None][:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & write_flags
            )
            if writing and not inside(path):
                stop(f"open for writing outside the sandbox: {path!r}")
        elif event in path_events:
            for a in args[:2]:
                if isinstance(a, str | bytes | os.PathLike) and not inside(a):
                    stop(f"{event} outside the sandbox: {a!r}")

    return hook


# --------------------------------------------------------------------------------------------- main


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    workdir, marker_fd = spec["workdir"], spec["marker_fd"]
    os.set_inheritable(marker_fd, False)
    set_limits(spec["limits"])
    layers = ["rlimits"]
    if spec["seccomp"]:
        program = seccomp_filter(os.uname().machine, os.getpid())
        if program is None or not install_seccomp(program):
            os.write(
                2,
                f"STAR1-SANDBOX-ERROR: cannot install the seccomp filter on {os.uname().machine}\n".encode(),
            )
            os._exit(96)
        layers.append("seccomp")
    import runpy  # everything the runner needs, imported before the hook

    os.chdir(workdir)
    sys.path[:] = [workdir] + [p for p in sys.path if p and not p.startswith(workdir)]
    sys.argv = [spec["program"]]
    if spec["audit_hook"]:
        sys.addaudithook(audit_hook(workdir))
        layers.append("audit_hook")
    os.write(2, f"{LAYERS} {','.join(layers)}\n".encode())
    try:
        runpy.run_path(spec["program"], run_name=RUN_NAME)
    except SystemExit as e:  # sys.exit / unittest.main() before the tests finished is not a pass
        os.write(
            2, f"\nSTAR1-SANDBOX-EXIT: the program called sys.exit({e.code!r}) before it finished\n".encode()
        )
        os._exit(1)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os.write(
        marker_fd, spec["nonce"].encode()
    )  # reached only when every statement, check() included, returned
    os._exit(0)


if __name__ == "__main__":
    main()
