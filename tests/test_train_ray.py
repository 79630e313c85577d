"""Real Ray Train runs on the local cluster: SmolLM2 on 2 workers (DDP, gloo) with checkpoints in a moto S3
bucket, a killed worker and a killed submission both resuming from the last checkpoint; and DeepSpeed ZeRO-3
on 2 CPU workers resuming from its sharded checkpoint. Each scenario runs once (module fixtures); the tests
read what it left behind."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from star1.config import parse_config
from star1.manifest import manifest_path, read_manifest
from star1.store import Store
from star1.train.errors import TrainFailed, TrainSetupError
from star1.train.run import run_train
from tests.trackers import mlflow_server
from tests.train_helpers import RECORDS, smollm2_dir, tiny_llama

pytestmark = pytest.mark.slow


class KillAfterCheckpoint:
    """Progress callback that SIGKILLs one training worker once Ray Train has registered the checkpoint of
    `step` (a reported checkpoint counts only once the controller has registered it)."""

    def __init__(self, step: int, rank: int = 1, at_step: int | None = None) -> None:
        self.step, self.rank, self.at_step = step, rank, at_step or step
        self.killed_at: int | None = None  # the step the run had reached
        self.registered: int | None = None  # the newest registered checkpoint at the kill

    def __call__(self, snap: dict[str, Any]) -> None:
        reg = snap.get("registered")
        if self.killed_at is not None or reg is None or reg < self.step:
            return
        if not self.at_step <= snap["step"] < snap["total"]:
            return
        os.kill(snap["workers"][self.rank]["pid"], signal.SIGKILL)
        self.killed_at, self.registered = snap["step"], reg

    def resumed_ok(self, resumed: int, every: int) -> bool:
        """The restart resumed from a checkpoint at least as new as the one registered before the kill."""
        return self.registered is not None and resumed % every == 0 and resumed >= self.registered


def _history(store: Store, run: str) -> list[dict[str, Any]]:
    return store.read_json(f"train/{run}/metrics.json")["history"]


class TrackingLog(logging.Handler):
    """Collects star1.tracking's warnings while a module fixture trains."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> TrackingLog:
        logging.getLogger("star1.tracking").addHandler(self)
        return self

    def __exit__(self, *_: object) -> None:
        logging.getLogger("star1.tracking").removeHandler(self)


def _tracked(uri: str, run_id: str, store: Store, run: str, resumed_from: int) -> None:
    """One point per step and key; each the value the loop reported (metrics.json). Steps after the first
    resume point ran more than once (the tracker keeps the first run of a step, metrics.json the last):
    there the schedule's values are equal and the loss is equal within float noise."""
    from mlflow.tracking import MlflowClient

    from star1.train.tracker import METRICS

    history = {h["step"]: h for h in _history(store, run) if "loss" in h}
    client = MlflowClient(uri)
    for name, key in METRICS.items():
        points = client.get_metric_history(run_id, key)
        if name == "mfu" and history[1]["mfu"] is None:
            assert points == []
            continue
        assert sorted(p.step for p in points) == sorted(history), key
        for p in points:
            want = history[p.step][name]
            if p.step <= resumed_from or name in ("lr", "epoch"):
                assert p.value == want, (key, p.step)
            elif name in ("loss", "real_token_fraction"):
                assert p.value == pytest.approx(want, rel=1e-4), (key, p.step)


def _assert_counter_continues(history: list[dict[str, Any]], total: int) -> list[int]:
    """Steps 1..total each once, in order; each resume picks up right after its checkpoint. Returns the
    resume points the history kept (a restart from the same checkpoint replaces the later ones)."""
    steps = [h["step"] for h in history if "loss" in h]
    assert steps == list(range(1, total + 1))
    resumed = [k for k, h in enumerate(history) if h.get("event") == "resumed"]
    for i in resumed:
        at = history[i]["step"]
        assert at > 0 and history[i - 1]["step"] == at and history[i + 1]["step"] == at + 1
    return [history[i]["step"] for i in resumed]


# ------------------------------------------------------------------ SmolLM2, DDP, checkpoints on S3


