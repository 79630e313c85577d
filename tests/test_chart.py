"""The Helm chart, rendered offline with helm-python-sdk: lint, strict values, every rendered object valid
(KubeRay schemas, kubernetes-validate strict), restricted pod security on every pod, no secret in any
manifest, GPU pools that scale from zero, eval sized for DP×TP and its engine written into the run config,
defaults that enable only what can run, an enabled job with a half-set config refused naming the value,
retries in the job instead of on a fresh cluster, k8s/ byte-identical to a fresh render.

Most tests render every job (the defaults plus helm/examples/*.yaml, `render_all`); the default values alone
enable only curate."""

from __future__ import annotations

import re

import pytest
import yaml

from star1.config import parse_config
from star1.deploy import chart
from star1.deploy.chart import ChartError
from star1.deploy.rayjob import deep_merge
from star1.deploy.submit import SECRET_NAME
from tests.k8s_validation import (
    autoscaler_problems,
    embedded,
    pod_templates,
    render_all,
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
    return {name: chart.objects(render_all(v)) for name, v in VARIANTS.items()}


def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def rayjob_specs(objs):
    """Every RayJob spec a rendering makes: RayJobs, a RayCronJob's template, the nightly template."""
    specs = [o["spec"] for o in by_kind(objs, "RayJob") + embedded(objs)]
    return specs + [o["spec"]["jobTemplate"] for o in by_kind(objs, "RayCronJob")]


@pytest.mark.parametrize("variant", [*VARIANTS, "defaults only"])
def test_lint_is_clean(variant):
    values = None if variant == "defaults only" else chart.example_values()
    if VARIANTS.get(variant):
        values = deep_merge(values, VARIANTS[variant])
    report = chart.lint(values)
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
    objs = chart.objects(render_all())
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
    objs = chart.objects(render_all(values))
    rj = next(o for o in objs if o["metadata"]["name"] == "star1-eval")
    (g,) = [g for g in rj["spec"]["rayClusterSpec"]["workerGroupSpecs"] if g["groupName"] == "gpu"]
    assert g["maxReplicas"] == pods and g["minReplicas"] == 0
    # the engine runs what the pool is sized for: the mounted configs say so
    for name in ("star1-eval-config", "star1-nightly-config"):
        (cm,) = [o for o in objs if o["metadata"]["name"] == name]
        model = yaml.safe_load(cm["data"]["config.yaml"])["eval"]["model"]
        assert (model["backend"], model["device"]) == ("ray", "gpu"), name
        assert (model["replicas"], model["tensor_parallel_size"]) == (dp, tp), name


def test_lifecycle_defaults_are_set(renders):
    for spec in rayjob_specs(renders["default"]):
        assert spec["activeDeadlineSeconds"] > 0 and spec["preRunningDeadlineSeconds"] > 0
        assert spec["submitterConfig"]["backoffLimit"] >= 0
        assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] >= 0
        # the driver log and run manifest go to S3 before the job (and so the cluster) ends
        assert spec["entrypoint"].startswith("python -m star1.deploy.runlog --to s3://star1/runs/_runs/")
        # KubeRay retries a whole RayJob whatever the cause (a regression, a bad config…): not at all; the
        # wrapper reruns in place only what a rerun can fix (exit 5 / 7)
        assert spec["backoffLimit"] == 0
        assert " --retries 2 --retry-delay 60 -- sh -c " in spec["entrypoint"]
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
    # one command: the eval into one run name, the comparison, the records, the exit code (star1 nightly)
    assert "'python jobs/nightly.py --config /etc/star1/config.yaml'" in nightly["spec"]["entrypoint"]
    assert "$(" not in nightly["spec"]["entrypoint"] and "&&" not in nightly["spec"]["entrypoint"]
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
    for name in configs:  # the chart's GPU wait, from lifecycle.resourceWaitSeconds
        assert configs[name]["ray"]["resource_wait_s"] == 900, name
    assert configs["star1-nightly-config"]["report"]["baseline"] == "star1-7b"  # nightly.baseline


