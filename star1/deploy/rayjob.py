"""KubeRay RayJobs from the chart: build one (the chart's rendering of a single job), create it with the
`kubernetes` client, and follow its status to a terminal state.

Only `create`, `get` and (to take back a RayJob whose ConfigMap could not be made) `delete` on `rayjobs`,
plus `create` on `configmaps` (and on `networkpolicies` for an eval with the code sandbox group) are used,
so the nightly CronJob's service account needs nothing more.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from star1.deploy import chart

GROUP, VERSION, PLURAL = "ray.io", "v1", "rayjobs"
FAILED_DEPLOYMENT = {"Failed", "ValidationFailed"}
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = 47  # KubeRay: a RayJob's name leaves room for its RayCluster's suffix
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"  # the chart's Kueue mode labels RayJobs with their LocalQueue


class RayJobError(RuntimeError):
    """A RayJob could not be built or created (the message says why)."""


def deep_merge(base: dict, over: dict) -> dict:
    """`over` merged into a copy of `base` (maps merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def chart_values(
    job: str, values_files: list[Path], helm_set: list[str], config_yaml: str | None
) -> dict[str, Any]:
    """Values that render exactly one job: the user's files and --helm-set, then the job switch."""
    import helm_python

    values: dict[str, Any] = {}
    for f in values_files:
        try:
            loaded = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise RayJobError(f"values file {f}: {e}") from None
        values = deep_merge(values, loaded)
    for s in helm_set:
        try:
            values = deep_merge(values, helm_python.parse_set_string(s))
        except helm_python.HelmError as e:
            raise RayJobError(f"--helm-set {s}: {e}") from None
    only = {"jobs": {j: {"enabled": j == job} for j in chart.JOBS}, "nightly": {"enabled": False}}
    values = deep_merge(values, only)
    if config_yaml is not None:
        values = deep_merge(values, {"jobs": {job: {"configYaml": config_yaml}}})
    return values


def from_chart(
    job: str, values: dict[str, Any], release: str, namespace: str, chart_path: Path | None = None
) -> tuple[dict, dict, list[dict]]:
    """The ConfigMap, RayJob and NetworkPolicies (the eval's code sandbox fence, else none) the chart
    renders for `job` (release `release`)."""
    if job not in chart.JOBS:
        raise RayJobError(f"unknown job '{job}' (one of {', '.join(chart.JOBS)})")
    objs = chart.objects(chart.render(values, chart=chart_path, release=release, namespace=namespace))
    mine = [o for o in objs if o["metadata"]["name"].startswith(f"{release}-{job}")]
    kinds = sorted(o["kind"] for o in mine)
    policies = [o for o in mine if o["kind"] == "NetworkPolicy"]
    if [k for k in kinds if k != "NetworkPolicy"] != ["ConfigMap", "RayJob"]:
        raise RayJobError(
            f"the chart rendered {kinds} for job '{job}', expected ConfigMap + RayJob (+ NetworkPolicy)"
        )
    by_kind = {o["kind"]: o for o in mine}
    return by_kind["ConfigMap"], by_kind["RayJob"], policies


def from_manifest(path: Path, name: str | None, namespace: str | None) -> dict:
    """A RayJob from a YAML file (the nightly template), renamed and moved as asked."""
    try:
        obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise RayJobError(f"manifest {path}: {e}") from None
    if not isinstance(obj, dict) or obj.get("kind") != "RayJob":
        raise RayJobError(f"manifest {path} is not a RayJob")
    if name:
        obj["metadata"]["name"] = name
    if namespace:
        obj["metadata"]["namespace"] = namespace
    check_name(obj["metadata"]["name"])
    return obj


def own_config(rayjob: dict, text: str) -> dict:
    """Point the RayJob's pods at a ConfigMap of its own, `<name>-config`, holding the run config `text`;
    return that ConfigMap (created after the RayJob, owned by it). The nightly creator does this: the chart's
    ConfigMap belongs to the Helm release and goes with `helm uninstall`, this one goes with the RayJob."""
    meta = rayjob["metadata"]
    cm_name = f"{meta['name']}-config"
    cluster = rayjob["spec"]["rayClusterSpec"]
    templates = [cluster["headGroupSpec"]["template"]] + [
        g["template"] for g in cluster.get("workerGroupSpecs", [])
    ]
    pointed = 0
    for t in templates:
        for v in t["spec"].get("volumes", []):
            if v.get("name") == "config" and "configMap" in v:
                v["configMap"]["name"] = cm_name
                pointed += 1
    if not pointed:
        raise RayJobError(
            f"rayjob/{meta['name']}: no pod mounts a volume named 'config' to point at {cm_name}"
        )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": cm_name,
            "namespace": meta["namespace"],
            "labels": dict(meta.get("labels") or {}),
        },
        "data": {"config.yaml": text},
    }


