"""`star1 submit k8s`: --dry-run prints the exact objects (valid against the strict KubeRay schema, no secret
from the environment in them); against a local HTTP server speaking the Kubernetes API for RayJobs,
NetworkPolicies and ConfigMaps it creates the RayJob, then the eval's sandbox NetworkPolicy and the ConfigMap
(owned by the RayJob; when the policy cannot be made, no ConfigMap, so no pod, and the RayJob is deleted
again), follows the status to the end and exits 0 / 1; a job without its config is refused naming the value;
the nightly creator (--manifest) makes tonight's RayJob owned by the CronJob's Job, with its own copy of the
run config, and adopts the RayJob its earlier attempt made instead of making another."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from star1.cli import app
from star1.deploy import chart
from tests.k8s_validation import HAVE_SCHEMAS, render_all, validate

TOKEN = "fake-cluster-token"
PLANTED = {
    "OPENAI_API_KEY": "sk-planted0123456789abcdefXYZ",
    "AWS_SECRET_ACCESS_KEY": "planted/aws+secret0123",
}


class FakeKube(ThreadingHTTPServer):
    """Enough of the Kubernetes API for RayJobs, ConfigMaps and NetworkPolicies. `statuses[name]` is the
    sequence of `status` a RayJob shows on successive reads (the last one stays); `delete_after` reads remove
    it; creating a kind in `forbidden` is refused (403, as RBAC would)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.statuses: dict[str, list[dict]] = {}
        self.delete_after: dict[str, int] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.forbidden: set[str] = set()  # kinds it may not create
        self.undeletable: set[str] = set()  # kinds it may not delete

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: FakeKube

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                          "message": message, "code": code})  # fmt: skip

    def _route(self) -> tuple[str, str, str | None] | None:
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[:3] == ["apis", "ray.io", "v1"] and parts[3] == "namespaces" and parts[5] == "rayjobs":
            return "rayjobs", parts[4], parts[6] if len(parts) > 6 else None
        if parts[:2] == ["api", "v1"] and parts[2] == "namespaces" and parts[4] == "configmaps":
            return "configmaps", parts[3], parts[5] if len(parts) > 5 else None
        if parts[:4] == ["apis", "networking.k8s.io", "v1", "namespaces"] and parts[5] == "networkpolicies":
            return "networkpolicies", parts[4], parts[6] if len(parts) > 6 else None
        return None

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._status(401, "Unauthorized", "Unauthorized")
            return False
        return True

    def do_POST(self):
        if not self._authorized():
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(("POST", self.path, body))
        kind, ns, _ = self._route() or (None, None, None)
        if kind is None:
            return self._status(404, "NotFound", self.path)
        if kind in self.server.forbidden:
            return self._status(403, "Forbidden", f"cannot create resource {kind!r} in namespace {ns!r}")
        key = (kind, ns, body["metadata"]["name"])
        if key in self.server.objects:
            return self._status(409, "AlreadyExists", f'{kind} "{key[2]}" already exists')
        body["metadata"].update(uid=str(uuid.uuid4()), resourceVersion="1", namespace=ns)
        self.server.objects[key] = body
        self._send(201, body)

    def do_DELETE(self):
        if not self._authorized():
            return
        self.server.requests.append(("DELETE", self.path, None))
        kind, ns, name = self._route() or (None, None, None)
        if kind in self.server.undeletable:
            return self._status(403, "Forbidden", f"cannot delete resource {kind!r} in namespace {ns!r}")
        if self.server.objects.pop((kind, ns, name), None) is None:
            return self._status(404, "NotFound", f'{kind} "{name}" not found')
        self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    def do_GET(self):
        if not self._authorized():
            return
        self.server.requests.append(("GET", self.path, None))
        kind, ns, name = self._route() or (None, None, None)
        obj = self.server.objects.get((kind, ns, name))
        if obj is None:
            return self._status(404, "NotFound", f'{kind} "{name}" not found')
        if name in self.server.delete_after:
            self.server.delete_after[name] -= 1
            if self.server.delete_after[name] < 0:
                del self.server.objects[(kind, ns, name)]
                return self._status(404, "NotFound", f'{kind} "{name}" not found')
        seq = self.server.statuses.get(name, [])
        if seq:
            obj["status"] = seq.pop(0) if len(seq) > 1 else seq[0]
        self._send(200, obj)


