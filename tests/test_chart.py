"""The Helm chart, rendered offline with helm-python-sdk: lint, strict values, every rendered object valid
(KubeRay schemas, kubernetes-validate strict), restricted pod security on every pod, no secret in any
manifest, GPU pools that scale from zero, eval sized for DP×TP, k8s/ byte-identical to a fresh render."""

from __future__ import annotations

import re

import pytest
import yaml

from star1.config import parse_config
from star1.deploy import chart
from star1.deploy.chart import ChartError
from star1.deploy.submit import SECRET_NAME
from tests.k8s_validation import (
    autoscaler_problems,
    embedded,
    pod_templates,
    restricted_problems,
    validate,
)

GPU = {
    "jobs": {
        "sft": {
            "workers": {
                "gpu": {
                    "minReplicas": 0, "maxReplicas": 4, "gpus": 8, "acceleratorType": "A100-80G",
                    "cpu": "90", "memory": "1000Gi", "shmSize": "128Gi",
                    "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-a100-80gb"},
                },
            }
        },
        "eval": {"parallelism": {"dp": 4, "tp": 4}, "workers": {"gpu": {"gpus": 8, "acceleratorType": "L4"}}},
    }
}  # fmt: skip
VARIANTS = {
    "default": None,
    "gpu": GPU,
    "nightly-rules": {"lifecycle": {"cleanup": "rules"}, "nightly": {"schedule": "30 3 * * 1-5"}},
    "raycronjob": {"nightly": {"kind": "RayCronJob"}},
    "minio-irsa": {
        "s3": {"endpoint": "http://minio.minio.svc:9000", "credentialsSecret": ""},
        "apiKeys": {"secret": "", "keys": []},
        "image": {"pullSecrets": ["regcred"]},
        "env": {"TOKENIZERS_PARALLELISM": "false"},
        "ray": {"auth": "disabled"},
    },
}


@pytest.fixture(scope="module")
def renders():
    return {name: chart.objects(chart.render(v)) for name, v in VARIANTS.items()}


def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def rayjob_specs(objs):
    """Every RayJob spec a rendering makes: RayJobs, a RayCronJob's template, the nightly template."""
    specs = [o["spec"] for o in by_kind(objs, "RayJob") + embedded(objs)]
    return specs + [o["spec"]["jobTemplate"] for o in by_kind(objs, "RayCronJob")]