@pytest.fixture(scope="module")
def smol_s3(ray_local, s3_server, tmp_path_factory):
    import boto3

    smollm2_dir()  # skip without the model package
    s3 = boto3.client("s3", endpoint_url=s3_server)
    bucket = "star1-train-smol"
    s3.create_bucket(Bucket=bucket)
    records = json.loads(RECORDS.read_text())[:2]
    s3.put_object(Bucket=bucket, Key="data/star1.json", Body=json.dumps(records).encode())
    store = Store.from_uri(f"s3://{bucket}/star1")
    server = mlflow_server(tmp_path_factory.mktemp("mlflow"))
    tracking_uri = server.__enter__()
    tb_local = tmp_path_factory.mktemp("tb")  # an s3:// store's event files are written here, then copied

    def config(max_failures: int, lr: float = 5e-5) -> Any:
        return parse_config(
            {
                "run_name": "smol",
                "store": {"uri": store.uri},
                "train": {
                    "model": "local",
                    "data": [f"s3://{bucket}/data/star1.json"],
                    # the whole set is one batch: every step sees the same batch
                    "recipe": {"effective_batch": 2, "epochs": 4, "lr": lr, "warmup_ratio": 0},
                    "checkpoint": {"every_steps": 2, "max_failures": max_failures},
                },
                "tracking": {"backend": ["mlflow", "tensorboard"], "mlflow": {"uri": tracking_uri},
                             "tensorboard": {"logdir": str(tb_local)}},
            }
        )  # fmt: skip

    # 1st submission: no restarts allowed; a worker dies after the checkpoint of step 2 → the run fails
    first = KillAfterCheckpoint(2)
    with pytest.raises(TrainFailed) as failed:
        run_train(config(max_failures=0), store, progress=first, log=print)
    after_failure = read_manifest(store, "train/smol")
    tracking_after_failure = store.read_json("train/smol/tracking.json")
    keys_after_failure = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    # 2nd submission, same name and config (max_failures is an execution knob): resumes from step 2; a
    # worker dies again once step 3 is done → FailureConfig restarts the group from the checkpoint of step 2
    second = KillAfterCheckpoint(2, at_step=3)
    result = run_train(config(max_failures=1), store, progress=second, log=print)
    yield SimpleNamespace(
        store=store, s3=s3, bucket=bucket, config=config, first=first, second=second, failed=failed.value,
        after_failure=after_failure, keys_after_failure=keys_after_failure, result=result,
        tracking_uri=tracking_uri, tracking_after_failure=tracking_after_failure, tb_local=tb_local,
    )  # fmt: skip
    server.__exit__(None, None, None)


def test_killed_submission_fails_cleanly_with_its_checkpoint_in_s3(smol_s3):
    assert smol_s3.first.killed_at is not None
    assert "rerun the same command to resume from the checkpoint of step" in str(smol_s3.failed)
    m = smol_s3.after_failure
    assert m.status == "incomplete" and m.failures["by_reason"] == {"training_failed": 1}
    keys = smol_s3.keys_after_failure
    ckpt = "star1/train/checkpoints/smol/checkpoint_000002/"
    assert {ckpt + f for f in ("model.pt", "optimizer.pt", "scheduler.pt", "train_state.json")} <= set(keys)
    assert "star1/train/smol/model/config.json" not in keys  # nothing exported: unfinished never looks done


def test_resubmission_and_worker_kill_both_resume(smol_s3):
    m = smol_s3.result.manifest
    assert m.status == "complete" and not smol_s3.result.skipped
    # resumed by the resubmission, then by FailureConfig after the second kill (which hit after step 3)
    assert m.counts["resumed_from"] == [2, 2] and m.counts["restarts"] == 1, m.counts
    assert smol_s3.first.resumed_ok(2, 2) and smol_s3.second.killed_at == 3
    assert _assert_counter_continues(_history(smol_s3.store, "smol"), 4) == [2]
    assert any("earlier submission" in n for n in m.notes)


def test_killed_and_resubmitted_run_is_one_tracker_run_with_each_step_once(smol_s3):
    """The failed 1st submission and the 2nd (resumed, then restarted after a worker kill) are one MLflow
    run on the real server, with one point per step and key."""
    from mlflow.tracking import MlflowClient

    before = smol_s3.tracking_after_failure["mlflow"]["run_id"]
    tracking = smol_s3.result.manifest.usage["tracking"]
    assert tracking["backends"]["mlflow"]["run_id"] == before and tracking["backends"]["mlflow"]["resumed"]
    assert tracking["failures"] == 0
    run = MlflowClient(smol_s3.tracking_uri).get_run(before)
    assert run.info.status == "FINISHED" and run.info.run_name == "train/smol"
    assert run.data.params["train.recipe.lr"] == "5e-05" and run.data.params["resolved.total_steps"] == "4"
    assert run.data.tags["link.model"] == smol_s3.result.url("model")
    assert run.data.tags["data_sha256"] == smol_s3.result.manifest.inputs[0]["sha256"]
    _tracked(smol_s3.tracking_uri, before, smol_s3.store, "smol", resumed_from=2)