@pytest.fixture
def kube(tmp_path):
    server = FakeKube()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server.url}}],
        "users": [{"name": "me", "user": {"token": TOKEN}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}],
        "current-context": "fake",
    }
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    yield server
    server.shutdown()
    server.server_close()


def valid(obj: dict) -> bool:
    """Valid against the strict schemas; without ../shared the rest of each test still runs."""
    return not HAVE_SCHEMAS or validate(obj) == []


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def star1(tmp_path, monkeypatch):
    """`star1 submit k8s …` in this process, with the fake cluster's kubeconfig and planted secrets in env."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    for k, v in PLANTED.items():
        monkeypatch.setenv(k, v)
    runner = CliRunner()

    def run(*args: str) -> Result:
        r = runner.invoke(app, ["submit", "k8s", *args])
        if r.exception and not isinstance(r.exception, SystemExit):
            raise r.exception
        return Result(r.exit_code, r.stdout, r.stderr)

    return run


def run_config(tmp_path, store: str = "s3://bucket/runs/r1") -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(
        f"run_name: r1\nstore: {{uri: {store}}}\n"
        "collect:\n  sources: [star1]\n  eval_sets: [XSTest]\n"
        "llm:\n  judge: {base_url: 'https://api.example/v1', model: m, api_key_env: OPENAI_API_KEY}\n"
    )
    return path


def test_dry_run_prints_the_exact_valid_objects_without_secrets(tmp_path, star1):
    config = run_config(tmp_path)
    r = star1(
        "curate", "--dry-run", "--name", "nightly-check", "--config", str(config),
        "--set", "curate.select_n=50", "--helm-set", "jobs.curate.workers.cpu.maxReplicas=8",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    docs = list(yaml.safe_load_all(r.stdout))
    assert [d["kind"] for d in docs] == ["ConfigMap", "RayJob"]
    cm, rj = docs
    assert rj["metadata"]["name"] == "nightly-check-curate"
    for d in docs:
        assert valid(d), validate(d)
    cfg = yaml.safe_load(cm["data"]["config.yaml"])
    assert cfg["store"]["uri"] == "s3://bucket/runs/r1" and cfg["curate"]["select_n"] == 50
    assert rj["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["maxReplicas"] == 8
    for value in PLANTED.values():  # secrets in the submitter's environment stay there
        assert value not in r.stdout + r.stderr


def example(job: str) -> list[str]:
    """-f helm/examples/<job>.yaml (sft and eval need a config; curate's default one is complete)."""
    path = chart.examples().get(job)
    return ["-f", str(path)] if path else []


def test_dry_run_of_each_job_validates(tmp_path, star1):
    for job in chart.JOBS:
        r = star1(job, "--dry-run", "--name", "t", *example(job))
        assert r.returncode == 0, r.stderr
        (rj,) = [d for d in yaml.safe_load_all(r.stdout) if d["kind"] == "RayJob"]
        assert rj["metadata"]["name"] == f"t-{job}" and valid(rj)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "collect.tfidf_treshold=0.5"], "tfidf_treshold"),
        (["--helm-set", "jobs.curate.workers.cpu.maxReplica=3"], "maxReplica"),
    ],
)
def test_bad_config_or_values_exit_2_before_anything(tmp_path, extra, message, star1):
    r = star1("curate", "--dry-run", "--config", str(run_config(tmp_path)), *extra)
    assert r.returncode == 2 and message in r.stderr, r.stderr


