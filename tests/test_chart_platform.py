"""The chart as a platform team adopts it (issue 20): open pod values per layer (set → in the right
place, unset → absent), each job's pods holding only the secrets its config names, the autoscaler's token
only in its sidecar, read-only root filesystems with writable paths, Ray's object store sized from memory and
/dev/shm, GPU product selectors, Kueue mode, NetworkPolicies, the admission policy's CEL run against real and
tampered RayJobs, and `helm test`'s pod run against an S3 server."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from star1.config import parse_config
from star1.deploy import chart
from star1.deploy.chart import ChartError
from star1.deploy.rayjob import deep_merge
from tests.k8s_validation import embedded, pod_templates, render_all, restricted_problems, validate

EXAMPLES = chart.EXAMPLES_DIR / "platform"
SA_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"

FULL = {
    "serviceAccount": {
        "create": True,
        "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/star1"},
    },
    "pods": {
        "labels": {"team": "safety", "app.kubernetes.io/name": "not-star1"},
        "annotations": {"cost-center": "ml"},
        "priorityClassName": "batch-low",
        "env": [{"name": "NCCL_DEBUG", "value": "WARN"}],
        "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
    },
    "head": {
        "nodeSelector": {"pool": "on-demand"},
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}],
        }}},
    },
    "rayJob": {"labels": {"org": "ml"}, "annotations": {"owner": "safety@example.com"}},
    "jobs": {
        "sft": {
            "pods": {"runtimeClassName": "nvidia", "envFrom": [{"configMapRef": {"name": "nccl-env"}}]},
            "rayJob": {"labels": {"kind": "train"}},
            "workers": {"gpu": {
                "extendedResources": {"vpc.amazonaws.com/efa": 4},
                "rayStartParams": {"metrics-export-port": "8080"},
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "datasets"}}],
                "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
                "objectStoreMemory": "16Gi",
                "serviceAccountName": "star1-gpu",
            }},
        },
        "eval": {
            "head": {"cpu": "4", "memory": "16Gi", "priorityClassName": "batch-high"},
            "sandbox": {"labels": {"sandboxed": "yes"}, "priorityClassName": "sandbox-prio"},
        },
    },
}  # fmt: skip


def rayjobs(objs: list[dict]) -> dict[str, dict]:
    """{component: RayJob} including the nightly's (inside its ConfigMap)."""
    out = {o["metadata"]["labels"]["app.kubernetes.io/component"]: o for o in objs if o["kind"] == "RayJob"}
    out.update({o["metadata"]["labels"]["app.kubernetes.io/component"]: o for o in embedded(objs)})
    return out


def groups(rj: dict) -> dict[str, dict]:
    return {g["groupName"]: g for g in rj["spec"]["rayClusterSpec"]["workerGroupSpecs"]}


def head(rj: dict) -> dict:
    return rj["spec"]["rayClusterSpec"]["headGroupSpec"]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.fixture(scope="module")
def full():
    return chart.objects(render_all(FULL))


@pytest.fixture(scope="module")
def plain():
    return chart.objects(render_all())


# ------------------------------------------------------------------------------------ open values


