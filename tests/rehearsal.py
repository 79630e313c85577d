"""The cluster rehearsal: every RayJob the chart renders, run on a local multi-node Ray cluster the way
KubeRay would run it on Kubernetes (docs/kubernetes.md, "The cluster rehearsal").

From each rendering (the chart's defaults for curate, `helm/examples/<job>.yaml` for sft, eval and nightly)
the rehearsal takes the RayJob (for the nightly: the one its CronJob's pod creates) and plays KubeRay:

- **the cluster**: a head and one `ray start` node per worker pod, declaring what KubeRay would pass to
  `ray start`: a group's `resources` (CPU, GPU, `accelerator_type:…`, `star1_sandbox`), else the container's
  CPU / `nvidia.com/gpu` limits, and its memory limit. GPU groups that start at zero pods get one node, as the
  autoscaler would give them once asked; a "GPU" is declared on a CPU machine (nothing here runs CUDA).
- **the pods' environment**: each container's `env`, with `secretKeyRef`s resolved from the rehearsal's
  stand-in Secrets (an unset optional key stays unset, a missing required one fails as the pod would).
- **the filesystem**: the image's working folder (`/opt/star1/app`, the Dockerfile's WORKDIR) is this
  checkout; each ConfigMap volume of the head is a folder holding the ConfigMap's files. The entrypoint's
  paths are mapped onto them, nothing else in it changes.
- **the submitter**: the entrypoint goes to the Ray Jobs API of the head's dashboard with a submission id, the
  RayJob's `runtimeEnvYAML`, metadata and entrypoint resources, as KubeRay's submitter pod does, and the job
  is followed to SUCCEEDED / FAILED / STOPPED.

One override layer adapts the rendered jobs to this machine (`tests/fixtures/rehearsal/overrides.yaml`): chart
values (the S3 endpoint, small pools, short waits) merged before rendering, and per-job config keys (the test
model endpoint, the small model, CPU engines, tiny sizes) merged into the mounted config after it. Everything
else — entrypoints, the chart's config merging, engine settings, env, placement — is the chart's own.
"""

from __future__ import annotations

import copy
import math
import os
import re
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from star1.deploy import chart
from star1.deploy.rayjob import deep_merge
from star1.store import Store
from tests.ray_cluster import LocalRayCluster, Node

REPO = Path(__file__).resolve().parents[1]
OVERRIDES = REPO / "tests" / "fixtures" / "rehearsal" / "overrides.yaml"
IMAGE_APP = "/opt/star1/app"  # the image's WORKDIR (Dockerfile): this checkout stands in for it
JOBS = ("curate", "sft", "eval", "nightly")
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}


def quantity(q: Any) -> float:
    """A Kubernetes quantity ("500m", "4", "16Gi") as a number."""
    s = str(q)
    if s.endswith("m"):
        return float(s[:-1]) / 1000
    for unit, mult in _UNITS.items():
        if s.endswith(unit):
            return float(s[: -len(unit)]) * mult
    return float(s)


@dataclass
class Group:
    """A Ray node group: what one pod's `ray start` declares, its env, and how many pods come up."""

    name: str
    pods: int
    num_cpus: float
    num_gpus: float
    resources: dict[str, float]
    memory: int | None
    env: dict[str, str]
    disks: list[str] = field(default_factory=list)  # mount paths of the pod's own volumes (emptyDir, PVC, …)
    init: list[list[str]] = field(default_factory=list)  # each init container's command + args


@dataclass
class RenderedJob:
    """One RayJob of a rendering, with the files its head mounts."""

    key: str
    name: str
    spec: dict[str, Any]
    head: Group
    groups: list[Group]
    mounts: dict[str, dict[str, str]]  # mountPath -> {file name: text} (ConfigMap volumes of the head)
    working_dir: str

    @property
    def entrypoint(self) -> str:
        return self.spec["entrypoint"]

    def config(self, mount: str = "/etc/star1", name: str = "config.yaml") -> dict[str, Any]:
        return yaml.safe_load(self.mounts[mount][name])

    def with_config(self, over: dict[str, Any], mount: str = "/etc/star1") -> RenderedJob:
        """A copy whose mounted config.yaml has `over` merged in (a bad config, for tests that need one)."""
        job = copy.deepcopy(self)
        job.mounts[mount]["config.yaml"] = yaml.safe_dump(
            deep_merge(self.config(mount), over), sort_keys=False
        )
        return job

    def group(self, name: str) -> Group:
        return next(g for g in self.groups if g.name == name)