def owner_job(rayjob: dict, spec: str) -> None:
    """Make the RayJob owned by a batch/v1 Job, given as NAME:UID (the nightly CronJob's Job: the pod learns
    both from its labels through the downward API), so it is garbage-collected with that Job. No
    blockOwnerDeletion: that would need rights on the Job the creator does not have."""
    name, _, uid = spec.partition(":")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?", name) or not re.fullmatch(
        r"[0-9a-fA-F-]+", uid
    ):
        raise RayJobError(
            f"--owner-job {spec!r}: expected JOB_NAME:JOB_UID (in a Job's pod, the labels "
            "batch.kubernetes.io/job-name and batch.kubernetes.io/controller-uid)"
        )
    rayjob["metadata"]["ownerReferences"] = [
        {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid}
    ]


def check_name(name: str) -> None:
    if len(name) > MAX_NAME or not NAME_RE.match(name):
        raise RayJobError(
            f"RayJob name '{name}' must be a DNS-1035 label of at most {MAX_NAME} characters "
            "(lower-case letters, digits, '-', starting with a letter)"
        )


def store_of(rayjob: dict) -> str | None:
    """Where the job's driver log and run manifest go (the entrypoint's `star1.deploy.runlog --to`)."""
    words = shlex.split(rayjob["spec"].get("entrypoint", ""))
    return words[words.index("--to") + 1] if "--to" in words else None


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (a ConfigMap's config.yaml) as `|` blocks, as kubectl users expect to read them."""


_BlockDumper.add_representer(
    str,
    lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None),
)


def dump_yaml(docs: list[dict]) -> str:
    """Objects as a multi-document YAML stream (what --dry-run prints and kubectl accepts)."""
    return yaml.dump_all(docs, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=120)


# ------------------------------------------------------------------ cluster side