def test_every_open_value_lands_where_it_belongs(full):
    jobs = rayjobs(full)
    sft, ev = jobs["sft"], jobs["eval"]
    # RayJob metadata: rayJob + jobs.<job>.rayJob, the chart's labels winning
    assert sft["metadata"]["labels"]["org"] == "ml" and sft["metadata"]["labels"]["kind"] == "train"
    assert "kind" not in ev["metadata"]["labels"]
    assert sft["metadata"]["annotations"] == {"owner": "safety@example.com"}
    assert sft["metadata"]["labels"]["app.kubernetes.io/name"] == "star1"
    # the head: pods, then head
    h = head(sft)["template"]
    assert h["metadata"]["labels"]["team"] == "safety"
    assert h["metadata"]["labels"]["app.kubernetes.io/name"] == "star1"  # the chart's labels win
    assert h["metadata"]["annotations"] == {"cost-center": "ml"}
    assert h["spec"]["nodeSelector"] == {"pool": "on-demand"}
    assert h["spec"]["affinity"] == FULL["head"]["affinity"]
    assert h["spec"]["priorityClassName"] == "batch-low"
    assert h["spec"]["tolerations"] == FULL["pods"]["tolerations"]
    assert h["spec"]["serviceAccountName"] == "star1-star1"  # serviceAccount.create, named after the release
    assert env_of(h["spec"]["containers"][0])["NCCL_DEBUG"]["value"] == "WARN"
    assert h["spec"]["runtimeClassName"] == "nvidia"  # jobs.sft.pods
    # sft's GPU workers: pods → jobs.sft.pods → the group
    w = groups(sft)["gpu"]
    ws = w["template"]["spec"]
    (c,) = ws["containers"]
    assert ws["runtimeClassName"] == "nvidia" and ws["priorityClassName"] == "batch-low"
    assert ws["serviceAccountName"] == "star1-gpu"
    assert c["envFrom"] == [{"configMapRef": {"name": "nccl-env"}}]
    assert c["resources"]["requests"]["vpc.amazonaws.com/efa"] == "4"
    assert c["resources"]["limits"]["vpc.amazonaws.com/efa"] == "4"
    assert w["rayStartParams"] == {"metrics-export-port": "8080", "object-store-memory": str(16 * 2**30)}
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "datasets"}} in ws["volumes"]
    assert {"name": "data", "mountPath": "/data", "readOnly": True} in c["volumeMounts"]
    assert ws["tolerations"][0] == FULL["pods"]["tolerations"][0]  # pods' first, then the group's own
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in ws["tolerations"]
    # the eval head: jobs.eval.head over head
    eh = head(ev)["template"]["spec"]
    assert eh["containers"][0]["resources"]["limits"]["cpu"] == "4"
    assert eh["containers"][0]["resources"]["limits"]["memory"] == "16Gi"
    assert eh["priorityClassName"] == "batch-high"
    assert "runtimeClassName" not in eh and "envFrom" not in eh["containers"][0]
    # the sandbox takes labels / annotations / priority only: no env, identity, volumes or runtime from pods
    sb = groups(ev)["sandbox"]["template"]
    assert sb["metadata"]["labels"]["sandboxed"] == "yes" and sb["metadata"]["labels"]["team"] == "safety"
    assert sb["spec"]["priorityClassName"] == "sandbox-prio"
    assert "serviceAccountName" not in sb["spec"] and sb["spec"]["automountServiceAccountToken"] is False
    assert "NCCL_DEBUG" not in env_of(sb["spec"]["containers"][0])
    # the service account, with its annotations
    (sa,) = [o for o in full if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "star1-star1"]
    assert sa["metadata"]["annotations"] == FULL["serviceAccount"]["annotations"]
    assert sa["automountServiceAccountToken"] is False


