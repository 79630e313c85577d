"""Where the embedded MLflow store lives: beside a local store; for an s3:// store in a writable cache folder
(never the working directory, which the chart mounts read-only) and copied into the store at the end of
every run, so a job on a new pod continues the same tracker runs. And the one line `star1 pipeline` prints
to say where its runs are."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from star1.config import parse_config
from star1.pipeline import tracking_line
from star1.store import Store
from star1.tracking import open_run


def _history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key))


def test_s3_store_keeps_its_embedded_db_in_the_bucket_and_a_new_pod_continues_it(
    s3_server, tmp_path, monkeypatch
):
    import boto3

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="track-db")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    workdir = tmp_path / "workdir"  # the pod's working directory: nothing may be written there
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    store = Store.from_uri("s3://track-db/runs")
    cfg = parse_config({"store": {"uri": store.uri}})

    monkeypatch.setenv("STAR1_CACHE", str(tmp_path / "pod1"))
    first = open_run(cfg, kind="train", name="r", store=store, folder="train/r")
    for step in (1, 2, 3):
        first.log_metrics({"train/loss": 1.0 / step}, step)
    out = first.end("FAILED")
    assert (
        out["failures"] == 0 and out["backends"]["mlflow"]["where"] == "s3://track-db/runs/mlflow/mlflow.db"
    )
    assert store.exists("mlflow/mlflow.db") and list(workdir.iterdir()) == []

    monkeypatch.setenv("STAR1_CACHE", str(tmp_path / "pod2"))  # a new pod: an empty cache
    again = open_run(cfg, kind="train", name="r", store=store, folder="train/r")
    for step in (3, 4, 5):
        again.log_metrics({"train/loss": 1.0 / step}, step)
    second = again.end()
    run_id = out["backends"]["mlflow"]["run_id"]
    assert second["backends"]["mlflow"]["run_id"] == run_id and second["backends"]["mlflow"]["resumed"]

    copy = tmp_path / "copy.db"
    store.copy_to_local("mlflow/mlflow.db", copy)  # what the bucket holds
    uri = f"sqlite:///{copy}"
    assert _history(uri, run_id, "train/loss") == [(s, 1.0 / s) for s in range(1, 6)]
    assert MlflowClient(uri).get_run(run_id).info.status == "FINISHED"
    assert list(workdir.iterdir()) == []


def test_pipeline_prints_one_line_with_where_and_how_to_open_it(tmp_path, monkeypatch):
    from importlib.metadata import version

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    store = Store.from_uri(str(tmp_path / "artifacts"))
    line = tracking_line(parse_config({"store": {"uri": store.uri}}), store)
    db = tmp_path / "artifacts" / "mlflow" / "mlflow.db"
    assert line == (
        f"tracking: MLflow store {Path('artifacts/mlflow/mlflow.db')} — open it: uvx --from "
        f"mlflow=={version('mlflow-skinny')} mlflow ui --backend-store-uri sqlite:///{db}"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://bob:s3cret@mlflow.example")
    both = parse_config({"store": {"uri": store.uri}, "tracking": {"backend": ["mlflow", "tensorboard"]}})
    assert tracking_line(both, store) == (
        "tracking: MLflow at https://***@mlflow.example, experiment star1; TensorBoard: tensorboard "
        f"--logdir {store.url('tensorboard')}"
    )
    assert tracking_line(parse_config({"tracking": {"backend": "none"}}), store) is None
