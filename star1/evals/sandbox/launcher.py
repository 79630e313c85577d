"""Runs inside the sandbox process (trusted): apply the limits, leave the network, install the audit
hook, then run the untrusted program. Usage: launcher.py WORKDIR LIMITS_JSON PROGRAM"""

import json
import os
import resource
import sys

BLOCKED_EXIT = 97
MARK = "STAR1-SANDBOX-BLOCKED:"
CLONE_NEWNET = 0x40000000


def _limits(lim):
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


def _leave_network():
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.unshare(CLONE_NEWNET) == 0
    except Exception:
        return False


def _hook_factory(workdir):
    root = os.path.realpath(workdir)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    deny = {
        "socket.__new__",
        "socket.bind",
        "socket.connect",
        "socket.connect_ex",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.sendto",
        "os.fork",
        "os.forkpty",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.startfile",
        "subprocess.Popen",
        "pty.spawn",
        "ctypes.dlopen",
        "ctypes.dlsym",
        "ctypes.call_function",
        "ctypes.cdata",
        "os.kill",
        "os.killpg",
        "signal.pthread_kill",
        "resource.setrlimit",
        "resource.prlimit",
        "sys.addaudithook",
        "os.putenv",
        "os.unsetenv",
        "os.chroot",
        "socket.sethostname",
        "winreg.OpenKey",
    }
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


def main():
    workdir, lim, program = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    _limits(lim)
    layers = ["rlimits", "audit_hook"] + (["netns"] if _leave_network() else [])
    os.write(2, f"STAR1-SANDBOX-LAYERS: {','.join(layers)}\n".encode())
    import runpy  # everything the runner needs, imported before the hook

    os.chdir(workdir)
    sys.path[:] = [workdir] + [p for p in sys.path if p and not p.startswith(workdir)]
    sys.argv = [program]
    sys.addaudithook(_hook_factory(workdir))
    runpy.run_path(program, run_name="__main__")


if __name__ == "__main__":
    main()