@pytest.mark.parametrize("variant", VARIANTS)
def test_lint_is_clean(variant):
    report = chart.lint(VARIANTS[variant])
    bad = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not bad, report


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rendered_object_validates(renders, variant):
    objs = renders[variant]
    kinds = {o["kind"] for o in objs}
    assert {"ConfigMap", "RayJob"} <= kinds
    assert ("RayCronJob" in kinds) == (variant == "raycronjob")
    assert ("CronJob" in kinds) == (variant != "raycronjob")
    assert "NetworkPolicy" in kinds  # the code sandbox's fence (tests/test_chart_sandbox.py)
    problems = [p for o in objs + embedded(objs) for p in validate(o)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_pod_is_restricted(renders, variant):
    objs = renders[variant] + embedded(renders[variant])
    templates = [t for o in objs for t in pod_templates(o)]
    # head + worker group + submitter per RayJob spec, plus the CronJob's creator pod
    assert len(templates) >= 3 * len(rayjob_specs(renders[variant]))
    problems = [p for where, t in templates for p in restricted_problems(where, t)]
    problems += [p for o in objs for p in autoscaler_problems(o)]
    assert not problems, "\n".join(problems)


def test_checks_catch_a_breach():
    """The pod-security and schema checks fail on a manifest that breaks them (they are not vacuous)."""
    objs = chart.objects(chart.render())
    rj = by_kind(objs, "RayJob")[0]
    head = rj["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]
    head["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    head["spec"]["securityContext"].pop("seccompProfile")
    problems = restricted_problems("head", head)
    assert len(problems) == 2, problems
    rj["spec"]["shutdownAfterJobFinish"] = True  # a typo the API server would drop or reject
    assert any("shutdownAfterJobFinish" in e for e in validate(rj))


def test_gpu_pools_scale_from_zero_and_the_head_has_no_gpu(renders):
    for name in ("default", "gpu"):
        for spec in rayjob_specs(renders[name]):
            cluster = spec["rayClusterSpec"]
            assert cluster["enableInTreeAutoscaling"] is True
            assert cluster["autoscalerOptions"]["version"] == "v2"
            head = cluster["headGroupSpec"]
            assert head["resources"] == {"CPU": "0", "GPU": "0"}
            assert "nvidia.com/gpu" not in str(head["template"]["spec"]["containers"][0]["resources"])
            for g in cluster["workerGroupSpecs"]:
                limits = g["template"]["spec"]["containers"][0]["resources"]["limits"]
                if "nvidia.com/gpu" not in limits:
                    continue
                assert g["minReplicas"] == 0 and g["replicas"] == 0 and g["maxReplicas"] >= 1
                assert g["resources"]["GPU"] == limits["nvidia.com/gpu"]
                shm = next(v for v in g["template"]["spec"]["volumes"] if v["name"] == "dshm")["emptyDir"]
                assert shm["medium"] == "Memory" and shm["sizeLimit"]
                mounts = g["template"]["spec"]["containers"][0]["volumeMounts"]
                assert {"name": "dshm", "mountPath": "/dev/shm"} in mounts
                assert g["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    sft = next(o for o in renders["gpu"] if o["kind"] == "RayJob" and o["metadata"]["name"] == "star1-sft")
    (g,) = sft["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert g["maxReplicas"] == 4 and g["resources"]["accelerator_type:A100-80G"] == "1"
    assert g["template"]["spec"]["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-a100-80gb"}


@pytest.mark.parametrize(
    ("dp", "tp", "gpus", "pods"), [(8, 1, 8, 1), (4, 4, 8, 2), (3, 2, 4, 2), (16, 8, 8, 16)]
)
def test_eval_group_is_sized_for_dp_times_tp(dp, tp, gpus, pods):
    values = {"jobs": {"eval": {"parallelism": {"dp": dp, "tp": tp}, "workers": {"gpu": {"gpus": gpus}}}}}
    rj = next(o for o in chart.objects(chart.render(values)) if o["metadata"]["name"] == "star1-eval")
    (g,) = [g for g in rj["spec"]["rayClusterSpec"]["workerGroupSpecs"] if g["groupName"] == "gpu"]
    assert g["maxReplicas"] == pods and g["minReplicas"] == 0


def test_lifecycle_defaults_are_set(renders):
    for spec in rayjob_specs(renders["default"]):
        assert spec["activeDeadlineSeconds"] > 0 and spec["preRunningDeadlineSeconds"] > 0
        assert spec["backoffLimit"] >= 0 and spec["submitterConfig"]["backoffLimit"] >= 0
        assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] >= 0
        # the driver log and run manifest go to S3 before the job (and so the cluster) ends
        assert spec["entrypoint"].startswith("python -m star1.deploy.runlog --to s3://star1/runs/_runs/")
    for spec in rayjob_specs(renders["nightly-rules"]):
        rules = spec["deletionStrategy"]["deletionRules"]
        assert "shutdownAfterJobFinishes" not in spec
        assert {r["policy"] for r in rules} == {"DeleteCluster", "DeleteSelf"}


def test_entrypoints_run_the_jobs_on_the_mounted_config(renders):
    entry = {o["metadata"]["name"]: o["spec"]["entrypoint"] for o in by_kind(renders["default"], "RayJob")}
    assert "python jobs/pipeline.py --config /etc/star1/config.yaml" in entry["star1-curate"]
    assert "python jobs/train.py --config /etc/star1/config.yaml" in entry["star1-sft"]
    assert "python jobs/eval.py --config /etc/star1/config.yaml" in entry["star1-eval"]
    (nightly,) = embedded(renders["default"])
    assert "jobs/eval.py" in nightly["spec"]["entrypoint"]
    assert "star1 compare" in nightly["spec"]["entrypoint"]
    for o in by_kind(renders["default"], "RayJob"):
        head = o["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
        cm = next(v for v in head["volumes"] if v["name"] == "config")["configMap"]["name"]
        assert cm == f"{o['metadata']['name']}-config"
        assert {"name": "config", "mountPath": "/etc/star1", "readOnly": True} in head["containers"][0][
            "volumeMounts"
        ]


def test_run_configs_validate_and_use_the_s3_store(renders):
    configs = {
        o["metadata"]["name"]: yaml.safe_load(o["data"]["config.yaml"])
        for o in by_kind(renders["default"], "ConfigMap")
        if "config.yaml" in o.get("data", {})
    }
    assert set(configs) == {f"star1-{j}-config" for j in ("curate", "sft", "eval", "nightly")}
    for name, cfg in configs.items():
        assert cfg["store"]["uri"] == "s3://star1/runs", name
        parse_config(cfg, origin=name)  # the curate defaults are a full, valid star1 config
    assert configs["star1-curate-config"]["llm"]["generator"]["api_key_env"] == "NVIDIA_API_KEY"


def test_nightly_cronjob_is_least_privilege_and_unique_per_night(renders):
    objs = renders["default"]
    (cron,) = by_kind(objs, "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    (role,) = by_kind(objs, "Role")
    assert role["rules"] == [{"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["create", "get"]}]
    assert not by_kind(objs, "ClusterRole") and not by_kind(objs, "ClusterRoleBinding")
    (binding,) = by_kind(objs, "RoleBinding")
    assert (
        binding["subjects"][0]["name"]
        == cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["serviceAccountName"]
    )
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    cmd = pod["containers"][0]["command"]
    assert cmd[:5] == ["star1", "submit", "k8s", "--manifest", "/etc/star1/nightly/rayjob.yaml"]
    assert cmd[cmd.index("--name") + 1] == "$(JOB_NAME)"  # the CronJob's Job name: one per scheduled night
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in pod["containers"][0]["env"]}
    assert env["JOB_NAME"] == "metadata.labels['batch.kubernetes.io/job-name']"
    # <cronjob name>-<8 digits> fits KubeRay's RayJob name limit
    assert len(cron["metadata"]["name"]) + 9 <= 47


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"s3": {"bucekt": "x"}}, "bucekt"),
        ({"imagee": {"tag": "x"}}, "imagee"),
        ({"lifecycle": {"activeDeadlineSecond": 60}}, "activeDeadlineSecond"),
        ({"jobs": {"sft": {"workers": {"gpu": {"gpus": 8, "shmsize": "1Gi"}}}}}, "shmsize"),
        ({"jobs": {"evals": {}}}, "evals"),
        ({"nightly": {"shedule": "0 1 * * *"}}, "shedule"),
        ({"jobs": {"eval": {"parallelism": {"dp": "8", "tp": 1}}}}, "dp"),
        ({"jobs": {"sft": {"workers": {"gpu": {"tolerations": [{"efect": "NoSchedule"}]}}}}}, "efect"),
        ({"s3": {"accessKeyId": "AKIAABCDEFGHIJKLMNOP"}}, "accessKeyId"),
    ],
)
def test_misspelled_or_mistyped_values_fail(values, named):
    with pytest.raises(ChartError, match=re.escape(named)):
        chart.render(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"jobs": {"eval": {"parallelism": {"dp": 2, "tp": 3}}}}, "tp=3 must divide"),
        ({"jobs": {"eval": {"workers": {"gpu": {"maxReplicas": 2}}}}}, "not both"),
        ({"jobs": {"sft": {"workers": {"gpu": {"minReplicas": 3}}}}}, "minReplicas 3 > maxReplicas 1"),
        ({"jobs": {"sft": {"config": {"store": {"uri": "./artifacts"}}}}}, "not s3://"),
        ({"nightly": {"configYaml": "- not\n- a mapping\n"}}, "not a YAML mapping"),
    ],
)
def test_impossible_values_fail_with_a_reason(values, message):
    with pytest.raises(ChartError, match=re.escape(message)):
        chart.render(values)