# ----------------------------------------------------------------------------------------- the override layer


def override_layer(ctx: dict[str, str]) -> dict[str, Any]:
    """The override file, its placeholders (`{s3_endpoint}`, `{llm_url}`, `{app}`, …) filled from `ctx`."""
    text = OVERRIDES.read_text(encoding="utf-8")
    for key, value in ctx.items():
        text = text.replace("{" + key + "}", value)
    left = sorted(set(re.findall(r"\{([a-z_]+)\}", text)))
    if left:
        raise KeyError(f"{OVERRIDES}: placeholders with no value: {left}")
    return yaml.safe_load(text)


def job_values(job: str) -> dict[str, Any]:
    """The chart values a user renders `job` with: the defaults (curate) or helm/examples/<job>.yaml."""
    if job == "curate":
        return {}
    return yaml.safe_load(chart.examples()[job].read_text(encoding="utf-8")) or {}


# ------------------------------------------------------------------------------------------------ rendering


def user_values() -> dict[str, Any]:
    """`$STAR1_REHEARSAL_VALUES`: a values file of yours to rehearse (merged under the override layer)."""
    path = os.environ.get("STAR1_REHEARSAL_VALUES")
    return (yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}) if path else {}


def switched_on(job: str) -> dict[str, Any]:
    return {"nightly": {"enabled": True}} if job == "nightly" else {"jobs": {job: {"enabled": True}}}


def render_jobs(
    ctx: dict[str, str],
    secrets_: dict[str, dict[str, str]],
    values: dict[str, Any] | None = None,
    mine: dict[str, Any] | None = None,
) -> dict[str, RenderedJob]:
    """Every RayJob the chart renders: the job's values, then `mine` (the user's), then the override layer,
    then `values` (e.g. a broken command, for the tests that need one)."""
    layer = override_layer(ctx)
    out = {}
    for job in JOBS:
        merged = job_values(job)
        for over in (mine or {}, switched_on(job), layer.get("values") or {}, values or {}):
            merged = deep_merge(merged, over)
        objs = chart.objects(chart.render(merged))
        out[job] = rendered_job(job, objs, secrets_, (layer.get("config") or {}).get(job) or {}, merged)
    return out


def rendered_job(
    job: str,
    objs: list[dict[str, Any]],
    secrets_: dict[str, dict[str, str]],
    config_over: dict[str, Any],
    values: dict[str, Any],
) -> RenderedJob:
    configmaps = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ConfigMap"}
    if job == "nightly":  # the CronJob's pod creates this RayJob (renamed, config copied) from its ConfigMap
        (holder,) = [c for n, c in configmaps.items() if n.endswith("-rayjob")]
        rayjob = yaml.safe_load(holder["data"]["rayjob.yaml"])
    else:
        (rayjob,) = [
            o
            for o in objs
            if o["kind"] == "RayJob" and o["metadata"]["labels"]["app.kubernetes.io/component"] == job
        ]
    spec = rayjob["spec"]
    cluster = spec["rayClusterSpec"]
    head_pod = cluster["headGroupSpec"]["template"]["spec"]
    volumes = {v["name"]: v for v in head_pod.get("volumes", [])}
    mounts: dict[str, dict[str, str]] = {}
    for m in head_pod["containers"][0].get("volumeMounts", []):
        vol = volumes[m["name"]]
        if "configMap" in vol:
            data = dict(configmaps[vol["configMap"]["name"]]["data"])
            if "config.yaml" in data and config_over:
                data["config.yaml"] = yaml.safe_dump(
                    deep_merge(yaml.safe_load(data["config.yaml"]), config_over), sort_keys=False
                )
            mounts[m["mountPath"]] = data
    head = group_of("head", cluster["headGroupSpec"], secrets_, head=True)
    groups = [group_of(g["groupName"], g, secrets_) for g in cluster.get("workerGroupSpecs", [])]
    working_dir = values.get("workingDir") or chart_default("workingDir")
    return RenderedJob(job, rayjob["metadata"]["name"], spec, head, groups, mounts, working_dir)


def chart_default(key: str) -> Any:
    return yaml.safe_load((chart.CHART_DIR / "values.yaml").read_text(encoding="utf-8"))[key]


