"""A real multi-node Ray cluster on this machine: a head started with `ray start --head` (dashboard, token
auth, free ports, its own temp dir) and worker nodes started with `ray start --address`, each its own
process group with its own ports, resources and environment, as pods of a KubeRay cluster would be.

Nodes are stopped by killing their own process groups (and any process still naming the cluster's temp dir),
never with `ray stop`, which would stop every Ray cluster on the machine. `kill_raylet` kills one node the way
a spot preemption does: its raylet gets SIGKILL, nothing is told.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
# per node: node manager, object manager, dashboard agent (listen, gRPC), metrics, runtime env agent
NODE_PORTS = ("nm", "om", "al", "ag", "me", "re")
WORKER_PORTS = 24
# What a node keeps of this process's env when it must not inherit the rest: this machine's setup (the venv's
# caches, no Hugging Face hub), the part an image's ENV would hold.
MACHINE_ENV = ("LANG", "LC_ALL", "TMPDIR", "STAR1_CACHE", "TORCH_EXTENSIONS_DIR", "HF_HUB_OFFLINE",
               "TOKENIZERS_PARALLELISM")  # fmt: skip


def _machine(name: str) -> bool:
    return name in MACHINE_ENV or name.startswith("VLLM_")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class Ports:
    """Ports for one cluster, below the kernel's ephemeral range (32768+): an ephemeral port that was free a
    moment ago may be handed to any process's outgoing connection before Ray binds it; these are not, and no
    two of our nodes get the same one."""

    def __init__(self, low: int = 10000, high: int = 32000) -> None:
        self.low, self.high = low, high
        self.taken: set[int] = set()

    def range(self, n: int) -> int:
        for _ in range(500):
            start = random.randrange(self.low, self.high - n)
            span = set(range(start, start + n))
            if not span & self.taken and all(_bindable(p) for p in span):
                self.taken |= span
                return start
        raise RuntimeError(f"no {n} free ports in {self.low}-{self.high}")

    def one(self) -> int:
        return self.range(1)


@dataclass
class Node:
    """One `ray start` process group: the head or a worker of `group`."""

    name: str
    group: str
    proc: subprocess.Popen
    ports: dict[str, int]
    log: Path
    resources: dict[str, float] = field(default_factory=dict)
    killed: bool = False

    def raylet_pids(self) -> list[int]:
        import psutil

        flag = f"--node_manager_port={self.ports['nm']}"
        return [
            p.pid
            for p in psutil.process_iter(["name", "cmdline"])
            if "raylet" in (p.info["name"] or "") and flag in (p.info["cmdline"] or [])
        ]


class LocalRayCluster:
    """`start_head()`, then `add_node()` per worker; `url` is the dashboard (Ray Jobs API), `client_env` what
    a client needs (the token)."""

    def __init__(self, env: dict[str, str] | None = None, auth: bool = True, inherit: bool = True) -> None:
        """`inherit`: nodes get this process's environment; else only MACHINE_ENV of it (a pod's env is its
        image's and its spec's, nothing of the test's), plus `env` and the node's own."""
        self.temp_dir = tempfile.mkdtemp(prefix="s1ray", dir="/tmp")  # short: Ray's socket paths are limited
        self.token = secrets.token_hex(16) if auth else None
        outer = os.environ if inherit else {k: v for k, v in os.environ.items() if _machine(k)}
        self.base_env = {
            **outer,
            **(env or {}),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",  # the entrypoint's `python` is the venv's
            "RAY_USAGE_STATS_ENABLED": "0",
            "HOME": self.temp_dir,  # no ~/.ray/auth_token of anyone else
        }
        if self.token:
            self.base_env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        self.nodes: list[Node] = []
        self.ports = Ports()
        self.gcs_port = self.ports.one()
        self.url = ""

    @property
    def client_env(self) -> dict[str, str]:
        return dict(self.base_env)

    def _start(
        self,
        name: str,
        group: str,
        head: bool,
        num_cpus: float,
        num_gpus: float = 0,
        resources: dict[str, float] | None = None,
        env: dict[str, str] | None = None,
        memory: int | None = None,
        object_store_memory: int = 300 * 2**20,
    ) -> Node:
        ports = {k: self.ports.one() for k in NODE_PORTS}
        # a temp dir per node: nodes of one temp dir started at once race for the same socket names
        node_dir = tempfile.mkdtemp(prefix="n", dir=self.temp_dir)
        workers = self.ports.range(WORKER_PORTS)
        cmd = [
            str(VENV_BIN / "ray"), "start", "--block", "--node-ip-address", "127.0.0.1",
            "--num-cpus", f"{int(num_cpus)}", "--num-gpus", f"{int(num_gpus)}",
            "--node-manager-port", str(ports["nm"]), "--object-manager-port", str(ports["om"]),
            "--dashboard-agent-listen-port", str(ports["al"]),
            "--dashboard-agent-grpc-port", str(ports["ag"]),
            "--metrics-export-port", str(ports["me"]), "--runtime-env-agent-port", str(ports["re"]),
            "--min-worker-port", str(workers), "--max-worker-port", str(workers + WORKER_PORTS - 1),
            "--object-store-memory", str(object_store_memory), "--temp-dir", node_dir,
            "--disable-usage-stats",
        ]  # fmt: skip
        if resources:
            cmd += ["--resources", json.dumps(resources)]
        if memory:
            cmd += ["--memory", str(memory)]
        if head:
            ports |= {"dash": self.ports.one(), "client": self.ports.one()}
            cmd += [
                "--head", "--port", str(self.gcs_port), "--include-dashboard", "true",
                "--dashboard-host", "127.0.0.1", "--dashboard-port", str(ports["dash"]),
                "--ray-client-server-port", str(ports["client"]),
            ]  # fmt: skip
        else:
            cmd += ["--address", f"127.0.0.1:{self.gcs_port}"]
        log = Path(self.temp_dir) / f"ray-start-{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd, env={**self.base_env, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.temp_dir,
            )  # fmt: skip
        node = Node(name, group, proc, ports, log, {"CPU": num_cpus, "GPU": num_gpus, **(resources or {})})
        self.nodes.append(node)
        return node

    def start_head(self, timeout: float = 120, **kw: Any) -> str:
        node = self._start("head", "head", True, **kw)
        self.url = f"http://127.0.0.1:{node.ports['dash']}"
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(
                    urllib.request.Request(f"{self.url}/api/version", headers=headers), timeout=2
                )
                return self.url
            except OSError:
                if node.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(node.log.read_text()[-3000:]) from None
                time.sleep(0.5)

    def add_node(self, name: str, group: str, **kw: Any) -> Node:
        return self._start(name, group, False, **kw)

    def get(self, path: str) -> Any:
        """GET a dashboard API path as JSON, with this cluster's token (never a token cached for another)."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        req = urllib.request.Request(f"{self.url}{path}", headers=headers)
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)

    def node_summary(self) -> list[dict[str, Any]]:
        return self.get("/nodes?view=summary")["data"]["summary"]

    def node_ids(self) -> dict[int, str]:
        """{node manager port: Ray node id} of every node the GCS knows."""
        return {int(n["raylet"]["nodeManagerPort"]): n["raylet"]["nodeId"] for n in self.node_summary()}

    def actors(self) -> list[dict[str, Any]]:
        """Every actor the cluster has had, dead ones too (the state API: class_name, state, node_id, …)."""
        return self.get("/api/v0/actors?limit=10000&detail=true")["data"]["result"]["result"]

    def wait_for_nodes(self, n: int, timeout: float = 120) -> None:
        """Until `n` nodes (head included) are alive; a node process that died says why."""
        deadline, seen, err = time.monotonic() + timeout, 0, None
        while True:
            dead = [x for x in self.nodes if x.proc.poll() is not None and not x.killed]
            if dead:
                raise RuntimeError(f"node {dead[0].name} exited:\n{dead[0].log.read_text()[-3000:]}")
            try:
                seen = sum(x["raylet"]["state"] == "ALIVE" for x in self.node_summary())
                if seen >= n:
                    return
            except (OSError, KeyError, ValueError) as e:  # the dashboard is still warming up
                err = e
            if time.monotonic() > deadline:
                raise RuntimeError(f"{seen} of {n} nodes came up in {timeout:.0f} s (last error: {err})")
            time.sleep(1)

    def kill_raylet(self, node: Node) -> int:
        """SIGKILL the node's raylet (a spot preemption); returns how many raylets were killed."""
        pids = node.raylet_pids()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        node.killed = True
        return len(pids)

    def stop(self) -> None:
        import psutil

        for node in reversed(self.nodes):
            try:
                os.killpg(node.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        time.sleep(2)
        for node in self.nodes:
            try:
                os.killpg(node.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Ray processes that left their group still name our temp dir on their command line
        for p in psutil.process_iter(["pid", "cmdline"]):
            if any(self.temp_dir in arg for arg in p.info["cmdline"] or []):
                try:
                    p.kill()
                except psutil.Error:
                    pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)