def test_long_release_names_are_refused():
    with pytest.raises(ChartError, match="longer than 47"):
        chart.render(release="a-release-name-that-is-far-too-long-for-kuberay-x")


PLANTED = {
    "openai": "sk-planted0123456789abcdefABCDEF",
    "aws": "AKIAPLANTED0123456789",
    "hf": "hf_planted0123456789abcdefghij",
    "nvidia": "nvapi-planted0123456789abcdefgh",
}
LEAKS = [
    ("env value", {"env": {"NOTE": PLANTED["openai"]}}),
    ("env name", {"env": {"OPENAI_API_KEY": "anything"}}),
    ("config value", {"jobs": {"curate": {"config": {"llm": {"judge": {"base_url": PLANTED["nvidia"]}}}}}}),
    ("config key", {"jobs": {"sft": {"config": {"train": {"hf_token": "x"}}}}}),
    ("configYaml", {"jobs": {"eval": {"configYaml": f"eval: {{note: {PLANTED['hf']}}}\n"}}}),
    ("command", {"jobs": {"sft": {"command": f"AWS_ACCESS_KEY_ID={PLANTED['aws']} python jobs/train.py"}}}),
    ("nightly baseline", {"nightly": {"baseline": f"s3://x/{PLANTED['openai']}"}}),
    ("s3 secret as value", {"s3": {"secretAccessKey": PLANTED["aws"]}}),
    ("api key as value", {"apiKeys": {"OPENAI_API_KEY": PLANTED["openai"]}}),
]


