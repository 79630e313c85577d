"""The code sandbox on Kubernetes (jobs.eval.sandbox): the eval and nightly clusters get a CPU worker group
that advertises `star1_sandbox` (and no CPU, so nothing else lands there), declares STAR1_SANDBOX_POD=1, holds
no secret and no service-account token, runs under runtimeClassName only when one is set; a NetworkPolicy
selects exactly those pods and lets them reach only their own job's Ray pods and DNS; the mounted eval config
says `eval.sandbox.ray_resource: star1_sandbox`, merged into the user's own `eval.sandbox`."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from star1.config import parse_config
from star1.deploy import chart
from star1.deploy.chart import ChartError
from tests.k8s_validation import embedded, pod_templates, render_all, restricted_problems, validate

RESOURCE = "star1_sandbox"
SANDBOX_LABEL = ("star1.io/sandbox", "true")
# labels KubeRay puts on every Ray pod it makes (ray-operator/controllers/ray/common/pod.go, labelPod)
KUBERAY_POD_LABELS = {"ray.io/is-ray-node": "yes", "app.kubernetes.io/created-by": "kuberay-operator"}
VARIANTS = {
    "default": None,
    "raycronjob": {"nightly": {"kind": "RayCronJob"}},
    "gvisor": {
        "jobs": {
            "eval": {
                "sandbox": {
                    "runtimeClassName": "gvisor", "cpu": 4, "replicas": 2,
                    "nodeSelector": {"star1.io/pool": "sandbox"},
                    "tolerations": [{"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"}],
                }
            }
        }
    },
}  # fmt: skip
OFF = {"jobs": {"eval": {"sandbox": {"enabled": False}}}}
CPU_TAG = yaml.safe_load((chart.CHART_DIR / "values.yaml").read_text())["image"]["cpuTag"]


@pytest.fixture(scope="module")
def renders():
    return {name: chart.objects(render_all(v)) for name, v in VARIANTS.items()}


def everything(objs):
    return objs + embedded(objs)


def clusters(objs):
    """(job key, RayJob spec) for each RayJob spec of a rendering (RayJobs, nightly template, RayCronJob)."""
    out = []
    for o in everything(objs):
        if o["kind"] == "RayJob":
            out.append((o["metadata"]["labels"]["app.kubernetes.io/component"], o["spec"]))
        elif o["kind"] == "RayCronJob":
            out.append(("nightly", o["spec"]["jobTemplate"]))
    return out


def groups(spec):
    return {g["groupName"]: g for g in spec["rayClusterSpec"]["workerGroupSpecs"]}


def configs(objs):
    return {
        o["metadata"]["name"]: yaml.safe_load(o["data"]["config.yaml"])
        for o in objs
        if o["kind"] == "ConfigMap" and "config.yaml" in o.get("data", {})
    }


def policies(objs):
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == "NetworkPolicy"}


# ---------------------------------------------------------------- what a pod spec may not hold


def secret_references(node, path="spec"):
    """Every place in a pod spec that brings a Secret (or a token) into the pod: env valueFrom.secretKeyRef,
    envFrom.secretRef, secret volumes, projected secrets and service-account tokens, CSI secret refs."""
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            here = f"{path}.{k}"
            if k in ("secretKeyRef", "secretRef", "secret", "serviceAccountToken", "nodePublishSecretRef"):
                found.append(here)
            found += secret_references(v, here)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += secret_references(v, f"{path}[{i}]")
    return found


def sandbox_pod_problems(where, template):
    spec = template["spec"]
    out = [f"{where}: {p}" for p in secret_references(spec)]
    if spec.get("automountServiceAccountToken") is not False:
        out.append(f"{where}: automountServiceAccountToken is not false")
    if spec.get("serviceAccountName"):
        out.append(f"{where}: a service account")
    (c,) = spec["containers"]
    if {"name": "STAR1_SANDBOX_POD", "value": "1"} not in c.get("env", []):
        out.append(f"{where}: STAR1_SANDBOX_POD=1 is not set")
    return out + restricted_problems(where, template)


def test_the_secret_walk_finds_every_way_in(renders):
    """sandbox_pod_problems is not vacuous: each planted way of getting a Secret into the pod is caught."""
    spec = next(s for k, s in clusters(renders["default"]) if k == "eval")
    clean = groups(spec)["sandbox"]["template"]
    assert sandbox_pod_problems("sandbox", clean) == []
    plants = [
        lambda s: s["containers"][0]["env"].append(
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "star1-s3", "key": "k"}}}
        ),
        lambda s: (
            s["containers"][0].setdefault("envFrom", []).append({"secretRef": {"name": "star1-api-keys"}})
        ),
        lambda s: s["volumes"].append({"name": "v", "secret": {"secretName": "star1-s3"}}),
        lambda s: s["volumes"].append(
            {"name": "v", "projected": {"sources": [{"secret": {"name": "star1-s3"}}]}}
        ),
        lambda s: s["volumes"].append(
            {"name": "v", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}
        ),
        lambda s: s.update(automountServiceAccountToken=True),
        lambda s: s["containers"][0].update(env=[]),
    ]
    for plant in plants:
        bad = copy.deepcopy(clean)
        plant(bad["spec"])
        assert sandbox_pod_problems("sandbox", bad), plant


# ---------------------------------------------------------------- the worker group


@pytest.mark.parametrize("variant", VARIANTS)
def test_eval_and_nightly_clusters_have_the_sandbox_group(renders, variant):
    objs = renders[variant]
    sandbox = VARIANTS["gvisor"]["jobs"]["eval"]["sandbox"] if variant == "gvisor" else {}
    cpus, replicas = str(sandbox.get("cpu", 2)), sandbox.get("replicas", 1)
    seen = []
    for key, spec in clusters(objs):
        g = groups(spec)
        if key not in ("eval", "nightly"):
            assert "sandbox" not in g, key
            continue
        seen.append(key)
        s = g["sandbox"]
        # the custom resource one per CPU, and CPU 0 so that only sandbox tasks are placed here
        assert s["resources"] == {"CPU": "0", RESOURCE: cpus}
        assert not set(s["rayStartParams"]) & {"num-cpus", "num-gpus", "memory", "resources"}
        assert s["replicas"] == s["minReplicas"] == s["maxReplicas"] == replicas
        pod = s["template"]["spec"]
        (c,) = pod["containers"]
        assert c["image"].endswith(":" + CPU_TAG)
        assert c["resources"]["limits"] == {"cpu": cpus, "memory": "4Gi"}
        assert "nvidia.com/gpu" not in str(c["resources"])
        assert {e["name"]: e.get("value") for e in c["env"]} == {
            "STAR1_SANDBOX_POD": "1",
            "STAR1_JOB": key,
            "HOME": "/tmp",
        }
        assert pod["enableServiceLinks"] is False
        assert sandbox_pod_problems(f"{key} sandbox", s["template"]) == []
        labels = s["template"]["metadata"]["labels"]
        assert labels[SANDBOX_LABEL[0]] == SANDBOX_LABEL[1]
        assert labels["app.kubernetes.io/component"] == key
        if variant == "gvisor":
            assert pod["runtimeClassName"] == "gvisor"
            assert pod["nodeSelector"] == sandbox["nodeSelector"]
            assert pod["tolerations"] == sandbox["tolerations"]
        else:
            assert "runtimeClassName" not in pod and "nodeSelector" not in pod and "tolerations" not in pod
    assert sorted(seen) == ["eval", "nightly"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_only_sandbox_pods_carry_the_sandbox_label_and_no_other_pod_gets_a_runtime_class(renders, variant):
    for o in everything(renders[variant]):
        for where, t in pod_templates(o):
            labels = (t.get("metadata") or {}).get("labels") or {}
            is_sandbox = where.endswith("workers sandbox")
            assert (labels.get(SANDBOX_LABEL[0]) == SANDBOX_LABEL[1]) == is_sandbox, where
            if not is_sandbox:
                assert "runtimeClassName" not in t["spec"], where


def test_no_group_sets_resources_twice(renders):
    """KubeRay 1.7 refuses a group with both the `resources` map and resource keys in rayStartParams
    (validateRayGroupResources); the sandbox uses the map, as the GPU groups do."""
    for variant, objs in renders.items():
        for key, spec in clusters(objs):
            cluster = spec["rayClusterSpec"]
            for g in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
                if g.get("resources"):
                    clash = set(g["rayStartParams"]) & {"num-cpus", "num-gpus", "memory", "resources"}
                    assert not clash, (variant, key, g.get("groupName", "head"), clash)


@pytest.mark.parametrize(("cpu", "units"), [("1", "1"), ("8", "8"), (3, "3")])
def test_one_unit_of_the_resource_per_cpu(cpu, units):
    objs = chart.objects(render_all({"jobs": {"eval": {"sandbox": {"cpu": cpu}}}}))
    for key, spec in clusters(objs):
        if key in ("eval", "nightly"):
            assert groups(spec)["sandbox"]["resources"][RESOURCE] == units


def test_disabled_means_no_group_no_policy_no_ray_resource():
    objs = chart.objects(render_all(OFF))
    assert not policies(everything(objs))
    for _, spec in clusters(objs):
        assert "sandbox" not in groups(spec)
    for name, cfg in configs(objs).items():
        assert "sandbox" not in (cfg.get("eval") or {}), name
    problems = [p for o in everything(objs) for p in validate(o)]
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- the NetworkPolicy


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items()) and not selector.get(
        "matchExpressions"
    )


def ray_pods(objs):
    """(job key, where, labels as KubeRay makes them) for every Ray pod; the rest (submitter, CronJob creator)
    with key None."""
    out = []
    for o in everything(objs):
        for where, t in pod_templates(o):
            labels = dict(t["metadata"]["labels"])
            is_ray = " head" in where or " workers " in where
            if is_ray:
                labels.update(KUBERAY_POD_LABELS)
            out.append((labels["app.kubernetes.io/component"] if is_ray else None, where, labels))
    return out


def fence_problems(np):
    """What lets a sandbox pod talk to more than its own cluster's pods and DNS: an ipBlock, a rule with no
    peers (= everywhere), a peer that is not a labelled pod selection, DNS rules open beyond port 53."""
    out = []
    spec = np["spec"]
    if set(spec.get("policyTypes", [])) != {"Ingress", "Egress"}:
        out.append("policyTypes is not [Ingress, Egress]")
    for direction, peers_key in (("egress", "to"), ("ingress", "from")):
        for i, rule in enumerate(spec.get(direction, [])):
            peers = rule.get(peers_key)
            if not peers:
                out.append(f"{direction}[{i}]: no `{peers_key}` (any peer)")
                continue
            for j, peer in enumerate(peers):
                where = f"{direction}[{i}].{peers_key}[{j}]"
                if "ipBlock" in peer:
                    out.append(f"{where}: ipBlock")
                if not (peer.get("podSelector") or {}).get("matchLabels"):
                    out.append(f"{where}: not a labelled pod selection")
                if "namespaceSelector" in peer:
                    ns = (peer["namespaceSelector"] or {}).get("matchLabels") or {}
                    ports = {(p.get("protocol", "TCP"), p.get("port")) for p in rule.get("ports") or []}
                    if direction == "ingress" or set(ns) != {"kubernetes.io/metadata.name"}:
                        out.append(f"{where}: another namespace beyond one named DNS namespace")
                    if not ports or not ports <= {("UDP", 53), ("TCP", 53)}:
                        out.append(
                            f"{where}: another namespace on ports beyond DNS: {sorted(ports, key=str)}"
                        )
    return out


def test_the_fence_check_catches_an_opening(renders):
    (np,) = [
        p for p in policies(renders["default"]).values() if p["metadata"]["name"] == "star1-eval-sandbox"
    ]
    assert fence_problems(np) == []
    openings = [
        lambda s: s["egress"].append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}),
        lambda s: s["egress"].append({"ports": [{"port": 443}]}),
        lambda s: s["egress"].append({"to": []}),
        lambda s: s["egress"].append({"to": [{"podSelector": {}}]}),
        lambda s: s["egress"].append({"to": [{"namespaceSelector": {}}]}),
        lambda s: s["egress"][1].pop("ports"),
        lambda s: s["ingress"].append({}),
        lambda s: s.update(policyTypes=["Ingress"]),
    ]
    for opening in openings:
        bad = copy.deepcopy(np)
        opening(bad["spec"])
        assert fence_problems(bad), opening


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_policy_fences_exactly_the_sandbox_pods(renders, variant):
    objs = renders[variant]
    nps = policies(everything(objs))
    assert set(nps) == {"star1-eval-sandbox", "star1-nightly-sandbox"}
    pods = ray_pods(objs)
    for name, np in nps.items():
        assert validate(np) == [], name
        assert fence_problems(np) == [], name
        key = name.removeprefix("star1-").removesuffix("-sandbox")
        selected = [where for _, where, labels in pods if matches(np["spec"]["podSelector"], labels)]
        want = [where for k, where, _ in pods if k == key and where.endswith("workers sandbox")]
        assert selected == want and want, (name, selected)
        # the peers are the Ray pods of this job's cluster (head, GPU workers, the sandbox itself), no others
        (peer_rule,) = [r for r in np["spec"]["egress"] if "namespaceSelector" not in r["to"][0]]
        (ingress,) = np["spec"]["ingress"]
        for peers in (peer_rule["to"], ingress["from"]):
            (peer,) = peers
            got = [where for _, where, labels in pods if matches(peer["podSelector"], labels)]
            assert got == [where for k, where, _ in pods if k == key], (name, got)
            assert not any("submitter" in w or w.startswith("CronJob") for w in got)
        (dns,) = [r for r in np["spec"]["egress"] if "namespaceSelector" in r["to"][0]]
        assert dns["to"][0]["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "kube-system"
        }
        assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}


def test_the_policy_is_made_before_any_pod():
    """kubectl applies a file in order: the policy comes before the ConfigMap and the RayJob."""
    rendered = render_all()
    for template in ("eval.yaml", "nightly.yaml"):
        kinds = [d["kind"] for d in yaml.safe_load_all(rendered[f"star1/templates/{template}"]) if d]
        assert kinds[0] == "NetworkPolicy", (template, kinds)


def test_dns_pods_are_a_value():
    dns = {"namespace": "openshift-dns", "podSelector": "dns.operator.openshift.io/daemonset-dns=default,a=b"}
    objs = chart.objects(render_all({"jobs": {"eval": {"sandbox": {"dns": dns}}}}))
    for name, np in policies(everything(objs)).items():
        (peer,) = next(r for r in np["spec"]["egress"] if "namespaceSelector" in r["to"][0])["to"]
        assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "openshift-dns"}
        want = {"dns.operator.openshift.io/daemonset-dns": "default", "a": "b"}
        assert peer["podSelector"]["matchLabels"] == want
        assert validate(np) == [] and fence_problems(np) == [], name


# ---------------------------------------------------------------- the mounted eval config


def test_eval_configs_name_the_sandbox_resource(renders):
    cfgs = configs(renders["default"])
    for name in ("star1-eval-config", "star1-nightly-config"):
        assert cfgs[name]["eval"]["sandbox"] == {"ray_resource": RESOURCE}, name
        assert parse_config(cfgs[name], origin=name).eval.sandbox.ray_resource == RESOURCE
    for name in ("star1-curate-config", "star1-sft-config"):
        assert "eval" not in cfgs[name], name


USER_EVAL = {"limit": 3, "model": {"path": "m"}, "sandbox": {"timeout_s": 5.0, "isolation": "pod"}}
ALREADY_SET = {**USER_EVAL, "sandbox": {**USER_EVAL["sandbox"], "ray_resource": RESOURCE}}


@pytest.mark.parametrize(
    "values",
    [
        {"jobs": {"eval": {"config": {"eval": USER_EVAL}}}, "nightly": {"config": {"eval": USER_EVAL}}},
        {
            "jobs": {"eval": {"configYaml": yaml.safe_dump({"eval": USER_EVAL})}},
            "nightly": {"configYaml": yaml.safe_dump({"eval": USER_EVAL})},
        },
        {
            "jobs": {"eval": {"config": {"eval": ALREADY_SET}}},
            "nightly": {
                "configYaml": "eval:\n  limit: 3\n  model: {path: m}\n"
                "  sandbox: {timeout_s: 5.0, isolation: pod}\n"
            },
        },
    ],
    ids=["config", "configYaml", "already-set"],
)  # fmt: skip
def test_the_users_eval_sandbox_is_merged_not_replaced(values):
    cfgs = configs(everything(chart.objects(render_all(values))))
    for name in ("star1-eval-config", "star1-nightly-config"):
        ev = cfgs[name]["eval"]
        assert ev["limit"] == 3, name
        assert ev["sandbox"] == {"timeout_s": 5.0, "isolation": "pod", "ray_resource": RESOURCE}, name
        parse_config(cfgs[name], origin=name)


def test_an_eval_section_left_empty_still_gets_the_resource():
    empty = "eval:\n  model: {path: m}\n  sandbox:\n"
    cfgs = configs(chart.objects(render_all({"jobs": {"eval": {"configYaml": empty}}})))
    assert cfgs["star1-eval-config"]["eval"]["sandbox"] == {"ray_resource": RESOURCE}


def test_a_user_config_on_another_resource_is_refused():
    values = {"jobs": {"eval": {"config": {"eval": {"sandbox": {"ray_resource": "my_pool"}}}}}}
    with pytest.raises(ChartError, match=re.escape('eval.sandbox.ray_resource is "my_pool"')):
        render_all(values)
    # with the chart's group disabled, the user's own placement is theirs to make
    cfgs = configs(
        chart.objects(render_all({"jobs": {"eval": {**values["jobs"]["eval"], **OFF["jobs"]["eval"]}}}))
    )
    assert cfgs["star1-eval-config"]["eval"]["sandbox"] == {"ray_resource": "my_pool"}


# ---------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"jobs": {"eval": {"sandbox": {"runtimeclassName": "gvisor"}}}}, "runtimeclassName"),
        ({"jobs": {"eval": {"sandbox": {"cpu": "1500m"}}}}, "cpu"),
        ({"jobs": {"eval": {"sandbox": {"replicas": 0}}}}, "replicas"),
        ({"jobs": {"eval": {"sandbox": {"runtimeClassName": "gVisor!"}}}}, "runtimeClassName"),
        ({"jobs": {"eval": {"sandbox": {"tolerations": [{"efect": "NoSchedule"}]}}}}, "efect"),
        ({"jobs": {"eval": {"sandbox": {"dns": {"podSelector": ""}}}}}, "podSelector"),
        ({"jobs": {"eval": {"sandbox": {"dns": {"podSelector": "k8s-app"}}}}}, "podSelector"),
        ({"jobs": {"eval": {"sandbox": {"enabled": "yes"}}}}, "enabled"),
    ],
)
def test_bad_sandbox_values_fail(values, message):
    with pytest.raises(ChartError, match=re.escape(message)):
        render_all(values)


def test_a_worker_group_named_sandbox_is_refused():
    values = {
        "jobs": {
            "eval": {
                "workers": {"sandbox": {"minReplicas": 0, "maxReplicas": 1, "cpu": "1", "memory": "1Gi"}}
            }
        }
    }
    with pytest.raises(ChartError, match="taken by the code sandbox group"):
        render_all(values)