def test_unset_open_values_leave_no_trace(plain):
    chart_labels = {"app.kubernetes.io/" + k for k in ("name", "instance", "version", "component", "part-of")}
    chart_labels |= {"app.kubernetes.io/managed-by", "helm.sh/chart", "star1.io/sandbox"}
    for comp, rj in rayjobs(plain).items():
        assert "annotations" not in rj["metadata"], comp
        for where, t in pod_templates(rj):
            assert set(t["metadata"]["labels"]) <= chart_labels, where
            assert "annotations" not in t["metadata"], where
            spec = t["spec"]
            for key in ("priorityClassName", "affinity", "serviceAccountName"):
                assert key not in spec, (where, key)
            if "sandbox" not in where:
                assert "runtimeClassName" not in spec, where
            for c in spec["containers"]:
                assert "envFrom" not in c, where
                assert not [k for k in c["resources"]["limits"] if "/" in k and k != "nvidia.com/gpu"], where
    assert not [o for o in plain if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "star1-star1"]
    assert not [o for o in plain if o["kind"].startswith("ValidatingAdmission")]
    assert [o["metadata"]["name"] for o in plain if o["kind"] == "NetworkPolicy"] == [
        "star1-eval-sandbox", "star1-nightly-sandbox"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "extra",
    [
        FULL,
        {"networkPolicy": {"enabled": True, "restrictEgress": True}, "admissionPolicy": {"enabled": True}},
        "kueue.yaml",
        "identity-placement.yaml",
    ],
    ids=["full", "policies", "kueue", "identity-placement"],
)
def test_renders_validate_and_stay_restricted(extra):
    values = yaml.safe_load((EXAMPLES / extra).read_text()) if isinstance(extra, str) else extra
    assert chart.lint(deep_merge(chart.example_values(), values))["errors"] == []
    objs = chart.objects(render_all(values))
    problems = [p for o in objs + embedded(objs) for p in validate(o)]
    problems += [
        p for o in objs + embedded(objs) for w, t in pod_templates(o) for p in restricted_problems(w, t)
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"pods": {"labelz": {"a": "b"}}}, "labelz"),
        ({"head": {"afinity": {}}}, "afinity"),
        ({"jobs": {"sft": {"workers": {"gpu": {"nodeSelectr": {"a": "b"}}}}}}, "nodeSelectr"),
        ({"jobs": {"eval": {"pods": {"priorityClass": "x"}}}}, "priorityClass"),
        ({"serviceAccount": {"annotation": {}}}, "annotation"),
        ({"pods": {"env": [{"name": "X", "valu": "y"}]}}, "valu"),
        ({"pods": {"extendedResources": {"efa": 1}}}, "efa"),
        ({"jobs": {"eval": {"sandbox": {"env": []}}}}, "env"),
        ({"kueue": {"enabled": True, "queue": "q"}}, "queue"),
    ],
)
def test_misspelled_open_values_fail(values, named):
    with pytest.raises(ChartError, match=named):
        render_all(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"pods": {"rayStartParams": {"num-cpus": "4"}}}, "rayStartParams.num-cpus is the chart's"),
        ({"pods": {"env": [{"name": "MY_SERVICE_TOKEN", "value": "x"}]}}, "looks like a secret"),
        ({"pods": {"env": [{"name": "EXTRA", "value": "sk-" + "a" * 40}]}}, "shaped like a secret"),
        ({"head": {"env": [{"name": "HOME", "value": "/root"}]}}, "env HOME is set by the chart"),
        (
            {"jobs": {"sft": {"workers": {"gpu": {"objectStoreMemory": "100Gi"}}}}},
            "more than the 64Gi /dev/shm",
        ),
        ({"jobs": {"curate": {"workers": {"cpu": {"shmSize": "64Mi"}}}}}, "under Ray's 75 MiB minimum"),
        ({"kueue": {"enabled": True}}, "kueue.queueName"),
        (
            {"kueue": {"enabled": True, "queueName": "q"}, "lifecycle": {"cleanup": "rules"}},
            "cleanup: shutdown",
        ),
        ({"kueue": {"enabled": True, "queueName": "q"}, "nightly": {"kind": "RayCronJob"}}, "RayCronJob"),
    ],
)
def test_impossible_open_values_fail_with_a_reason(values, message):
    with pytest.raises(ChartError, match=message):
        render_all(values)


# ------------------------------------------------------------------------------------ least privilege


def env_names(model: Any) -> set[str]:
    """Every env var a parsed run config names: fields called api_key_env anywhere in it (with defaults)."""
    out: set[str] = set()
    if isinstance(model, BaseModel):
        for name in type(model).model_fields:
            value = getattr(model, name)
            if name.endswith("_env") and isinstance(value, str):
                out.add(value)
            out |= env_names(value)
    elif isinstance(model, dict):
        for v in model.values():
            out |= env_names(v)
    elif isinstance(model, list | tuple):
        for v in model:
            out |= env_names(v)
    return out


TRACKING_KEYS = {
    "mlflow": {"MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"},
    "wandb": {"WANDB_API_KEY"},
}
TRACKER_KEYS = set().union(*TRACKING_KEYS.values())