def test_nightly_cronjob_is_least_privilege_and_unique_per_night(renders):
    objs = renders["default"]
    (cron,) = by_kind(objs, "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    (role,) = by_kind(objs, "Role")
    assert role["rules"] == [
        {"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["create", "get", "delete"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
    ]
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
    env = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in pod["containers"][0]["env"]
        if "valueFrom" in e
    }
    assert env["JOB_NAME"] == "metadata.labels['batch.kubernetes.io/job-name']"
    # tonight's RayJob is owned by this Job (garbage-collected with it) and mounts its own config copy
    assert env["JOB_UID"] == "metadata.labels['batch.kubernetes.io/controller-uid']"
    assert cmd[cmd.index("--owner-job") + 1] == "$(JOB_NAME):$(JOB_UID)"
    assert cmd[cmd.index("--config") + 1] == "/etc/star1/config/config.yaml"
    mounts = {v["name"]: v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
    assert mounts == {"rayjob": "star1-nightly-rayjob", "config": "star1-nightly-config"}
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
        render_all(values)


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
    (
        "configYaml",
        {"jobs": {"eval": {"configYaml": f"eval: {{model: {{path: m}}, note: {PLANTED['hf']}}}\n"}}},
    ),
    ("command", {"jobs": {"sft": {"command": f"AWS_ACCESS_KEY_ID={PLANTED['aws']} python jobs/train.py"}}}),
    ("nightly baseline", {"nightly": {"baseline": f"s3://x/{PLANTED['openai']}"}}),
    ("s3 secret as value", {"s3": {"secretAccessKey": PLANTED["aws"]}}),
    ("api key as value", {"apiKeys": {"OPENAI_API_KEY": PLANTED["openai"]}}),
]


@pytest.mark.parametrize(("where", "values"), LEAKS, ids=[w for w, _ in LEAKS])
def test_secrets_planted_in_values_never_reach_a_manifest(where, values):
    try:
        rendered = render_all(values)
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
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}

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


# ---------------------------------------------------------------- defaults, half-set configs, the engine


def test_the_defaults_enable_only_what_can_run():
    """curate's default config is complete; sft, eval and nightly need a model (and a baseline): off."""
    objs = chart.objects(chart.render())
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objs) == [
        ("ConfigMap", "star1-curate-config"),
        ("Pod", "star1-smoke"),  # `helm test`'s (templates/tests/), never in k8s/
        ("RayJob", "star1-curate"),
    ]
    values = yaml.safe_load((chart.CHART_DIR / "values.yaml").read_text())
    assert [j for j, v in values["jobs"].items() if v["enabled"]] == ["curate"]
    assert values["nightly"]["enabled"] is False


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"jobs": {"sft": {"enabled": True}}}, "jobs.sft.config.train is required when jobs.sft.enabled"),
        (
            {"jobs": {"sft": {"enabled": True, "config": {"train": {"preset": "r1-distill-7b"}}}}},
            "jobs.sft.config.train.model is required when jobs.sft.enabled",
        ),
        (
            {"jobs": {"eval": {"enabled": True}}},
            "jobs.eval.config.eval.model is required when jobs.eval.enabled",
        ),
        (
            {"jobs": {"eval": {"enabled": True, "configYaml": "eval: {limit: 3}\n"}}},
            "jobs.eval.config.eval.model is required",
        ),
        ({"nightly": {"enabled": True}}, "nightly.baseline is required when nightly.enabled"),
        (
            {"nightly": {"enabled": True, "baseline": "star1-7b"}},
            "nightly.config.eval.model is required when nightly.enabled",
        ),
        ({"jobs": {"curate": {"config": {"llm": None}}}}, "jobs.curate.config.llm is required"),
    ],
    ids=["sft-empty", "sft-no-model", "eval-empty", "eval-configYaml", "nightly-no-baseline", "nightly-empty",
         "curate-no-llm"],
)  # fmt: skip
def test_an_enabled_job_with_a_half_set_config_fails_naming_the_value(values, named):
    with pytest.raises(ChartError, match=re.escape(named)):
        chart.render(values)


def test_the_eval_config_carries_the_engine_the_pool_is_sized_for(renders):
    objs = renders["gpu"]  # dp 4 × tp 4 on 8-GPU L4 pods
    for name in ("star1-eval-config", "star1-nightly-config"):
        (cm,) = [o for o in objs if o["metadata"]["name"] == name]
        cfg = parse_config(yaml.safe_load(cm["data"]["config.yaml"]), origin=name)
        m = cfg.eval.model
        assert (m.backend, m.device, m.replicas, m.tensor_parallel_size, m.accelerator_type) == (
            "ray", "gpu", 4, 4, "L4"
        ), name  # fmt: skip
        # the judge runs on the pool too: the driver's head has no GPU
        assert (cfg.eval.guard.model.backend, cfg.eval.guard.model.device) == ("ray", "gpu"), name


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"replicas": 2}, "eval.model.replicas is 2, but the chart sets 8"),
        ({"backend": "local"}, 'eval.model.backend is "local", but the chart sets "ray"'),
        ({"accelerator_type": "A100"}, 'eval.model.accelerator_type is "A100", but the chart sets "H100"'),
    ],
)
def test_an_eval_config_that_contradicts_the_pool_is_refused(model, message):
    values = {"jobs": {"eval": {"config": {"eval": {"model": {"path": "m", **model}}}}}}
    with pytest.raises(ChartError, match=re.escape(message)):
        render_all(values)
    # an API model (engine openai) runs no engine on the pool: left alone
    api = {"path": "m", "engine": "openai", "endpoint": {"base_url": "http://x/v1", "model": "m"}}
    objs = chart.objects(render_all({"jobs": {"eval": {"config": {"eval": {"model": api}}}}}))
    (cm,) = [o for o in objs if o["metadata"]["name"] == "star1-eval-config"]
    assert "backend" not in yaml.safe_load(cm["data"]["config.yaml"])["eval"]["model"]


