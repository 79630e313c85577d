"""Offline validation of rendered Kubernetes objects: KubeRay kinds against the strict v1.7 schemas in
../shared/schemas/kuberay (tests skip cleanly without them), core kinds with kubernetes-validate (strict),
and the restricted pod-security settings on every pod template."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import SHARED

# ../shared; STAR1_SHARED points elsewhere (a git worktree whose parent has no shared/)
KUBERAY = Path(os.environ.get("STAR1_SHARED") or SHARED) / "schemas" / "kuberay"
HAVE_SCHEMAS = (KUBERAY / "rayjob-ray.io-v1-strict.json").is_file()
KUBE_VERSION = "1.33.0"
RAYCRONJOB_FIELDS = {"schedule", "timeZone", "suspend", "jobTemplate"}  # ray.io/v1 RayCronJobSpec (v1.7.0)


@functools.cache
def _validator(kind: str):
    import jsonschema

    path = KUBERAY / f"{kind.lower()}-ray.io-v1-strict.json"
    if not path.is_file():
        pytest.skip(f"KubeRay schemas not found at {KUBERAY}")
    schema = json.loads(path.read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


@functools.cache
def _rayjob_spec_validator():
    import jsonschema

    _validator("RayJob")
    spec = json.loads((KUBERAY / "rayjob-ray.io-v1-strict.json").read_text())["properties"]["spec"]
    return jsonschema.Draft202012Validator(spec, format_checker=jsonschema.FormatChecker())


def _errors(validator, obj: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def rayjob_errors(obj: dict) -> list[str]:
    """A RayJob against the strict RayJob schema, and the cluster it asks for against the RayCluster one."""
    errs = _errors(_validator("RayJob"), obj)
    cluster = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": obj["metadata"]["name"]},
        "spec": obj["spec"]["rayClusterSpec"],
    }
    return errs + [f"rayClusterSpec {e}" for e in _errors(_validator("RayCluster"), cluster)]


def validate(obj: dict) -> list[str]:
    """Problems of one rendered object ([] when it is valid)."""
    kind = obj.get("kind")
    if kind == "RayJob":
        return rayjob_errors(obj)
    if kind == "RayCronJob":
        spec = obj["spec"]
        errs = [f"spec.{k}: not a RayCronJob field" for k in set(spec) - RAYCRONJOB_FIELDS]
        errs += [] if isinstance(spec.get("schedule"), str) else ["spec.schedule: missing"]
        return errs + [f"jobTemplate {e}" for e in _errors(_rayjob_spec_validator(), spec["jobTemplate"])]
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{kind}/{obj['metadata']['name']}: {e}"]
    errs = []
    if kind == "ConfigMap":  # the nightly RayJob template travels inside a ConfigMap
        for key, text in obj.get("data", {}).items():
            doc = yaml.safe_load(text) if key.endswith(".yaml") else None
            if isinstance(doc, dict) and doc.get("kind") == "RayJob":
                errs += [f"{key}: {e}" for e in rayjob_errors(doc)]
    return errs


def embedded(objs: list[dict]) -> list[dict]:
    """Objects inside ConfigMaps (the nightly RayJob template)."""
    out = []
    for o in objs:
        for key, text in (o.get("data") or {}).items() if o["kind"] == "ConfigMap" else []:
            doc = yaml.safe_load(text) if key.endswith(".yaml") else None
            if isinstance(doc, dict) and doc.get("kind") == "RayJob":
                out.append(doc)
    return out


def pod_templates(obj: dict) -> Iterator[tuple[str, dict]]:
    """(where, pod template) for every pod an object makes: Ray head, workers, submitter, CronJob pods."""
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    spec = obj.get("spec", {})
    if obj["kind"] == "RayCronJob":
        spec = spec["jobTemplate"]
    if obj["kind"] in ("RayJob", "RayCronJob"):
        cluster = spec["rayClusterSpec"]
        yield f"{name} head", cluster["headGroupSpec"]["template"]
        for g in cluster.get("workerGroupSpecs", []):
            yield f"{name} workers {g['groupName']}", g["template"]
        if "submitterPodTemplate" in spec:
            yield f"{name} submitter", spec["submitterPodTemplate"]
    elif obj["kind"] == "CronJob":
        yield name, spec["jobTemplate"]["spec"]["template"]
    elif obj["kind"] in ("Job", "Deployment", "StatefulSet", "DaemonSet"):
        yield name, spec["template"]
    elif obj["kind"] == "Pod":
        yield name, obj


def restricted_problems(where: str, template: dict) -> list[str]:
    """Breaches of the restricted pod-security settings star1 promises on every pod."""
    spec = template.get("spec", {})
    psc = spec.get("securityContext") or {}
    out = []
    if psc.get("runAsNonRoot") is not True:
        out.append(f"{where}: pod runAsNonRoot is not true")
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        out.append(f"{where}: pod seccompProfile is not RuntimeDefault")
    if psc.get("runAsUser") == 0:
        out.append(f"{where}: pod runs as uid 0")
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            out.append(f"{where}: {flag}")
    out += [f"{where}: hostPath volume {v['name']}" for v in spec.get("volumes", []) if "hostPath" in v]
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        sc = c.get("securityContext") or {}
        cw = f"{where} container {c['name']}"
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{cw}: allowPrivilegeEscalation is not false")
        caps = sc.get("capabilities") or {}
        if caps.get("drop") != ["ALL"] or caps.get("add"):
            out.append(f"{cw}: capabilities are not drop [ALL] without adds")
        if sc.get("privileged") or sc.get("runAsUser") == 0 or sc.get("runAsNonRoot") is False:
            out.append(f"{cw}: privileged or root")
    return out


def autoscaler_problems(obj: dict) -> list[str]:
    """The autoscaler sidecar KubeRay adds to the head gets the same container settings."""
    if obj["kind"] not in ("RayJob", "RayCronJob"):
        return []
    spec = obj["spec"]["jobTemplate"] if obj["kind"] == "RayCronJob" else obj["spec"]
    cluster = spec.get("rayClusterSpec") or {}
    if not cluster.get("enableInTreeAutoscaling"):
        return []
    container = {"name": "autoscaler", "securityContext": cluster["autoscalerOptions"].get("securityContext")}
    pod_sc = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    fake = {"spec": {"securityContext": pod_sc, "containers": [container]}}
    return restricted_problems(f"{obj['kind']}/{obj['metadata']['name']} autoscaler", fake)


def render_all(values: dict | None = None, **kwargs: Any) -> dict[str, str]:
    """The chart with every job on and configured — the defaults (curate) plus helm/examples/{sft,eval,
    nightly}.yaml — under `values`: what the tests of the jobs' objects render."""
    from star1.deploy import chart
    from star1.deploy.rayjob import deep_merge

    return chart.render(deep_merge(chart.example_values(), values or {}), **kwargs)