@pytest.mark.parametrize("extra", [None, FULL], ids=["examples", "full"])
def test_no_pod_gets_a_secret_its_jobs_config_does_not_name(extra):
    keys = ["OPENAI_API_KEY", "NVIDIA_API_KEY", "HF_TOKEN", "WANDB_API_KEY", "MLFLOW_TRACKING_TOKEN"]
    values = deep_merge(extra or {}, {"apiKeys": {"keys": keys}})
    objs = chart.objects(render_all(values))
    defaults = yaml.safe_load((chart.CHART_DIR / "values.yaml").read_text())
    merged = deep_merge(deep_merge(defaults, chart.example_values()), values)
    configs = {
        o["metadata"]["labels"]["app.kubernetes.io/component"]: yaml.safe_load(o["data"]["config.yaml"])
        for o in objs
        if o["kind"] == "ConfigMap" and "config.yaml" in o.get("data", {})
    }
    seen = {}
    for comp, rj in rayjobs(objs).items():
        cfg = parse_config(configs[comp], origin=comp)
        tracking = getattr(cfg, "tracking", None)
        backends = tracking.backends if tracking is not None else ["mlflow"]
        job_values = merged["nightly"] if comp == "nightly" else merged["jobs"][comp]
        allowed = env_names(cfg) | set(job_values.get("secretKeys", []))
        allowed = (allowed | {k for b in backends for k in TRACKING_KEYS.get(b, ())}) & set(keys)
        for where, t in pod_templates(rj):
            for c in t["spec"].get("initContainers", []) + t["spec"]["containers"]:
                refs = {
                    e["name"]
                    for e in c.get("env", [])
                    if (e.get("valueFrom") or {}).get("secretKeyRef", {}).get("name") == "star1-api-keys"
                }
                assert refs <= allowed, (where, c["name"], refs - allowed)
                if "sandbox" in where or "submitter" in where or c["name"] == "scratch-dirs":
                    assert "valueFrom" not in str(c.get("env", [])), (where, c["name"])
                elif c["name"] == "ray-head":
                    assert refs == allowed, (where, refs, allowed)
                elif c["name"] == "ray-worker":  # only the driver talks to the tracker
                    assert refs == allowed - TRACKER_KEYS, (where, refs, allowed)
        seen[comp] = allowed
    # the issue's case: SFT pods do not receive the model APIs' keys; curation gets the ones its roles name
    assert seen["sft"] == {"HF_TOKEN", "MLFLOW_TRACKING_TOKEN"}
    assert {"OPENAI_API_KEY", "NVIDIA_API_KEY"} <= seen["curate"] and "WANDB_API_KEY" not in seen["curate"]


def test_a_config_that_names_another_key_gets_exactly_that_one():
    role = {"base_url": "https://api.together.xyz/v1", "model": "m", "api_key_env": "TOGETHER_API_KEY"}
    cfg = {
        "llm": {r: role for r in ("classifier", "generator", "judge", "rewriter")},
        "tracking": {"backend": "wandb"},
    }
    values = {
        "apiKeys": {"keys": ["OPENAI_API_KEY", "TOGETHER_API_KEY", "WANDB_API_KEY", "HF_TOKEN"]},
        "jobs": {"curate": {"config": cfg, "secretKeys": []}},
    }
    objs = chart.objects(chart.render(values))
    container = head(rayjobs(objs)["curate"])["template"]["spec"]["containers"][0]
    refs = {e["name"] for e in container["env"] if "valueFrom" in e and "AWS" not in e["name"]}
    assert refs == {"TOGETHER_API_KEY", "WANDB_API_KEY"}


def test_the_tracking_server_reaches_the_driver_only(plain):
    uri = "http://mlflow.mlflow.svc:5000"
    objs = chart.objects(render_all({"tracking": {"mlflowUri": uri}}))
    for rj in rayjobs(objs).values():
        for where, t in pod_templates(rj):
            env = env_of(t["spec"]["containers"][0])
            if where.endswith(" head"):  # the driver: the one process that talks to the tracker
                assert env["MLFLOW_TRACKING_URI"] == {"name": "MLFLOW_TRACKING_URI", "value": uri}, where
            else:
                assert "MLFLOW_TRACKING_URI" not in env, where
    assert "MLFLOW_TRACKING_URI" not in str(plain)


def test_driver_pods_do_not_mount_the_autoscalers_token(full, plain):
    for objs in (plain, full):
        for comp, rj in rayjobs(objs).items():
            cluster = rj["spec"]["rayClusterSpec"]
            h = cluster["headGroupSpec"]["template"]["spec"]
            assert h["automountServiceAccountToken"] is False, comp
            (ray_head,) = h["containers"]
            assert not [m for m in ray_head["volumeMounts"] if m["mountPath"].startswith("/var/run/secrets")]
            # the sidecar alone mounts a projected token, at the path its Kubernetes client reads
            (mount,) = cluster["autoscalerOptions"]["volumeMounts"]
            assert mount["mountPath"] == SA_PATH and mount["readOnly"] is True
            (vol,) = [v for v in h["volumes"] if v["name"] == mount["name"]]
            sources = vol["projected"]["sources"]
            assert {"serviceAccountToken"} <= {k for s in sources for k in s}
            for where, t in pod_templates(rj):
                if "head" not in where:
                    assert t["spec"]["automountServiceAccountToken"] is False, where
                    assert "autoscaler-token" not in str(t["spec"].get("volumes", [])), where
    # automount true (a workload identity that needs the token in the Ray containers): the pod mounts it, and
    # no second copy is made
    objs = chart.objects(render_all({"serviceAccount": {"automount": True}}))
    cluster = rayjobs(objs)["sft"]["spec"]["rayClusterSpec"]
    assert cluster["headGroupSpec"]["template"]["spec"]["automountServiceAccountToken"] is True
    assert "volumeMounts" not in cluster["autoscalerOptions"]


