"""Whether a resubmitted run may resume from its checkpoints, decided on the driver without Ray: the same
config fingerprint, and a checkpoint laid out for the workers about to start — a ZeRO checkpoint (one shard
per rank) only on the world size that wrote it, a DDP checkpoint (full state on rank 0) on any."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from star1.config import parse_config
from star1.store import Store
from star1.train.checkpoints import (
    RAY_SNAPSHOT,
    RUN_MARKER,
    STATE_FILE,
    CheckpointShape,
    guard_checkpoints,
    saved_shape,
    zero_stage,
)
from star1.train.cluster import resolve_scaling
from star1.train.errors import TrainSetupError
from star1.train.run import Prepared, params_of

FP = "fp-1"


def _checkpoint(
    root: Path, step: int, shape: dict | None, shards: int = 0, run: str = "r", registered: bool = True
) -> None:
    """A checkpoint folder as the workers leave it: train_state.json (rank 0), ZeRO shards per rank."""
    d = root / run / f"checkpoint_{step:06d}"
    (d / "ds").mkdir(parents=True)
    state = {"step": step, "fingerprint": FP, "history": [], **({"shape": shape} if shape else {})}
    (d / STATE_FILE).write_text(json.dumps(state))
    for rank in range(shards):
        (d / "ds" / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").write_bytes(b"x")
    (root / run / RUN_MARKER).write_text(json.dumps({"fingerprint": FP}))
    if registered:
        snap = {"latest_checkpoint_result": {"checkpoint_dir_name": d.name}}
        (root / run / RAY_SNAPSHOT).write_text(json.dumps(snap))


def _guard(root: Path, shape: CheckpointShape, auto: bool = False, force: bool = False) -> tuple[bool, list]:
    logged: list[str] = []
    resumed = guard_checkpoints(Store.from_uri(str(root)), "r", FP, force, logged.append, shape, auto)
    return resumed, logged


Z3 = {"strategy": "zero3", "zero_stage": 3, "world": 2}


def test_zero3_checkpoint_at_another_world_size_is_refused_naming_both_counts(tmp_path):
    _checkpoint(tmp_path, 5, Z3, shards=2)
    marker = (tmp_path / "r" / RUN_MARKER).read_text()
    with pytest.raises(TrainSetupError) as e:
        _guard(tmp_path, CheckpointShape("zero3", 3, 4), auto=True)
    msg = str(e.value)
    assert "ZeRO checkpoint (step 5) written by 2 workers" in msg
    assert "would start 4 workers (num_workers: auto on this cluster)" in msg
    assert "set train.scaling.num_workers to 2 to resume, or --force" in msg
    assert (tmp_path / "r" / RUN_MARKER).read_text() == marker  # refused before anything changed


def test_zero3_checkpoint_at_its_own_world_size_resumes(tmp_path):
    _checkpoint(tmp_path, 5, Z3, shards=2)
    resumed, logged = _guard(tmp_path, CheckpointShape("zero3", 3, 2))
    assert resumed and any("resuming run 'r' from its checkpoint of step 5" in m for m in logged)


def test_force_discards_a_checkpoint_of_another_world_size(tmp_path):
    _checkpoint(tmp_path, 5, Z3, shards=2)
    resumed, _ = _guard(tmp_path, CheckpointShape("zero3", 3, 1), force=True)
    assert not resumed and not (tmp_path / "r" / "checkpoint_000005").exists()


def test_ddp_checkpoint_resumes_at_another_world_size(tmp_path):
    _checkpoint(tmp_path, 4, {"strategy": "ddp", "zero_stage": 0, "world": 2})
    resumed, logged = _guard(tmp_path, CheckpointShape("ddp", 0, 3))
    assert resumed
    assert any("DDP checkpoint written by 2 workers on 3" in m for m in logged)


def test_checkpoint_of_another_zero_stage_is_refused(tmp_path):
    # an own deepspeed_config changed from stage 3 to 2 under the same path (the fingerprint keeps the path)
    _checkpoint(tmp_path, 5, Z3, shards=2)
    with pytest.raises(TrainSetupError, match=r"written with zero3 \(ZeRO stage 3\), but this config trains"):
        _guard(tmp_path, CheckpointShape("zero3", 2, 2))


def test_older_checkpoints_without_a_shape_count_their_shards(tmp_path):
    _checkpoint(tmp_path, 5, None, shards=2)
    assert saved_shape(Store.from_uri(str(tmp_path)), "r") == (5, CheckpointShape(None, None, 2))
    with pytest.raises(TrainSetupError, match="written by 2 workers, but this submission would start 1"):
        _guard(tmp_path, CheckpointShape("zero3", 3, 1))
    ddp = tmp_path / "ddp"
    _checkpoint(ddp, 4, None)  # no shards: DDP, loadable by any number of workers
    assert _guard(ddp, CheckpointShape("ddp", 0, 5))[0]


def test_the_registered_checkpoint_decides_else_the_newest(tmp_path):
    _checkpoint(tmp_path, 5, Z3, shards=2)
    _checkpoint(tmp_path, 10, {**Z3, "world": 4}, shards=4, registered=False)  # not registered (yet)
    store = Store.from_uri(str(tmp_path))
    assert saved_shape(store, "r") == (5, CheckpointShape("zero3", 3, 2))
    (tmp_path / "r" / RAY_SNAPSHOT).unlink()
    assert saved_shape(store, "r") == (10, CheckpointShape("zero3", 3, 4))
    assert saved_shape(store, "other") is None


def test_zero_stage_of_the_shipped_and_own_configs():
    assert zero_stage("ddp", None) == 0
    assert zero_stage("zero3", None) == 3 and zero_stage("zero3_offload", None) == 3
    assert zero_stage("zero3", {"zero_optimization": {"stage": 2}}) == 2


def test_auto_workers_keep_the_checkpoints_world_size_when_the_cluster_holds_it():
    cfg = parse_config(
        {"train": {"model": "m", "scaling": {"num_workers": "auto"}, "recipe": {"effective_batch": 12}}}
    )
    workers, _, notes = resolve_scaling(cfg.train, {"CPU": 8.0}, keep=4)
    assert workers == 4 and "as the checkpoint it resumes (the cluster holds 8)" in notes[0]
    assert resolve_scaling(cfg.train, {"CPU": 2.0}, keep=4)[0] == 2  # too small: the guard refuses it
    assert resolve_scaling(cfg.train, {"CPU": 8.0}, keep=5)[0] == 6  # 5 does not divide 12
    fixed = parse_config({"train": {"model": "m", "recipe": {"effective_batch": 12}}})
    assert resolve_scaling(fixed.train, {"CPU": 8.0}, keep=4)[0] == 2  # an explicit count is kept as asked


def test_the_worker_count_stays_out_of_the_fingerprint(tmp_path):
    """Scaling is an execution knob: a finished run resubmitted with another worker count is up to date."""
    (tmp_path / "config.json").write_text("{}")
    prep = Prepared(tmp_path, "template", [], None, None, [])  # type: ignore[arg-type]

    def params(**scaling) -> dict:
        train = {"model": "m", "strategy": "zero3", "recipe": {"effective_batch": 12}, "scaling": scaling}
        return params_of(parse_config({"train": train}).train, prep, "fp32")

    assert params(num_workers=2) == params(num_workers=4) == params(num_workers="auto")