def test_the_nightly_rayjob_does_not_claim_helm_ownership(renders):
    """Created by the CronJob's pod, not by Helm: no managed-by Helm / helm.sh/chart on it or its pods."""
    (nightly,) = embedded(renders["default"])
    labels = [nightly["metadata"]["labels"]] + [t["metadata"]["labels"] for _, t in pod_templates(nightly)]
    for lab in labels:
        assert lab["app.kubernetes.io/managed-by"] == "star1-nightly" and "helm.sh/chart" not in lab
        assert lab["app.kubernetes.io/instance"] == "star1"  # the sandbox fence still selects its pods
    # everything Helm does create says so
    for o in renders["default"]:
        assert o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm", o["metadata"]["name"]


def test_each_example_renders_its_job_alone_and_k8s_holds_them():
    for job, path in chart.examples().items():
        rendered = chart.render(yaml.safe_load(path.read_text()))
        jobs = [n for n, t in rendered.items() if t.strip() and "/tests/" not in n and n.endswith(".yaml")]
        assert jobs == [f"star1/templates/{job}.yaml"]
    assert sorted(chart.examples()) == ["eval", "nightly", "sft"]
    assert sorted(p.name for p in chart.K8S_DIR.glob("*.yaml")) == [
        "curate.yaml", "eval.yaml", "nightly.yaml", "sft.yaml"
    ]  # fmt: skip
    assert "+ helm/examples/sft.yaml" in (chart.K8S_DIR / "sft.yaml").read_text().splitlines()[0]


# ---------------------------------------------------------------- scratch disks (issue 19)

SCRATCH_ENV = {
    "STAR1_CACHE": "/scratch/star1",
    "TMPDIR": "/scratch/tmp",
    "HF_HOME": "/scratch/hf",
    "VLLM_CACHE_ROOT": "/scratch/vllm",
    "TORCH_EXTENSIONS_DIR": "/scratch/torch_extensions",
    "TRITON_CACHE_DIR": "/scratch/triton",
    "XDG_CACHE_HOME": "/scratch/cache",
    "DG_JIT_CACHE_DIR": "/scratch/deep_gemm",
    "HOME": "/scratch/home",
}


def ray_pods(spec):
    """(where, pod spec) of the head and every worker group but the code sandbox."""
    cluster = spec["rayClusterSpec"]
    yield "head", cluster["headGroupSpec"]["template"]["spec"]
    for g in cluster["workerGroupSpecs"]:
        if g["groupName"] != "sandbox":
            yield g["groupName"], g["template"]["spec"]


def scratch_volume(pod):
    (vol,) = [v for v in pod["volumes"] if v["name"] == "scratch"]
    return vol


def plain_env(container):
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_ray_pod_mounts_scratch_and_every_cache_points_there(renders, variant):
    for spec in rayjob_specs(renders[variant]):
        for where, pod in ray_pods(spec):
            ray = pod["containers"][0]
            assert {"name": "scratch", "mountPath": "/scratch"} in ray["volumeMounts"], where
            env = plain_env(ray)
            assert {k: env.get(k) for k in SCRATCH_ENV} == SCRATCH_ENV, where
            # the head keeps Ray's folder where KubeRay shares it with the autoscaler; workers follow TMPDIR
            assert env.get("RAY_TMPDIR") == ("/tmp" if where == "head" else None), where
            (init,) = pod["initContainers"]
            assert init["command"] == ["mkdir", "-p", *SCRATCH_ENV.values()]
            assert init["volumeMounts"] == [{"name": "scratch", "mountPath": "/scratch"}]
            assert init["image"] == ray["image"]
        # the sandbox holds nothing worth a disk, and its environment stays what the chart promises
        for g in spec["rayClusterSpec"]["workerGroupSpecs"]:
            if g["groupName"] == "sandbox":
                pod = g["template"]["spec"]
                assert "scratch" not in str(pod["volumes"]) and "initContainers" not in pod
                assert {e["name"] for e in pod["containers"][0]["env"]} == {
                    "STAR1_SANDBOX_POD",
                    "STAR1_JOB",
                    "HOME",
                }


