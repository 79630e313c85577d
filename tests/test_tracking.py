"""The tracking module against real trackers, without Ray: an embedded sqlite MLflow store and a real
`mlflow server`, TensorBoard event files read back by tensorboard's reader, W&B offline under a guard that
counts connection attempts, and trackers that are down or hang (the caller never waits on them)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from star1.config import ConfigError, load_config, parse_config
from star1.store import Store
from star1.tracking import flatten, open_run, redact
from star1.tracking.mlflow_backend import embedded_uri
from tests.trackers import Listener, closed_port_url, mlflow_server

POINTS = [{"train/loss": 2.0 / s, "train/lr": 1e-5 * s, "train/epoch": 1 + s // 3} for s in range(1, 7)]


def _cfg(store: Store, **tracking) -> object:
    return parse_config({"store": {"uri": store.uri}, "tracking": tracking})


def _log(run, points, first=1):
    for i, p in enumerate(points):
        run.log_metrics(p, first + i)


def _history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    return sorted((m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


# ------------------------------------------------------------------ config


def test_tracking_config_is_strict_and_defaults_to_mlflow(tmp_path):
    cfg = parse_config({})
    assert cfg.tracking.backends == ["mlflow"] and cfg.tracking.mlflow.uri is None
    assert parse_config({"tracking": {"backend": "none"}}).tracking.backends == []
    both = parse_config({"tracking": {"backend": ["mlflow", "tensorboard"]}})
    assert both.tracking.backends == ["mlflow", "tensorboard"]
    for bad, field in [
        ({"tracking": {"mlflow": {"url": "x"}}}, "tracking.mlflow.url"),
        ({"tracking": {"backend": "neptune"}}, "tracking.backend"),
        ({"tracking": {"backend": ["mlflow", "mlflow"]}}, "tracking.backend"),
        ({"tracking": {"wandb": {"mode": "sometimes"}}}, "tracking.wandb.mode"),
    ]:
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            parse_config(bad)
    path = tmp_path / "run.yaml"
    path.write_text("tracking:\n  backend: tensorboard\n  tensorboard: {logdir: tb}\n")
    assert load_config(path).tracking.tensorboard.logdir == "tb"


def test_params_are_flattened_within_mlflows_limits():
    flat = flatten({"train": {"recipe": {"lr": 1e-5, "betas": [0.9, 0.95]}, "none": None}, "x": "y" * 7000})
    assert flat["train.recipe.lr"] == "1e-05" and flat["train.recipe.betas"] == "[0.9, 0.95]"
    assert "train.none" not in flat and len(flat["x"]) == 6000 and flat["x"].endswith("…(truncated)")


def test_secrets_in_uris_are_redacted():
    assert (
        redact("https://bob:s3cret@mlflow.example/x?token=abc&a=1")
        == "https://***@mlflow.example/x?token=***&a=1"
    )


# ------------------------------------------------------------------ MLflow


def test_embedded_store_keeps_every_point_and_a_rerun_continues_the_same_run(tmp_path):
    store = Store.from_uri(str(tmp_path / "store"))
    cfg = _cfg(store)
    run = open_run(cfg, kind="train", name="r1", store=store, folder="train/r1")
    run.log_params({"train": {"recipe": {"lr": 1e-5}}})
    _log(run, POINTS[:4])
    run.log_link("model", "s3://bucket/train/r1/model")
    run.log_json("manifest.json", {"status": "incomplete"})
    run.set_tags({"data_sha256": "ab" * 32})
    first = run.end("FAILED")
    run_id = first["backends"]["mlflow"]["run_id"]
    assert first["failures"] == 0 and not first["backends"]["mlflow"]["resumed"]
    uri = embedded_uri(store)
    assert uri == f"sqlite:///{tmp_path / 'store' / 'mlflow' / 'mlflow.db'}"

    again = open_run(cfg, kind="train", name="r1", store=store, folder="train/r1")
    _log(again, POINTS[2:], first=3)  # a resume repeats steps 3 and 4
    again.log_params({"train": {"recipe": {"lr": 1e-5}}, "more": 1})
    second = again.end()
    assert second["backends"]["mlflow"] == {**first["backends"]["mlflow"], "resumed": True}

    from mlflow.tracking import MlflowClient

    r = MlflowClient(uri).get_run(run_id)
    assert r.info.status == "FINISHED" and r.info.run_name == "train/r1"
    assert r.data.params == {"train.recipe.lr": "1e-05", "more": "1"}
    assert (
        r.data.tags["link.model"] == "s3://bucket/train/r1/model" and r.data.tags["data_sha256"] == "ab" * 32
    )
    assert _history(uri, run_id, "train/loss") == [(s, 2.0 / s) for s in range(1, 7)]
    local = Path(MlflowClient(uri).download_artifacts(run_id, "manifest.json", str(tmp_path)))
    assert json.loads(local.read_text()) == {"status": "incomplete"}
    saved = json.loads((tmp_path / "store/train/r1/tracking.json").read_text())
    assert saved["mlflow"]["run_id"] == run_id and saved["mlflow"]["steps"]["train/loss"] == 6


def test_a_real_mlflow_server_gets_the_same_points(server, tmp_path):
    store = Store.from_uri(str(tmp_path))
    cfg = _cfg(store, mlflow={"uri": server, "experiment": "unit"})
    run = open_run(cfg, kind="eval", name="e1", store=store, folder="eval/e1")
    _log(run, POINTS)
    run.log_text("notes/summary.md", "# ok\n")
    out = run.end()
    assert out["failures"] == 0 and out["backends"]["mlflow"]["where"] == server
    run_id = out["backends"]["mlflow"]["run_id"]
    for key in POINTS[0]:
        assert _history(server, run_id, key) == [(s, p[key]) for s, p in enumerate(POINTS, 1)]
    assert not (tmp_path / "mlflow").exists()  # nothing embedded when a server is named


def test_env_tracking_uri_is_used_when_the_config_names_none(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    store = Store.from_uri(str(tmp_path))
    out = open_run(_cfg(store), kind="collect", name="c", store=store).end()
    assert out["backends"]["mlflow"]["where"] == server and out["failures"] == 0


# ------------------------------------------------------------------ TensorBoard


def test_tensorboard_events_read_back_with_the_same_points_after_a_resume(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    store = Store.from_uri(str(tmp_path / "store"))
    cfg = _cfg(store, backend="tensorboard")
    run = open_run(cfg, kind="train", name="tb", store=store, folder="train/tb")
    _log(run, POINTS[:4])
    run.log_params({"a": {"b": 1}})
    run.end("FAILED")
    again = open_run(cfg, kind="train", name="tb", store=store, folder="train/tb")
    _log(again, POINTS[1:], first=2)
    assert again.end()["failures"] == 0
    acc = EventAccumulator(str(tmp_path / "store/tensorboard/train/tb"))
    acc.Reload()
    for key in POINTS[0]:
        got = [(e.step, e.value) for e in acc.Scalars(key)]
        assert [s for s, _ in got] == list(range(1, 7))
        assert [v for _, v in got] == pytest.approx([p[key] for p in POINTS], rel=1e-6)


def test_tensorboard_on_an_s3_store_is_copied_into_it(s3_server, tmp_path, monkeypatch):
    import boto3

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="tb-track")
    monkeypatch.chdir(tmp_path)
    store = Store.from_uri("s3://tb-track/runs")
    run = open_run(
        _cfg(store, backend="tensorboard"), kind="train", name="s3", store=store, folder="train/s3"
    )
    _log(run, POINTS)
    out = run.end()
    assert (
        out["failures"] == 0
        and out["backends"]["tensorboard"]["where"] == "s3://tb-track/runs/tensorboard/train/s3"
    )
    events = [p for p in store.list("tensorboard/train/s3") if "tfevents" in p]
    assert events and store.read_bytes(events[0]) == (tmp_path / events[0]).read_bytes()
    assert store.exists("train/s3/tracking.json")


# ------------------------------------------------------------------ W&B


def test_wandb_offline_writes_run_files_and_never_touches_the_network(tmp_path, monkeypatch):
    guard = Listener()  # every URL W&B could reach, and every proxy, points here
    try:
        monkeypatch.delenv("WANDB_API_KEY", raising=False)
        for var in ("WANDB_BASE_URL", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
            monkeypatch.setenv(var, guard.url)
        for var in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(var, raising=False)
        store = Store.from_uri(str(tmp_path / "store"))
        cfg = _cfg(store, backend="wandb", wandb={"dir": str(tmp_path / "wandb"), "project": "p"})
        run = open_run(cfg, kind="train", name="w", store=store, folder="train/w")
        run.log_params({"lr": 1e-5})
        _log(run, POINTS)
        run.log_link("model", "s3://b/model")
        out = run.end()
        assert out["failures"] == 0, out
        run_id = out["backends"]["wandb"]["run_id"]
        assert out["backends"]["wandb"]["where"].startswith("offline p in ")
        files = list((tmp_path / "wandb" / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
        assert files and files[0].stat().st_size > 0
        assert guard.accepted == 0
    finally:
        guard.close()


# ------------------------------------------------------------------ trackers that are down or hang


@pytest.mark.parametrize("kind", ["down", "hung"])
def test_a_tracker_that_is_down_or_hangs_never_blocks_and_is_counted_and_warned_once(
    kind, tmp_path, caplog, monkeypatch
):
    hung = Listener() if kind == "hung" else None
    uri = hung.url if hung else closed_port_url()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a refused connection fails at once
    store = Store.from_uri(str(tmp_path))
    cfg = _cfg(store, mlflow={"uri": f"{uri.replace('http://', 'http://bob:s3cret@')}"}, flush_timeout_s=1.0)
    caplog.set_level(logging.WARNING, logger="star1.tracking")
    try:
        t0 = time.perf_counter()
        run = open_run(cfg, kind="train", name="x", store=store, folder="train/x")
        worst = 0.0
        for s, p in enumerate(POINTS * 50, 1):  # 300 steps
            t = time.perf_counter()
            run.log_metrics(p, s)
            worst = max(worst, time.perf_counter() - t)
        calls = time.perf_counter() - t0
        out = run.end()
        took = time.perf_counter() - t0
        assert worst < 0.05 and calls < 1.0, (worst, calls)
        assert took < 5.0  # the flush waits flush_timeout_s (1 s), not for the tracker
        assert out["failures"] >= 1
        warnings = [r.getMessage() for r in caplog.records if r.name == "star1.tracking"]
        assert len(warnings) == 1 and "mlflow" in warnings[0] and "127.0.0.1" in warnings[0], warnings
        assert "s3cret" not in warnings[0]
    finally:
        if hung:
            hung.close()


def test_a_full_queue_drops_and_counts(tmp_path):
    hung = Listener()
    try:
        store = Store.from_uri(str(tmp_path))
        cfg = _cfg(store, mlflow={"uri": hung.url}, queue_size=10, flush_timeout_s=0.2)
        run = open_run(cfg, kind="train", name="q", store=store)
        _log(run, POINTS * 10)
        out = run.end()
        assert out["backends"]["mlflow"]["dropped"] >= 50 and out["failures"] >= 50
    finally:
        hung.close()


def test_backend_none_is_a_no_op(tmp_path):
    store = Store.from_uri(str(tmp_path))
    run = open_run(_cfg(store, backend="none"), kind="train", name="n", store=store, folder="train/n")
    _log(run, POINTS)
    assert not run.enabled and run.end() == {"backends": {}, "failures": 0}
    assert not (tmp_path / "train").exists() and not (tmp_path / "mlflow").exists()