@pytest.mark.parametrize(
    ("job", "named"), [("sft", "jobs.sft.config.train is required"), ("eval", "jobs.eval.config.eval.model")]
)
def test_a_job_without_its_config_is_refused_naming_the_value(tmp_path, star1, job, named):
    r = star1(job, "--dry-run", "--name", "t")
    assert r.returncode == 2 and named in " ".join(r.stderr.split()), r.stderr
    assert f"star1 submit k8s {job} --config" in " ".join(r.stderr.split())


def test_a_local_store_is_refused_for_kubernetes(tmp_path, star1):
    r = star1("curate", "--dry-run", "--config", str(run_config(tmp_path, "./artifacts")))
    assert r.returncode == 2 and "not s3://" in r.stderr, r.stderr


RUNNING = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING", "rayClusterName": "c-1"}


def test_creates_follows_and_succeeds(kube, tmp_path, star1):
    name = "t-sft"
    kube.statuses[name] = [
        {},
        {"jobDeploymentStatus": "Initializing"},
        RUNNING,
        {**RUNNING, "jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"},
    ]
    r = star1("sft", "--name", "t", "--poll", "0.05", *example("sft"))
    assert r.returncode == 0, r.stderr
    assert "Complete/SUCCEEDED" in r.stderr
    assert f"kubectl -n star1 logs -f job/{name}" in r.stderr
    assert f"port-forward svc/{name}-head-svc 8265:8265" in r.stderr
    assert "get secret c-1" in r.stderr and "s3://star1/runs/_runs/sft" in r.stderr
    posts = [(p, b) for m, p, b in kube.requests if m == "POST"]
    assert [p for p, _ in posts] == [
        "/apis/ray.io/v1/namespaces/star1/rayjobs",
        "/api/v1/namespaces/star1/configmaps",
    ]
    rayjob, cm = posts[0][1], posts[1][1]
    assert valid(rayjob)
    owner = cm["metadata"]["ownerReferences"][0]
    created = kube.objects[("rayjobs", "star1", name)]
    uid = created["metadata"]["uid"]
    assert owner == {"apiVersion": "ray.io/v1", "kind": "RayJob", "name": name, "uid": uid}
    # what was created is what --dry-run prints
    dry = [d for d in yaml.safe_load_all(star1("sft", "--name", "t", "--dry-run", *example("sft")).stdout)]
    assert dry[1]["spec"] == rayjob["spec"]