def test_emptydir_scratch_is_requested_as_ephemeral_storage(renders):
    """sizeLimit + storageMargin (10Gi), requests = limits, on the Ray container of every pod."""
    want = {  # (head, workers) per RayJob: the defaults of values.yaml
        "star1-curate": ("30Gi", "40Gi"), "star1-sft": ("35Gi", "170Gi"), "star1-eval": ("45Gi", "50Gi"),
        "star1-nightly": ("45Gi", "50Gi"),
    }  # fmt: skip
    objs = renders["default"]
    seen = set()
    for rj in by_kind(objs, "RayJob") + embedded(objs):
        head, workers = want[rj["metadata"]["name"]]
        for where, pod in ray_pods(rj["spec"]):
            disk = head if where == "head" else workers
            res = pod["containers"][0]["resources"]
            assert res["requests"]["ephemeral-storage"] == res["limits"]["ephemeral-storage"] == disk, where
            size = scratch_volume(pod)["emptyDir"]["sizeLimit"]
            assert int(size.removesuffix("Gi")) + 10 == int(disk.removesuffix("Gi"))
        seen.add(rj["metadata"]["name"])
    assert seen == set(want)


SCRATCH_KINDS = {
    "pvc-claim": ({"kind": "pvc", "claimName": "star1-scratch"},
                  {"persistentVolumeClaim": {"claimName": "star1-scratch"}}),
    "pvc-ephemeral": (
        {"kind": "pvc", "storageClassName": "local-nvme", "size": "800Gi"},
        {"ephemeral": {"volumeClaimTemplate": {"spec": {
            "accessModes": ["ReadWriteOnce"], "storageClassName": "local-nvme",
            "resources": {"requests": {"storage": "800Gi"}}}}}},
    ),
    "pvc-default-class": (
        {"kind": "pvc", "size": "1Ti"},
        {"ephemeral": {"volumeClaimTemplate": {"spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Ti"}}}}}},
    ),
    "hostPath": ({"kind": "hostPath", "path": "/mnt/nvme/star1"},
                 {"hostPath": {"path": "/mnt/nvme/star1", "type": "DirectoryOrCreate"}}),
    "hostPath-existing": ({"kind": "hostPath", "path": "/mnt/nvme", "type": "Directory"},
                          {"hostPath": {"path": "/mnt/nvme", "type": "Directory"}}),
    "tmpfs": ({"kind": "emptyDir", "sizeLimit": "32Gi", "medium": "Memory"},
              {"emptyDir": {"medium": "Memory", "sizeLimit": "32Gi"}}),
}  # fmt: skip


@pytest.mark.parametrize("kind", SCRATCH_KINDS)
def test_each_scratch_kind_renders_a_valid_volume(kind):
    """A group's own storage replaces the job's; only a disk-backed emptyDir asks for ephemeral storage."""
    storage, volume = SCRATCH_KINDS[kind]
    values = {"jobs": {"sft": {"workers": {"gpu": {"storage": storage}}}}}
    objs = chart.objects(render_all(values))
    (rj,) = [o for o in by_kind(objs, "RayJob") if o["metadata"]["name"] == "star1-sft"]
    pods = dict(ray_pods(rj["spec"]))
    assert {k: v for k, v in scratch_volume(pods["gpu"]).items() if k != "name"} == volume
    assert "ephemeral-storage" not in str(pods["gpu"]["containers"][0]["resources"])
    assert scratch_volume(pods["head"])["emptyDir"] == {"sizeLimit": "25Gi"}  # the head keeps the job's
    assert not validate(rj), validate(rj)
    problems = restricted_problems("sft workers", {"spec": pods["gpu"]})
    assert problems == (["sft workers: hostPath volume scratch"] if kind.startswith("hostPath") else [])