@pytest.mark.parametrize(("where", "values"), LEAKS, ids=[w for w, _ in LEAKS])
def test_secrets_planted_in_values_never_reach_a_manifest(where, values):
    try:
        rendered = chart.render(values)
    except ChartError as e:  # refused, and the refusal does not echo the secret either
        assert not any(v in str(e) for v in PLANTED.values()), str(e)
        return
    text = "\n".join(rendered.values())
    assert not any(v in text for v in PLANTED.values()), where


def test_no_manifest_holds_a_secret(renders):
    for variant, objs in renders.items():
        assert not by_kind(objs, "Secret"), variant
        text = yaml.safe_dump_all(objs)
        assert not re.search(r"sk-[A-Za-z0-9]{16}|AKIA[0-9A-Z]{16}|hf_[A-Za-z0-9]{16}", text), variant
        for o in objs + embedded(objs):
            for _, t in pod_templates(o):
                for c in t["spec"]["containers"]:
                    for e in c.get("env", []):
                        if SECRET_NAME.match(e["name"]):
                            assert "secretKeyRef" in e.get("valueFrom", {}), (variant, e)


def test_secret_references_name_the_configured_secrets(renders):
    rj = next(o for o in renders["default"] if o["kind"] == "RayJob")
    env = rj["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
    assert refs["AWS_SECRET_ACCESS_KEY"] == {"name": "star1-s3", "key": "AWS_SECRET_ACCESS_KEY"}
    assert refs["OPENAI_API_KEY"] == {"name": "star1-api-keys", "key": "OPENAI_API_KEY", "optional": True}
    minio = next(o for o in renders["minio-irsa"] if o["kind"] == "RayJob")
    env = minio["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "AWS_ENDPOINT_URL", "value": "http://minio.minio.svc:9000"} in env
    assert not any("valueFrom" in e for e in env)  # workload identity: no static keys referenced


def test_k8s_dir_is_a_fresh_render():
    assert chart.stale_k8s() == [], "k8s/ is out of date: run `make k8s`"


def test_chart_versions_match_the_package_and_the_ray_pin():
    from star1 import __version__

    meta = yaml.safe_load((chart.CHART_DIR / "Chart.yaml").read_text())
    values = yaml.safe_load((chart.CHART_DIR / "values.yaml").read_text())
    pins = dict(
        line.split("==")
        for line in (chart.REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert meta["appVersion"] == __version__
    assert values["rayVersion"] == pins["ray"]
    assert values["image"]["tag"].startswith(__version__)
    assert values["image"]["cpuTag"].startswith(__version__)


def test_entrypoints_survive_kuberay_submission(renders, tmp_path):
    """KubeRay's submitter runs `bash -c '… ray job submit … -- <entrypoint> ;'`; the Ray CLI joins the words
    with list2cmdline and the job supervisor runs that with a shell. The command must do what it says."""
    import json
    import os
    import subprocess
    import sys

    (tmp_path / "ray").write_text(
        f"#!{sys.executable}\nimport subprocess, sys\nfrom subprocess import list2cmdline\n"
        "ep = list2cmdline(sys.argv[sys.argv.index('--') + 1:])\n"
        "sys.exit(subprocess.run(ep, shell=True).returncode)\n"
    )
    echo_args = f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n"
    for fake in ("python", "star1"):  # print their arguments instead of running
        (tmp_path / fake).write_text(echo_args)
    for f in ("ray", "python", "star1"):
        (tmp_path / f).chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", "STAR1_BASELINE": "s3://b/x"}

    def sh(command: str) -> str:
        return subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True).stdout

    values = yaml.safe_load((chart.CHART_DIR / "values.yaml").read_text())
    seen = set()
    for o in by_kind(renders["default"], "RayJob") + embedded(renders["default"]):
        key = o["spec"]["entrypoint"].split("/_runs/")[1].split()[0]
        command = values["nightly"]["command"] if key == "nightly" else values["jobs"][key]["command"]
        submit = f"ray job submit --address http://x:8265 -- {o['spec']['entrypoint']} ;"
        out = subprocess.run(["bash", "-c", submit], env=env, capture_output=True, text=True, check=True)
        argv = json.loads(out.stdout)
        assert argv[:2] == ["-m", "star1.deploy.runlog"] and argv[argv.index("--") + 1 : -1] == ["sh", "-c"]
        assert sh(argv[-1]) == sh(command), key  # the job runs exactly what the values say
        seen.add(key)
    assert seen == {"curate", "sft", "eval", "nightly"}