def group_of(
    name: str, spec: dict[str, Any], secrets_: dict[str, dict[str, str]], head: bool = False
) -> Group:
    """What KubeRay passes to a group's `ray start`: `resources` first, then the container's limits."""
    container = spec["template"]["spec"]["containers"][0]
    limits = (container.get("resources") or {}).get("limits") or {}
    declared = {k: quantity(v) for k, v in (spec.get("resources") or {}).items()}
    params = spec.get("rayStartParams") or {}
    cpus = declared.pop("CPU", quantity(params.get("num-cpus", limits.get("cpu", 0))))
    gpus = declared.pop("GPU", quantity(params.get("num-gpus", limits.get("nvidia.com/gpu", 0))))
    memory = int(quantity(limits["memory"])) if "memory" in limits else None
    pods = 1 if head else max(int(spec.get("replicas") or 0), int(spec.get("minReplicas") or 0), 1)
    env = pod_env(container, secrets_)
    init = [
        [*c.get("command", []), *c.get("args", [])]
        for c in spec["template"]["spec"].get("initContainers", [])
    ]
    return Group(name, pods, math.ceil(cpus), math.ceil(gpus), declared, memory, env, pod_disks(spec), init)


def pod_disks(spec: dict[str, Any]) -> list[str]:
    """Mount paths of the pod's own writable volumes (scratch disks), not ConfigMaps or /dev/shm."""
    pod = spec["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    out = []
    for m in pod["containers"][0].get("volumeMounts", []):
        vol = volumes.get(m["name"], {})
        if "configMap" in vol or "secret" in vol or m["mountPath"] == "/dev/shm":
            continue
        out.append(m["mountPath"])
    return out


def pod_env(container: dict[str, Any], secrets_: dict[str, dict[str, str]]) -> dict[str, str]:
    """The container's env as the kubelet resolves it against `secrets_` ({secret: {key: value}})."""
    env = {}
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = str(e["value"])
            continue
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref is None:
            raise ValueError(f"env {e['name']}: only value and secretKeyRef are rehearsed, got {e}")
        value = secrets_.get(ref["name"], {}).get(ref["key"])
        if value is not None:
            env[e["name"]] = value
        elif not ref.get("optional"):
            raise ValueError(
                f"env {e['name']}: Secret {ref['name']} has no key {ref['key']} (the pod would not start)"
            )
    return env


# ------------------------------------------------------------------------------------ the cluster and KubeRay


@dataclass
class Outcome:
    """How a submission ended: Ray's status, the driver's output, and runlog's record in the store."""

    submission_id: str
    status: str
    message: str
    logs: str
    record: dict[str, Any] | None
    seconds: float
    driver_log: str | None = None


@dataclass
class Rehearsal:
    """One RayJob's cluster on this machine; `submit()` plays KubeRay's submitter."""

    job: RenderedJob
    root: Path
    cluster: LocalRayCluster = field(init=False)

    def start(self, skip: tuple[str, ...] = ()) -> Rehearsal:
        """The head and every group's pods except the groups named in `skip` (a pool that never comes)."""
        self.cluster = LocalRayCluster(inherit=False)
        h = self.job.head
        env = self.pod_env(h, "head")
        self.cluster.start_head(num_cpus=h.num_cpus, num_gpus=h.num_gpus, resources=h.resources, env=env)
        n = 1
        for g in self.job.groups:
            if g.name not in skip:
                for i in range(g.pods):
                    self.add_pod(g.name, i)
                    n += 1
        self.cluster.wait_for_nodes(n)
        return self

    def add_pod(self, group: str, i: int = 0) -> Node:
        """One more pod of `group` (a replacement after a loss, as the RayCluster's minReplicas makes)."""
        g = self.job.group(group)
        name = f"{g.name}-{i}-{secrets.token_hex(2)}"
        return self.cluster.add_node(
            name, g.name, num_cpus=g.num_cpus, num_gpus=g.num_gpus, resources=g.resources,
            env=self.pod_env(g, name), memory=g.memory,
        )  # fmt: skip

    def pod_env(self, g: Group, pod: str) -> dict[str, str]:
        """Play the kubelet for one pod: its own disks are fresh folders here, env values that point into them
        (STAR1_CACHE=/scratch/…) point into those folders, and its init containers run (their paths mapped
        the same way) before it starts. Returns the pod's env."""
        # under the cluster's short temp dir: vLLM and Ray put Unix sockets in TMPDIR (a 107-byte path limit)
        disks = {
            mount: Path(self.cluster.temp_dir) / "pods" / pod / f"d{i}" for i, mount in enumerate(g.disks)
        }
        for d in disks.values():
            d.mkdir(parents=True, exist_ok=True)

        def local(value: str) -> str:
            for mount, d in disks.items():
                if value == mount or value.startswith(mount + "/"):
                    return str(d) + value[len(mount) :]
            return value

        for argv in g.init:
            args = [local(a) for a in argv]
            stray = [
                a for a in args if a.startswith("/") and not any(a.startswith(str(d)) for d in disks.values())
            ]
            if stray:  # never let a pod's init container write into this machine's real /
                raise ValueError(f"init container of {g.name} touches paths outside its volumes: {stray}")
            subprocess.run(args, check=True, timeout=60)
        return {k: local(v) for k, v in g.env.items()}

    def stop(self) -> None:
        self.cluster.stop()

    def entrypoint(self, job: RenderedJob, sid: str) -> str:
        """The rendered entrypoint, the image's paths mapped onto this machine's stand-ins: this checkout for
        the working folder, and for each ConfigMap volume a folder of its files (one per submission, as each
        RayJob mounts its own)."""
        text = job.entrypoint
        paths = {job.working_dir: str(REPO)}
        for i, (mount, files) in enumerate(job.mounts.items()):
            d = self.root / sid / f"volume-{i}"
            d.mkdir(parents=True)
            for name, body in files.items():
                (d / name).write_text(body, encoding="utf-8")
            paths[mount] = str(d)
        for old in sorted(paths, key=len, reverse=True):  # whole path prefixes only
            text = re.sub(rf"(?<![\w/.-]){re.escape(old)}(?=$|[/\s'\"])", paths[old], text)
        return text

    def client(self):
        from ray.job_submission import JobSubmissionClient

        headers = {"Authorization": f"Bearer {self.cluster.token}"} if self.cluster.token else None
        return JobSubmissionClient(self.cluster.url, headers=headers)

    def submit(self, job: RenderedJob | None = None) -> str:
        """`ray job submit --submission-id <rayjob>-<id> -- <entrypoint>` as KubeRay's submitter runs it."""
        job = job or self.job
        spec = job.spec
        sid = f"{job.name}-{secrets.token_hex(4)}"
        runtime_env = yaml.safe_load(spec["runtimeEnvYAML"]) if spec.get("runtimeEnvYAML") else None
        self.client().submit_job(
            entrypoint=self.entrypoint(job, sid),
            submission_id=sid,
            runtime_env=runtime_env,
            metadata=spec.get("metadata"),
            entrypoint_num_cpus=spec.get("entrypointNumCpus"),
            entrypoint_num_gpus=spec.get("entrypointNumGpus"),
            entrypoint_resources=spec.get("entrypointResources"),
        )
        return sid

    def wait(self, sid: str, timeout: float = 900, job: RenderedJob | None = None) -> Outcome:
        job = job or self.job
        client, started = self.client(), time.monotonic()
        while True:
            info = client.get_job_info(sid)
            if str(info.status) in TERMINAL:
                break
            if time.monotonic() - started > timeout:
                client.stop_job(sid)
                raise TimeoutError(
                    f"{sid} still {info.status} after {timeout:.0f} s:\n{client.get_job_logs(sid)}"
                )
            time.sleep(1)
        record, log = self.record(sid, job)
        return Outcome(
            sid, str(info.status), info.message or "", client.get_job_logs(sid), record,
            time.monotonic() - started, log,
        )  # fmt: skip

    def run(self, job: RenderedJob | None = None, timeout: float = 900) -> Outcome:
        return self.wait(self.submit(job), timeout, job)

    def record(self, sid: str, job: RenderedJob) -> tuple[dict[str, Any] | None, str | None]:
        """runlog's run.json and driver.log of this submission (`<--to>/<time>-<submission id>/`)."""
        to = re.search(r"--to\s+(\S+)", job.entrypoint)
        if not to:
            return None, None
        runs = Store.from_uri(to.group(1))
        folders = {p.split("/", 1)[0] for p in runs.list("", suffix="run.json")}
        mine = [f for f in folders if f.endswith(sid)]
        if not mine:
            return None, None
        run = runs.child(mine[0])
        log = run.read_bytes("driver.log").decode() if run.exists("driver.log") else None
        return run.read_json("run.json"), log

    def actors(self) -> list[dict[str, Any]]:
        """Every actor the cluster has had (dead ones too), with the node it ran on."""
        return self.cluster.actors()

    def node_id(self, node: Node) -> str | None:
        """The Ray node id of one of our `ray start` nodes (the dashboard's node summary has its port)."""
        return self.cluster.node_ids().get(node.ports["nm"])

    def node_ids(self, group: str) -> set[str]:
        """Ray node ids of the group's pods."""
        return {i for n in self.cluster.nodes if n.group == group and (i := self.node_id(n))}