def test_tensorboard_events_in_the_s3_store_read_back_with_the_runs_points(smol_s3, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rel = "tensorboard/train/smol"
    assert smol_s3.result.manifest.usage["tracking"]["backends"]["tensorboard"]["where"] == (
        smol_s3.store.url(rel)
    )
    for key in smol_s3.store.list(rel):  # what `tensorboard --logdir s3://…` reads
        (tmp_path / Path(key).name).write_bytes(smol_s3.store.read_bytes(key))
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    history = {h["step"]: h for h in _history(smol_s3.store, "smol") if "loss" in h}
    for key in ("train/loss", "train/lr", "train/epoch"):
        points = acc.Scalars(key)
        assert [p.step for p in points] == [1, 2, 3, 4], key
        name = key.split("/")[1]
        assert [p.value for p in points] == pytest.approx([history[s][name] for s in range(1, 5)], rel=1e-4)


def test_loss_goes_down_on_a_repeated_batch(smol_s3):
    losses = [h["loss"] for h in _history(smol_s3.store, "smol") if "loss" in h]
    assert losses[-1] < losses[0] * 0.9, losses
    t = smol_s3.result.manifest.usage["throughput"]
    assert t["tokens_per_s_per_worker"] > 0 and 0 < t["mfu"] < 1 and t["params"] > 130e6


def test_manifest_records_the_recipe_and_batch_geometry(smol_s3):
    m = smol_s3.result.manifest
    recipe = m.params["recipe"]
    assert (recipe["lr"], recipe["betas"], recipe["weight_decay"], recipe["schedule"]) == (
        5e-5, [0.9, 0.95], 1e-4, "cosine",
    )  # fmt: skip
    assert m.params["precision"] == "fp32" and m.params["strategy"] == "ddp"
    s = m.usage["scaling"]
    assert (s["workers"], s["per_device_batch"], s["grad_accum"], s["effective_batch"]) == (2, 1, 1, 2)
    assert m.counts["in"] == m.counts["out"] == 2 and m.counts["truncated"] == 0


def test_export_is_a_loadable_hf_model_and_retention_kept_one_checkpoint(smol_s3, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prefix = "star1/train/smol/model/"
    for key in [
        k for k in _keys(smol_s3) if k.startswith(prefix)
    ]:  # one GET per file (moto is slow on ranges)
        body = smol_s3.s3.get_object(Bucket=smol_s3.bucket, Key=key)["Body"].read()
        (tmp_path / key[len(prefix) :]).write_bytes(body)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= names
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    tok = AutoTokenizer.from_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False
    )
    enc = tok(text, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert out.shape[-1] == enc["input_ids"].shape[-1] + 4
    ckpt = re.compile(r"star1/train/checkpoints/smol/(checkpoint_\d+)/")
    ckpts = {m.group(1) for k in _keys(smol_s3) if (m := ckpt.match(k))}
    assert ckpts == {"checkpoint_000004"}  # keep: 1 (the paper's max_ckpts)


def _keys(ns: Any) -> list[str]:
    return [o["Key"] for o in ns.s3.list_objects_v2(Bucket=ns.bucket)["Contents"]]


def test_same_run_again_is_up_to_date_and_a_changed_one_is_refused(smol_s3):
    again = run_train(smol_s3.config(max_failures=1), smol_s3.store, log=print)
    assert again.skipped and again.manifest.fingerprint == smol_s3.result.manifest.fingerprint
    with pytest.raises(TrainSetupError, match=r"already has checkpoints .* from a different config"):
        run_train(smol_s3.config(max_failures=1, lr=2e-5), smol_s3.store, log=print)


# ------------------------------------------------------------------ DeepSpeed ZeRO-3 on CPU


@pytest.fixture(scope="module")
def zero3(ray_local, tmp_path_factory):
    model = tiny_llama(tmp_path_factory.mktemp("tiny") / "model")
    store = Store.from_uri(str(tmp_path_factory.mktemp("store")))
    not_a_dir = tmp_path_factory.mktemp("bad") / "file"
    not_a_dir.write_text("a file where TensorBoard's folder should be")

    def config(store: Store, num_workers: int = 2) -> Any:
        return parse_config(
            {
                "run_name": "z3",
                "store": {"uri": store.uri},
                "train": {
                    "model": str(model),
                    "data": [str(RECORDS)],
                    "strategy": "zero3",
                    "recipe": {"effective_batch": 2, "epochs": 10, "lr": 1e-3},  # 20 steps
                    "checkpoint": {"every_steps": 5, "max_failures": 1},
                    "scaling": {"num_workers": num_workers},
                },
                # MLflow: the embedded default store; TensorBoard: a bad path (it fails, the run goes on)
                "tracking": {"backend": ["mlflow", "tensorboard"], "tensorboard": {"logdir": str(not_a_dir)}},
            }
        )

    killer = KillAfterCheckpoint(5)
    with TrackingLog() as warnings:
        result = run_train(config(store), store, progress=killer, log=print)
    return SimpleNamespace(
        store=store, result=result, killer=killer, config=config, warnings=warnings.messages
    )


def test_zero3_resumes_from_its_sharded_checkpoint(zero3):
    m = zero3.result.manifest
    assert m.status == "complete" and m.params["strategy"] == "zero3"
    resumed = m.counts["resumed_from"]
    assert len(resumed) == 1 and zero3.killer.resumed_ok(resumed[0], 5) and m.counts["restarts"] == 1
    assert _assert_counter_continues(_history(zero3.store, "z3"), 20) == resumed
    root = Path(zero3.store.root) / "train/checkpoints/z3/checkpoint_000020/ds"
    shards = sorted(p.name for p in root.iterdir())
    assert "zero_pp_rank_0_mp_rank_00_optim_states.pt" in shards
    assert "zero_pp_rank_1_mp_rank_00_optim_states.pt" in shards  # each worker wrote its own shard


def test_zero3_run_is_in_the_embedded_mlflow_store_step_by_step(zero3):
    from mlflow.tracking import MlflowClient

    tracking = zero3.result.manifest.usage["tracking"]["backends"]["mlflow"]
    uri = f"sqlite:///{zero3.store.root}/mlflow/mlflow.db"
    assert tracking["where"] == uri and tracking["failures"] == tracking["dropped"] == 0
    run = MlflowClient(uri).get_run(tracking["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["train.strategy"] == "zero3"
    _tracked(
        uri,
        tracking["run_id"],
        zero3.store,
        "z3",
        resumed_from=zero3.result.manifest.counts["resumed_from"][0],
    )


def test_a_tracker_that_fails_is_counted_and_warned_once_and_the_run_completes(zero3):
    m = zero3.result.manifest
    assert m.status == "complete" and (Path(zero3.store.root) / "train/z3/model/config.json").exists()
    tb = m.usage["tracking"]["backends"]["tensorboard"]
    assert tb["failures"] >= 20 and m.usage["tracking"]["failures"] == tb["failures"] + tb["dropped"]
    assert len(zero3.warnings) == 1 and zero3.warnings[0].startswith("tracking: tensorboard ("), (
        zero3.warnings
    )


def test_zero3_export_gathers_the_full_model(zero3, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    path = Path(zero3.store.root) / "train/z3/model"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    assert sum(p.numel() for p in model.parameters()) == zero3.result.manifest.usage["throughput"]["params"]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_zero3_at_another_worker_count_stops_before_any_worker_starts(zero3, tmp_path):
    """The run's sharded checkpoint (2 workers), resubmitted on 1 worker after its driver was lost mid-run
    (checkpoints, no manifest): refused on the driver, naming both counts; nothing starts or changes."""
    root = tmp_path / "store"
    shutil.copytree(zero3.store.root, root)
    (root / manifest_path("train/z3")).unlink()
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    store, progress = Store.from_uri(str(root)), []
    t0 = time.time()
    with pytest.raises(TrainSetupError) as refused:
        run_train(zero3.config(store, num_workers=1), store, progress=progress.append, log=print)
    took = time.time() - t0
    msg = str(refused.value)
    assert "ZeRO checkpoint (step 20) written by 2 workers, but this submission would start 1 worker;" in msg
    assert "set train.scaling.num_workers to 2 to resume, or --force" in msg
    assert progress == []  # no progress board, no worker
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == before  # nothing written
    assert took < 60, took