class Kube:
    """The API groups used: custom objects (RayJobs), core (ConfigMaps), networking (NetworkPolicies)."""

    def __init__(self, context: str | None = None, api_client: Any = None) -> None:
        from kubernetes import client, config

        if api_client is None:
            if context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config()
            else:
                # KUBECONFIG read now (the client reads it once, at import)
                config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), context=context)
            api_client = client.ApiClient()
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.net = client.NetworkingV1Api(api_client)

    def get(self, namespace: str, name: str) -> dict | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def create(
        self,
        rayjob: dict,
        configmap: dict | None,
        say: Callable[[str], None],
        policies: list[dict] | tuple[dict, ...] = (),
    ) -> dict:
        """Create the RayJob (or adopt the one of that name: a retried creator makes no second job), then
        its NetworkPolicies, then its ConfigMap, all owned by the RayJob so they go away together. Every Ray
        pod mounts the ConfigMap, so none starts before the policies exist; when one cannot be made, the
        ConfigMap is not made either, and a RayJob this call created is deleted again (it would wait for its
        ConfigMap forever) — or, without the right to, named for deletion."""
        from kubernetes.client.exceptions import ApiException

        ns, name = rayjob["metadata"]["namespace"], rayjob["metadata"]["name"]
        fresh = True
        try:
            created = self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, rayjob)
            say(f"created rayjob/{name} in namespace {ns}")
        except ApiException as e:
            if e.status != 409:
                raise RayJobError(f"creating rayjob/{name} in {ns}: {_reason(e)}") from None
            created = self.get(ns, name)
            if created is None:
                raise RayJobError(f"rayjob/{name} exists and vanished while being read") from None
            fresh = False
            say(f"rayjob/{name} already exists in {ns}: following it")
        owner = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RayJob",
            "name": name,
            "uid": created["metadata"]["uid"],
        }
        owned = [(self.net.create_namespaced_network_policy, p, "networkpolicy") for p in policies]
        if configmap is not None:
            owned.append((self.core.create_namespaced_config_map, configmap, "configmap"))
        for create, obj, kind in owned:
            try:
                _create_owned(create, ns, obj, owner)
            except ApiException as e:
                why = (
                    f"rayjob/{name} was created, but not its {kind}/{obj['metadata']['name']} ({_reason(e)})"
                )
                if fresh and self.delete(ns, name):
                    raise RayJobError(
                        f"{why}: the RayJob was deleted again, nothing was left waiting"
                    ) from None
                raise RayJobError(
                    f"{why}: its pods wait for a ConfigMap that was not created; delete it with "
                    f"`kubectl -n {ns} delete rayjob {name}`"
                ) from None
        return created

    def delete(self, namespace: str, name: str) -> bool:
        """Delete a RayJob (KubeRay then removes its cluster); True when it is gone."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as e:
            return e.status == 404
        return True


def _create_owned(
    create: Callable[[str, dict[str, Any]], Any], ns: str, obj: dict[str, Any], owner: dict[str, Any]
) -> None:
    """Create a copy of `obj` owned by `owner` (garbage-collected with it); an existing one is kept, any
    other refusal raises the ApiException."""
    from kubernetes.client.exceptions import ApiException

    owned = copy.deepcopy(obj)
    owned["metadata"]["ownerReferences"] = [owner]
    try:
        create(ns, owned)
    except ApiException as e:
        if e.status != 409:
            raise


def _reason(e: Any) -> str:
    import json

    try:
        return json.loads(e.body).get("message") or str(e.reason)
    except (TypeError, ValueError):
        return f"{e.status} {e.reason}"


def pointers(rayjob: dict) -> list[str]:
    """Where to look: submitter logs, the dashboard (port-forward; the token when auth is on), S3 records."""
    ns, name = rayjob["metadata"]["namespace"], rayjob["metadata"]["name"]
    cluster = (rayjob.get("status") or {}).get("rayClusterName") or f"<{name}'s raycluster>"
    lines = [
        f"driver log:  kubectl -n {ns} logs -f job/{name}",
        f"status:      kubectl -n {ns} get rayjob {name}",
        f"dashboard:   kubectl -n {ns} port-forward svc/{name}-head-svc 8265:8265  ->  http://127.0.0.1:8265",
    ]
    auth = (rayjob["spec"].get("rayClusterSpec") or {}).get("authOptions") or {}
    if auth.get("mode") == "token":
        lines.append(
            f"  token:     kubectl -n {ns} get secret {cluster} "
            "-o jsonpath='{.data.auth_token}' | base64 -d"
        )
    if store := store_of(rayjob):
        lines.append(f"records:     {store}/<run id>/driver.log and run.json (kept after teardown)")
    return lines


def follow(
    kube: Kube,
    namespace: str,
    name: str,
    say: Callable[[str], None],
    poll: float = 10.0,
    timeout: float | None = None,
) -> tuple[bool, str]:
    """Poll the RayJob until it ends; (succeeded, final state). A deleted job ends what is known of it."""
    start, last, seen, shown = time.monotonic(), "", None, False
    while True:
        obj = kube.get(namespace, name)
        if obj is None:
            if seen is not None and _terminal(seen):
                break
            return False, f"rayjob/{name} was deleted before it finished (last: {last or 'no status'})"
        seen = obj
        status = obj.get("status") or {}
        state = f"{status.get('jobDeploymentStatus') or 'New'}/{status.get('jobStatus') or '-'}"
        if state != last:
            extra = f" ({status['reason']}: {status.get('message', '')})" if status.get("reason") else ""
            say(f"rayjob/{name}: {state}{extra}")
            queue = (obj["metadata"].get("labels") or {}).get(QUEUE_LABEL)
            if queue and status.get("jobDeploymentStatus") in (None, "", "New", "Suspended"):
                say(
                    f"rayjob/{name} waits in Kueue queue {queue} until admitted: "
                    f"kubectl -n {namespace} get workloads"
                )
            last = state
        if status.get("rayClusterName") and not shown:
            for line in pointers(obj):
                say(line)
            shown = True
        if _terminal(obj):
            break
        if timeout is not None and time.monotonic() - start > timeout:
            return False, f"still {state} after {timeout:.0f} s (the RayJob keeps running)"
        time.sleep(poll)
    status = seen.get("status") or {}
    ok = status.get("jobStatus") == "SUCCEEDED" and status.get("jobDeploymentStatus") == "Complete"
    detail = status.get("message") or status.get("reason") or ""
    return ok, f"{status.get('jobDeploymentStatus')}/{status.get('jobStatus')}" + (
        f": {detail}" if detail else ""
    )


def _terminal(obj: dict) -> bool:
    status = obj.get("status") or {}
    return status.get("jobDeploymentStatus") in FAILED_DEPLOYMENT | {"Complete"}