def test_root_filesystems_are_read_only_and_every_written_path_is_a_volume(full):
    path_vars = {"HOME", "TMPDIR", "XDG_CACHE_HOME", "HF_HOME", "STAR1_CACHE", "VLLM_CACHE_ROOT"}
    path_vars |= {"RAY_TMPDIR", "TORCH_EXTENSIONS_DIR", "TRITON_CACHE_DIR", "DG_JIT_CACHE_DIR"}
    n = 0
    for o in full + embedded(full):
        for where, t in pod_templates(o):
            for c in t["spec"].get("initContainers", []) + t["spec"]["containers"]:
                assert c["securityContext"]["readOnlyRootFilesystem"] is True, (where, c["name"])
                mounts = [m["mountPath"] for m in c.get("volumeMounts", []) if not m.get("readOnly")]
                if c["name"] != "scratch-dirs":
                    assert "/tmp" in mounts, (where, c["name"])
                for name, e in env_of(c).items():
                    if name in path_vars:
                        n += 1
                        assert any(e["value"] == m or e["value"].startswith(m + "/") for m in mounts), (
                            where, c["name"], name, e["value"]
                        )  # fmt: skip
    assert n > 50


def selects(policy: dict, labels: dict[str, str]) -> bool:
    sel = policy["spec"]["podSelector"]
    if any(labels.get(k) != v for k, v in sel.get("matchLabels", {}).items()):
        return False
    for ex in sel.get("matchExpressions", []):
        if ex["operator"] == "DoesNotExist" and ex["key"] in labels:
            return False
    return True


def test_network_policies_fence_each_jobs_pods_and_never_open_the_sandbox():
    egress = [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 443}]}]
    values = {"networkPolicy": {"enabled": True, "restrictEgress": True, "egress": egress}}
    objs = chart.objects(render_all(values))
    policies = {o["metadata"]["name"]: o for o in objs if o["kind"] == "NetworkPolicy"}
    assert set(policies) == {
        "star1-curate-ray", "star1-sft-ray", "star1-eval-ray", "star1-nightly-ray",
        "star1-eval-sandbox", "star1-nightly-sandbox",
    }  # fmt: skip
    for comp, rj in rayjobs(objs).items():
        mine = policies[f"star1-{comp}-ray"]
        assert mine["spec"]["policyTypes"] == ["Ingress", "Egress"]
        peers = [p for rule in mine["spec"]["ingress"] for p in rule["from"]]
        assert {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kuberay-system"}}
        } in peers
        assert values["networkPolicy"]["egress"][0] in mine["spec"]["egress"]
        for where, t in pod_templates(rj):
            labels = t["metadata"]["labels"] | (
                {"ray.io/is-ray-node": "yes"} if "submitter" not in where else {}
            )
            hit = [n for n, p in policies.items() if selects(p, labels)]
            if "sandbox" in where:  # only its own fence applies: no job policy widens its egress
                assert hit == [f"star1-{comp}-sandbox"], (where, hit)
            elif "submitter" not in where:
                assert hit == [f"star1-{comp}-ray"], (where, hit)
    off = chart.objects(render_all({"networkPolicy": {"enabled": True}}))
    assert next(o for o in off if o["metadata"]["name"] == "star1-sft-ray")["spec"]["policyTypes"] == [
        "Ingress"
    ]


# ------------------------------------------------------------------------------------ sizing and placement