def test_a_queued_job_says_it_waits_for_kueue_then_follows_it(kube, tmp_path, star1):
    kube.statuses["t-sft"] = [
        {"jobDeploymentStatus": "Suspended"},
        RUNNING,
        {**RUNNING, "jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"},
    ]
    kueue = tmp_path / "kueue.yaml"
    kueue.write_text("kueue: {enabled: true, queueName: star1-gpu}\n")
    r = star1("sft", "--name", "t", "--poll", "0.05", *example("sft"), "-f", str(kueue))
    assert r.returncode == 0, r.stderr
    assert "waits in Kueue queue star1-gpu until admitted" in r.stderr
    rayjob = next(b for m, p, b in kube.requests if m == "POST" and p.endswith("/rayjobs"))
    assert rayjob["spec"]["suspend"] is True
    assert rayjob["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "star1-gpu"


def test_a_failed_job_exits_1_with_the_reason(kube, tmp_path, star1):
    kube.statuses["t-eval"] = [
        RUNNING,
        {**RUNNING, "jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "DeadlineExceeded",
         "message": "activeDeadlineSeconds reached"},
    ]  # fmt: skip
    r = star1("eval", "--name", "t", "--poll", "0.05", *example("eval"))
    assert r.returncode == 1, r.stderr
    assert "Failed/FAILED" in r.stderr and "activeDeadlineSeconds reached" in r.stderr


def test_eval_dry_run_carries_the_sandbox_policy_first(tmp_path, star1):
    r = star1("eval", "--dry-run", "--name", "t", *example("eval"))
    assert r.returncode == 0, r.stderr
    docs = list(yaml.safe_load_all(r.stdout))
    assert [d["kind"] for d in docs] == ["NetworkPolicy", "ConfigMap", "RayJob"]
    policy, cm, rj = docs
    assert policy["metadata"]["name"] == "t-eval-sandbox"
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "t"
    assert all(valid(d) for d in docs), [validate(d) for d in docs]
    assert yaml.safe_load(cm["data"]["config.yaml"])["eval"]["sandbox"]["ray_resource"] == "star1_sandbox"
    groups = {g["groupName"] for g in rj["spec"]["rayClusterSpec"]["workerGroupSpecs"]}
    assert groups == {"gpu", "sandbox"}
    off = star1(
        "eval", "--dry-run", "--name", "t", "--helm-set", "jobs.eval.sandbox.enabled=false", *example("eval")
    )
    assert [d["kind"] for d in yaml.safe_load_all(off.stdout)] == ["ConfigMap", "RayJob"]


def test_eval_creates_the_sandbox_policy_before_the_configmap(kube, tmp_path, star1):
    kube.statuses["t-eval"] = [{**RUNNING, "jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}]
    r = star1("eval", "--name", "t", "--poll", "0.05", *example("eval"))
    assert r.returncode == 0, r.stderr
    posts = [(p, b) for m, p, b in kube.requests if m == "POST"]
    assert [p for p, _ in posts] == [
        "/apis/ray.io/v1/namespaces/star1/rayjobs",
        "/apis/networking.k8s.io/v1/namespaces/star1/networkpolicies",
        "/api/v1/namespaces/star1/configmaps",
    ]
    uid = kube.objects[("rayjobs", "star1", "t-eval")]["metadata"]["uid"]
    owner = {"apiVersion": "ray.io/v1", "kind": "RayJob", "name": "t-eval", "uid": uid}
    policy = kube.objects[("networkpolicies", "star1", "t-eval-sandbox")]
    assert policy["metadata"]["ownerReferences"] == [owner]
    assert kube.objects[("configmaps", "star1", "t-eval-config")]["metadata"]["ownerReferences"] == [owner]


def test_no_configmap_and_so_no_pod_when_the_policy_cannot_be_made(kube, tmp_path, star1):
    kube.forbidden.add("networkpolicies")
    r = star1("eval", "--name", "t", "--poll", "0.05", *example("eval"))
    assert r.returncode == 1, r.stderr
    err = " ".join(r.stderr.split())  # the console wraps long lines
    assert "not its networkpolicy/t-eval-sandbox (cannot create resource 'networkpolicies'" in err, err
    assert "the RayJob was deleted again" in err, err
    assert not kube.objects  # every Ray pod mounts the ConfigMap: nothing was left waiting for it
    # without the right to delete it, the RayJob stays and the message says how to delete it
    kube.undeletable.add("rayjobs")
    r = star1("eval", "--name", "t", "--poll", "0.05", *example("eval"))
    err = " ".join(r.stderr.split())
    assert r.returncode == 1 and "kubectl -n star1 delete rayjob t-eval" in err, err
    assert [k[0] for k in kube.objects] == ["rayjobs"]


def test_a_job_deleted_while_running_is_a_failure(kube, tmp_path, star1):
    kube.statuses["t-sft"] = [RUNNING]
    kube.delete_after["t-sft"] = 2
    r = star1("sft", "--name", "t", "--poll", "0.05", *example("sft"))
    assert r.returncode == 1 and "was deleted before it finished" in r.stderr, r.stderr


def test_wrong_credentials_fail_clearly(kube, tmp_path, star1):
    cfg = yaml.safe_load((tmp_path / "kubeconfig").read_text())
    cfg["users"][0]["user"]["token"] = "wrong"
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(cfg))
    r = star1("sft", "--name", "t", "--poll", "0.05", *example("sft"))
    assert r.returncode == 1 and "Unauthorized" in r.stderr, r.stderr
    assert not kube.objects


def nightly_files(tmp_path) -> tuple[Path, Path]:
    """What the CronJob's pod mounts: the RayJob template and the run config (chart-rendered)."""
    objs = chart.objects(render_all())
    (tpl,) = [o for o in objs if o["kind"] == "ConfigMap" and "rayjob.yaml" in o["data"]]
    (cfg,) = [o for o in objs if o["metadata"]["name"] == "star1-nightly-config"]
    manifest, config = tmp_path / "rayjob.yaml", tmp_path / "config.yaml"
    manifest.write_text(tpl["data"]["rayjob.yaml"])
    config.write_text(cfg["data"]["config.yaml"])
    return manifest, config


JOB_UID = "3f2c9a1e-0b7d-4c55-9e61-2a8f0d4b6c17"


def test_nightly_creator_owns_tonights_rayjob_and_its_config_and_adopts_it_on_retry(kube, tmp_path, star1):
    manifest, config = nightly_files(tmp_path)
    name = "star1-nightly-29871234"  # the CronJob's Job name for one night
    done = {**RUNNING, "jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}
    kube.statuses[name] = [RUNNING, done]
    args = ["--manifest", str(manifest), "--config", str(config), "--name", name,
            "--owner-job", f"{name}:{JOB_UID}", "--namespace", "star1", "--poll", "0.05"]  # fmt: skip
    first = star1(*args)
    assert first.returncode == 0, first.stderr
    created = kube.objects[("rayjobs", "star1", name)]
    assert valid(created) and "jobs/nightly.py" in created["spec"]["entrypoint"]
    # garbage-collected with the CronJob's Job (whose history the CronJob prunes)
    job = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": JOB_UID}
    assert created["metadata"]["ownerReferences"] == [job]
    assert created["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "star1-nightly"
    # the run config: a copy the RayJob owns, which every pod mounts (helm uninstall cannot take it away)
    cm = kube.objects[("configmaps", "star1", f"{name}-config")]
    assert cm["data"]["config.yaml"] == config.read_text()
    owner = {"apiVersion": "ray.io/v1", "kind": "RayJob", "name": name, "uid": created["metadata"]["uid"]}
    assert cm["metadata"]["ownerReferences"] == [owner]
    assert cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "star1-nightly"
    cluster = created["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    for t in pods:
        (vol,) = [v for v in t["spec"]["volumes"] if v["name"] == "config"]
        assert vol["configMap"]["name"] == f"{name}-config"
    kube.statuses[name] = [done]
    again = star1(*args)  # the Job's pod was retried: same name, no second RayJob
    assert again.returncode == 0 and "already exists" in again.stderr, again.stderr
    assert [k for k in kube.objects if k[0] == "rayjobs"] == [("rayjobs", "star1", name)]
    assert [k for k in kube.objects if k[0] == "configmaps"] == [("configmaps", "star1", f"{name}-config")]


@pytest.mark.parametrize("owner", ["star1-nightly-1:", ":abc", "Bad_Name:0b7d"])
def test_the_creator_refuses_an_owner_it_cannot_name(tmp_path, star1, owner):
    manifest, config = nightly_files(tmp_path)
    r = star1("--manifest", str(manifest), "--config", str(config), "--owner-job", owner, "--dry-run")
    assert r.returncode == 2 and "expected JOB_NAME:JOB_UID" in r.stderr, r.stderr


def test_manifest_names_are_checked(tmp_path, star1):
    manifest = tmp_path / "rayjob.yaml"
    manifest.write_text("apiVersion: ray.io/v1\nkind: RayJob\nmetadata: {name: x}\nspec: {}\n")
    r = star1("--manifest", str(manifest), "--name", "Not_A_DNS_Name", "--dry-run")
    assert r.returncode == 2 and "DNS-1035" in r.stderr, r.stderr
