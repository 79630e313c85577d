"""Where a model comes from: a local folder, `store:<folder>` (a `star1 train` output) on a local or S3
store, `s3://` (downloaded once into the cache), a hub id; and the hashes that identify it."""

from __future__ import annotations

import json

import pytest

from star1.config import ModelConfig
from star1.evals.engines.model_source import ModelSourceError, model_hashes, resolve_model
from star1.store import Store

FILES = {
    "config.json": json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 8}),
    "tokenizer_config.json": json.dumps({"chat_template": "{{ messages }}"}),
    "model.safetensors": "weights-v1",
}


def _put(store: Store, folder: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        store.write_bytes(f"{folder}/{name}", text.encode())


def test_store_folder_local_and_hashes(tmp_path):
    store = Store.from_uri(str(tmp_path / "store"))
    _put(store, "train/model", FILES)
    m = resolve_model(ModelConfig(path="store:train/model"), store)
    assert m.local_dir == tmp_path / "store" / "train" / "model" and m.given == "store:train/model"
    h = model_hashes(m, "{{ messages }}")
    assert all(h[k] for k in ("model_hash", "config_hash", "tokenizer_hash", "chat_template_hash"))
    store.write_bytes("train/model/model.safetensors", b"weights-v2")  # new weights, new hash
    assert model_hashes(m, "{{ messages }}")["model_hash"] != h["model_hash"]
    assert model_hashes(m, "{{ messages }}")["tokenizer_hash"] == h["tokenizer_hash"]


def test_s3_model_is_downloaded_once(bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("STAR1_CACHE", str(tmp_path / "cache"))
    s3 = Store.from_uri(f"s3://{bucket}/runs/r1")
    _put(s3, "train/model", FILES)
    via_store = resolve_model(ModelConfig(path="store:train/model"), s3)
    direct = resolve_model(ModelConfig(path=f"s3://{bucket}/runs/r1/train/model"), None)
    for m in (via_store, direct):
        assert m.local_dir is not None and (m.local_dir / "model.safetensors").read_text() == "weights-v1"
        assert m.source.startswith("s3://")  # Ray engines load the URI themselves
    assert via_store.local_dir == direct.local_dir  # one cache entry per URI
    s3.write_bytes("train/model/model.safetensors", b"changed")
    again = resolve_model(ModelConfig(path=f"s3://{bucket}/runs/r1/train/model"), None)
    assert (again.local_dir / "model.safetensors").read_text() == "weights-v1"  # cached, not re-fetched


def test_bad_model_paths(tmp_path, bucket):
    store = Store.from_uri(str(tmp_path))
    with pytest.raises(ModelSourceError, match=r"has no config\.json"):
        resolve_model(ModelConfig(path="store:train/model"), store)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match=r"no config\.json"):
        resolve_model(ModelConfig(path=str(tmp_path / "empty")), None)
    with pytest.raises(ModelSourceError, match="does not exist"):
        resolve_model(ModelConfig(path=str(tmp_path / "missing")), None)
    with pytest.raises(ModelSourceError, match="not a Hugging Face model folder"):
        resolve_model(ModelConfig(path=f"s3://{bucket}/nothing-here"), None)
    hub = resolve_model(ModelConfig(path="meta-llama/Llama-Guard-3-8B"), None)
    assert hub.local_dir is None and hub.source == "meta-llama/Llama-Guard-3-8B"
    assert model_hashes(hub, None)["model_hash"] is None


def test_pipeline_finds_the_finetuned_model_its_train_run_published(tmp_path):
    from star1.config import parse_config
    from star1.pipeline import finetuned_model
    from star1.stage_run import StageRun

    store = Store.from_uri(str(tmp_path))
    eval_only = parse_config({"eval": {"model": {"path": "builtin:smollm2"}, "pipeline": {}}})
    assert finetuned_model(eval_only, store) is None  # no train section, no folder named: base model only
    cfg = parse_config(
        {
            "run_name": "r7",
            "train": {"model": "local"},
            "eval": {"model": {"path": "builtin:smollm2"}, "pipeline": {}},
        }
    )
    assert finetuned_model(cfg, store) is None
    _put(store, "train/r7/model", FILES)
    assert finetuned_model(cfg, store) is None  # files without a complete train manifest: not yet
    with StageRun(store, "train/r7", "test", {}, [], ["train/r7/model/config.json"], force=True) as run:
        run.incomplete({}, {}, failures={"rows": 1})
    assert finetuned_model(cfg, store) is None
    with StageRun(store, "train/r7", "test", {}, [], ["train/r7/model/config.json"], force=True) as run:
        run.complete({"model": {"uri": store.url("train/r7/model")}}, {})
    assert finetuned_model(cfg, store) == "store:train/r7/model"  # a manifest without `path`: the layout's
    _put(store, "train/r7/hf", FILES)
    with StageRun(store, "train/r7", "test", {}, [], ["train/r7/hf/config.json"], force=True) as run:
        run.complete({"model": {"uri": store.url("train/r7/hf"), "path": "train/r7/hf"}}, {})
    assert finetuned_model(cfg, store) == "store:train/r7/hf"  # the folder the run published
    named = cfg.model_copy(deep=True)
    named.eval.pipeline.finetuned = "train/r7/model/"  # an explicit folder: the same run's manifest decides
    assert finetuned_model(named, store) == "store:train/r7/model"