def test_object_store_is_sized_from_memory_and_shm(plain):
    jobs = rayjobs(plain)
    gib = 2**30
    assert head(jobs["curate"])["rayStartParams"]["object-store-memory"] == str(gib)  # 2Gi shm × 0.5
    assert groups(jobs["curate"])["cpu"]["rayStartParams"]["object-store-memory"] == str(2 * gib)  # 4Gi shm
    assert groups(jobs["sft"])["gpu"]["rayStartParams"]["object-store-memory"] == str(32 * gib)  # 64Gi shm
    small = chart.objects(render_all({"jobs": {"curate": {"workers": {"cpu": {"memory": "2Gi"}}}}}))
    # 30% of 2Gi is less than half of the 4Gi /dev/shm
    assert groups(rayjobs(small)["curate"])["cpu"]["rayStartParams"]["object-store-memory"] == str(
        int(2 * gib * 0.3)
    )
    given = chart.objects(render_all({"pods": {"rayStartParams": {"object-store-memory": "500000000"}}}))
    assert groups(rayjobs(given)["curate"])["cpu"]["rayStartParams"]["object-store-memory"] == "500000000"


@pytest.mark.parametrize(
    ("group", "selector"),
    [
        ({}, {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}),
        ({"acceleratorType": "L4"}, {"nvidia.com/gpu.product": "NVIDIA-L4"}),
        ({"gpuProduct": "NVIDIA-H100-NVL"}, {"nvidia.com/gpu.product": "NVIDIA-H100-NVL"}),
        ({"gpuProduct": ""}, None),
        ({"acceleratorType": "TPU-V6E"}, None),
        ({"nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}},
         {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}),
        ({"gpus": 0, "acceleratorType": ""}, None),
    ],
)  # fmt: skip
def test_gpu_groups_select_the_gpu_they_advertise(group, selector):
    objs = chart.objects(render_all({"jobs": {"sft": {"workers": {"gpu": group}}}}))
    spec = groups(rayjobs(objs)["sft"])["gpu"]["template"]["spec"]
    assert spec.get("nodeSelector") == selector


def test_the_sft_head_runs_on_the_cpu_image_and_the_eval_head_on_the_gpu_image(plain):
    jobs = rayjobs(plain)
    assert head(jobs["sft"])["template"]["spec"]["containers"][0]["image"].endswith("-cpu")
    assert groups(jobs["sft"])["gpu"]["template"]["spec"]["containers"][0]["image"].endswith(":0.1.0")
    assert head(jobs["eval"])["template"]["spec"]["containers"][0]["image"].endswith(":0.1.0")


# ------------------------------------------------------------------------------------ Kueue


def test_the_kueue_example_queues_every_rayjob_without_the_autoscaler():
    values = yaml.safe_load((EXAMPLES / "kueue.yaml").read_text())
    objs = chart.objects(render_all(values))
    jobs = rayjobs(objs)
    assert set(jobs) == {"curate", "sft", "eval", "nightly"}
    for comp, rj in jobs.items():
        want = "star1-cpu" if comp == "curate" else "star1-gpu"
        assert rj["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == want, comp
        assert rj["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "star1-batch"
        spec = rj["spec"]
        assert spec["suspend"] is True and spec["shutdownAfterJobFinishes"] is True
        cluster = spec["rayClusterSpec"]
        assert cluster["enableInTreeAutoscaling"] is False and "autoscalerOptions" not in cluster
        assert len(cluster["workerGroupSpecs"]) <= 7
        for g in cluster["workerGroupSpecs"]:  # Kueue reserves the whole cluster: every pod from the start
            assert g["replicas"] == g["minReplicas"] == g["maxReplicas"] >= 1, (comp, g["groupName"])
        # no autoscaler, so no token anywhere in the head pod
        assert "autoscaler-token" not in str(cluster["headGroupSpec"]["template"]["spec"]["volumes"])
    assert groups(jobs["eval"])["gpu"]["replicas"] == 1  # dp 8 × tp 1 on 8-GPU pods


# ------------------------------------------------------------------------------------ the admission policy


def cel_check(policy: dict, rayjob: dict, username: str) -> list[str]:
    """Run the policy as the API server would: its match condition, variables, then validations; returns the
    messages of the validations that fail ([] when admitted or not matched)."""
    import celpy

    env = celpy.Environment()

    def run(expr: str, act: dict) -> Any:
        return env.program(env.compile(expr)).evaluate(act)

    act: dict[str, Any] = {
        "object": celpy.json_to_cel(rayjob),
        "request": celpy.json_to_cel({"userInfo": {"username": username}}),
    }
    if not all(run(c["expression"], act) for c in policy["spec"]["matchConditions"]):
        return []
    variables: dict[str, Any] = {}
    for v in policy["spec"]["variables"]:
        variables[v["name"]] = run(v["expression"], act | {"variables": celpy.celtypes.MapType(variables)})
    act["variables"] = celpy.celtypes.MapType(variables)
    out = []
    for v in policy["spec"]["validations"]:
        result = run(v["expression"], act)
        if not isinstance(result, celpy.celtypes.BoolType):  # an evaluation error: the API server denies
            out.append(f"{v['message']} (evaluation error: {result})")
        elif not result:
            out.append(v["message"])
    return out


def test_the_admission_policy_admits_tonights_rayjob_and_refuses_tampered_ones():
    pytest.importorskip("celpy")
    objs = chart.objects(
        render_all({"admissionPolicy": {"enabled": True}, "serviceAccount": {"create": True}})
    )
    (policy,) = [o for o in objs if o["kind"] == "ValidatingAdmissionPolicy"]
    (binding,) = [o for o in objs if o["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "star1"
    }
    tonight = rayjobs(objs)["nightly"]
    creator = "system:serviceaccount:star1:star1-nightly"
    assert cel_check(policy, tonight, creator) == []

    def tampered(edit) -> dict:
        rj = copy.deepcopy(tonight)
        edit(rj["spec"])
        return rj

    def worker(spec: dict) -> dict:
        return spec["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]

    attacks = {
        "images": lambda s: worker(s)["containers"][0].update(image="evil.example.com/miner:latest"),
        "init images": lambda s: worker(s)["initContainers"].append({"name": "x", "image": "busybox"}),
        "autoscaler": lambda s: s["rayClusterSpec"]["autoscalerOptions"].update(image="evil/autoscaler"),
        "service account": lambda s: worker(s).update(serviceAccountName="cluster-admin-sa"),
        "hostPath": lambda s: worker(s)["volumes"].append({"name": "root", "hostPath": {"path": "/"}}),
        "network": lambda s: worker(s).update(hostNetwork=True),
        "own cluster": lambda s: (s.pop("rayClusterSpec"), s.update(clusterSelector={"ray.io/cluster": "x"})),
    }
    for what, edit in attacks.items():
        refused = cel_check(policy, tampered(edit), creator)
        assert refused, what
        words = {"images": "images", "init images": "images", "autoscaler": "images",
                 "service account": "service account", "hostPath": "hostPath", "network": "network",
                 "own cluster": "own cluster"}  # fmt: skip
        assert any(words[what] in m for m in refused), (what, refused)
    # anyone else (a person, the KubeRay operator) is not this policy's business
    evil = tampered(attacks["images"])
    assert cel_check(policy, evil, "system:serviceaccount:star1:someone-else") == []


# ------------------------------------------------------------------------------------ helm test


def test_helm_tests_pod_checks_the_image_and_the_store(s3_server, bucket, tmp_path):
    from tests.rehearsal import pod_env

    values = {"s3": {"endpoint": s3_server, "bucket": bucket, "prefix": "runs"}}
    objs = chart.objects(chart.render(values))
    (pod,) = [o for o in objs if o["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (c,) = pod["spec"]["containers"]
    assert c["image"].endswith("-cpu")
    assert "secretKeyRef" not in str([e for e in c["env"] if "AWS" not in e["name"]])  # no API keys
    secrets = {"star1-s3": {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}}

    def run(container: dict) -> subprocess.CompletedProcess:
        env = pod_env(container, secrets) | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        env["HOME"] = str(tmp_path)  # the pod's /tmp
        return subprocess.run(
            container["command"], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
        )

    import star1

    ok = run(c)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0].strip() == star1.__version__  # `star1 --version`
    assert f"store s3://{bucket}/runs: wrote, read back and deleted" in ok.stdout
    import boto3

    listing = boto3.client("s3", endpoint_url=s3_server).list_objects_v2(Bucket=bucket).get("Contents", [])
    # the round trip cleans up after itself (pyarrow may keep an empty folder marker)
    assert [o["Key"] for o in listing if not o["Key"].endswith("/")] == []
    # a store the pod cannot write fails the test with exit 7 (infrastructure), naming the store
    values["s3"]["bucket"] = "no-such-bucket-" + bucket[-8:]
    (pod,) = [o for o in chart.objects(chart.render(values)) if o["kind"] == "Pod"]
    bad = run(pod["spec"]["containers"][0])
    assert bad.returncode == 7, (bad.stdout, bad.stderr)
    assert "no-such-bucket" in bad.stderr