def test_the_margin_adds_to_a_fractional_size():
    values = {"storageMargin": "512Mi", "jobs": {"curate": {"storage": {"workers": {"sizeLimit": "1.5Gi"}}}}}
    (rj,) = by_kind(chart.objects(chart.render(values)), "RayJob")
    pods = dict(ray_pods(rj["spec"]))
    disk = {g: pod["containers"][0]["resources"]["limits"]["ephemeral-storage"] for g, pod in pods.items()}
    assert disk == {"cpu": "2Gi", "head": "20992Mi"}  # 1.5Gi + 512Mi; 20Gi + 512Mi


def sft_workers(storage):
    return {"jobs": {"sft": {"storage": {"workers": storage}}}}


@pytest.mark.parametrize(
    ("values", "named"),
    [
        (sft_workers({"kind": "nfs"}), "/jobs/sft/storage/workers/kind"),
        (sft_workers({"sizeLimit": "160GB"}), "/jobs/sft/storage/workers/sizeLimit"),
        (sft_workers({"sizeLimit": "0Gi"}), "/jobs/sft/storage/workers/sizeLimit"),
        (sft_workers({"sizelimit": "1Gi"}), "sizelimit"),
        (sft_workers({"kind": "hostPath", "path": "mnt/nvme"}), "/jobs/sft/storage/workers/path"),
        (sft_workers({"kind": "hostPath", "path": "/"}), "/jobs/sft/storage/workers/path"),
        (sft_workers({"medium": "HugePages"}), "/jobs/sft/storage/workers/medium"),
        (sft_workers({"kind": "hostPath", "type": "Socket"}), "/jobs/sft/storage/workers/type"),
        ({"jobs": {"eval": {"workers": {"gpu": {"storage": {"size": "1Ti"}}}}}}, "eval/workers/gpu/storage"),
        ({"jobs": {"curate": {"storage": {"head": None}}}}, "missing property 'head'"),
        ({"storageMargin": "10"}, "/storageMargin"),
    ],
)  # fmt: skip
def test_the_schema_rejects_bad_storage_values(values, named):
    with pytest.raises(ChartError, match=re.escape(named)):
        chart.render(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (sft_workers({"sizeLimit": None}), "sft.storage.workers.sizeLimit is required for kind emptyDir"),
        (sft_workers({"claimName": "x"}), "sft.storage.workers.claimName is not a setting of kind emptyDir"),
        (sft_workers({"kind": "pvc", "sizeLimit": None}), "kind pvc needs claimName (an existing claim) or"),
        (
            sft_workers({"kind": "pvc", "sizeLimit": None, "claimName": "a", "size": "1Ti"}),
            "jobs.sft.storage.workers: claimName mounts an existing claim",
        ),
        (
            sft_workers({"kind": "pvc", "sizeLimit": None, "storageClassName": "fast"}),
            'jobs.sft.storage.workers.size is required with storageClassName "fast"',
        ),
        (sft_workers({"kind": "hostPath", "sizeLimit": None}), "jobs.sft.storage.workers.path is required"),
        (
            sft_workers({"medium": "Memory", "sizeLimit": "460Gi"}),
            "medium Memory puts sizeLimit 460Gi in RAM, and with the 64Gi /dev/shm that is more than the "
            "pod's memory 512Gi",
        ),
        (
            {"jobs": {"eval": {"workers": {"gpu": {"storage": {"kind": "hostPath"}}}}}},
            "jobs.eval.workers.gpu.storage.path is required for kind hostPath",
        ),
        ({"env": {"TMPDIR": "/tmp"}}, "env.TMPDIR is set by the chart"),
    ],
    ids=["no-size", "claim-on-emptydir", "pvc-empty", "pvc-both", "class-no-size", "hostpath-no-path",
         "tmpfs-past-memory", "group-override", "env-overlap"],
)  # fmt: skip
def test_impossible_storage_values_fail_naming_the_value(values, message):
    with pytest.raises(ChartError, match=re.escape(message)):
        render_all(values)


def test_another_kind_in_a_values_file_drops_the_default_size():
    """Helm merges values into the defaults: a kind switch names the leftover setting, and null drops it."""
    with pytest.raises(ChartError, match=re.escape("set sizeLimit: null to drop theirs")):
        render_all(sft_workers({"kind": "pvc", "claimName": "star1-scratch"}))
    objs = chart.objects(
        render_all(sft_workers({"kind": "pvc", "claimName": "star1-scratch", "sizeLimit": None}))
    )
    (rj,) = [o for o in by_kind(objs, "RayJob") if o["metadata"]["name"] == "star1-sft"]
    vol = scratch_volume(dict(ray_pods(rj["spec"]))["gpu"])
    assert vol == {"name": "scratch", "persistentVolumeClaim": {"claimName": "star1-scratch"}}
