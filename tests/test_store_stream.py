"""Streaming copies from the store (issue 19): an object many chunks long lands byte for byte with the hash
the old whole-object read gave, an interrupted copy leaves nothing at the destination and resumes, the model
hash is the same whether the weights were downloaded, streamed or left in the store (ray backend), and
train's `prepare` fetches only a model's small files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from star1.config import ModelConfig
from star1.evals.engines.model_source import model_hashes, resolve_model
from star1.store import Store, mirror_to_local

CHUNK = 64 << 10
BLOB = bytes(range(256)) * 1200 + b"tail"  # ~300 KiB: five chunks and a bit


def _old_model_hash(files: dict[str, bytes]) -> str:
    """The model hash as computed before streaming: sha256 of {rel: sha256(bytes)} over the weight files."""
    listing = {rel: hashlib.sha256(b).hexdigest() for rel, b in files.items() if rel.endswith(".safetensors")}
    return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()


@pytest.fixture
def s3_model(bucket):
    files = {
        "config.json": json.dumps({"architectures": ["LlamaForCausalLM"]}).encode(),
        "tokenizer_config.json": json.dumps({"chat_template": "{{ messages }}"}).encode(),
        "model-00001-of-00002.safetensors": BLOB,
        "model-00002-of-00002.safetensors": BLOB[::-1],
    }
    store = Store.from_uri(f"s3://{bucket}/models/m")
    for rel, data in files.items():
        store.write_bytes(rel, data)
    return store, files


def test_multi_chunk_object_copies_identical_bytes_and_hash(s3_model, tmp_path):
    store, _ = s3_model
    rel = "model-00001-of-00002.safetensors"
    dest = tmp_path / "out" / "shard.safetensors"
    digest = store.copy_to_local(rel, dest, chunk=CHUNK)
    assert dest.read_bytes() == store.read_bytes(rel) == BLOB
    assert digest == hashlib.sha256(BLOB).hexdigest() == store.sha256(rel, chunk=CHUNK)
    assert [p.name for p in dest.parent.iterdir()] == ["shard.safetensors"]  # no temp file left


def test_interrupted_copy_leaves_no_partial_file_and_resumes(s3_model, tmp_path, monkeypatch):
    store, files = s3_model
    real = Store._read_chunks

    def dies_after_one_chunk(self, rel, chunk):
        for i, block in enumerate(real(self, rel, chunk)):
            if i == 1 and rel.startswith("model-00002"):
                raise ConnectionError("network gone mid-object")
            yield block

    monkeypatch.setattr(Store, "_read_chunks", dies_after_one_chunk)
    dest = tmp_path / "shard"
    with pytest.raises(ConnectionError):
        store.copy_to_local("model-00002-of-00002.safetensors", dest, chunk=CHUNK)
    assert list(tmp_path.iterdir()) == []  # neither the destination nor a temp file

    folder = tmp_path / "model"
    with pytest.raises(ConnectionError):
        mirror_to_local(store, folder, chunk=CHUNK)
    assert not folder.exists()  # only `model.partial`, with the files finished before the failure
    done = sorted(p.name for p in (tmp_path / "model.partial").iterdir())
    assert done == ["config.json", "model-00001-of-00002.safetensors"]

    (tmp_path / "model.partial" / ".tmp-killed-model-00002-of-00002.safetensors").write_bytes(b"half")
    fetched: list[str] = []

    def counts(self, rel, chunk):
        fetched.append(rel)
        yield from real(self, rel, chunk)

    monkeypatch.setattr(Store, "_read_chunks", counts)
    digests = mirror_to_local(store, folder, chunk=CHUNK)
    assert not list(folder.glob(".tmp-*"))  # a SIGKILLed copy's half file is not carried along
    assert fetched == ["model-00002-of-00002.safetensors", "tokenizer_config.json"]  # the rest, not again
    assert digests == {rel: hashlib.sha256(b).hexdigest() for rel, b in files.items()}
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name != ".complete"} == files
    assert mirror_to_local(store, folder) == {}  # complete: nothing fetched


def test_model_hash_is_the_old_value_downloaded_or_left_in_the_store(s3_model, tmp_path, monkeypatch):
    store, files = s3_model
    monkeypatch.setenv("STAR1_CACHE", str(tmp_path / "cache"))
    ray = resolve_model(ModelConfig(path=store.uri, backend="ray"), None)
    assert ray.local_dir is not None and ray.source == store.uri
    assert sorted(p.name for p in ray.local_dir.iterdir()) == [
        ".complete",
        "config.json",
        "tokenizer_config.json",
    ]
    h_ray = model_hashes(ray, "{{ messages }}")

    local = resolve_model(ModelConfig(path=store.uri), None)
    assert (local.local_dir / "model-00001-of-00002.safetensors").read_bytes() == BLOB
    h_local = model_hashes(local, "{{ messages }}")
    assert h_local == h_ray and h_local["model_hash"] == _old_model_hash(files)

    # the download hashed as it streamed: model_hashes reads no weight file again
    monkeypatch.setattr("star1.evals.engines.model_source.file_sha256", _no_rehash)
    fresh = resolve_model(ModelConfig(path=store.uri), None)
    assert model_hashes(fresh, "{{ messages }}")["model_hash"] == h_local["model_hash"]
    # and once the whole model is cached, the ray backend uses it rather than its small-files copy
    assert resolve_model(ModelConfig(path=store.uri, backend="ray"), None).local_dir == local.local_dir


def _no_rehash(path: Path, chunk: int = 0) -> str:
    raise AssertionError(f"{path} hashed again")


def test_train_prepare_fetches_only_the_small_files(bucket, tmp_path, monkeypatch):
    from star1.config import parse_config
    from star1.train.run import prepare
    from tests.train_helpers import RECORDS, tiny_llama

    model = tiny_llama(tmp_path / "tiny")
    monkeypatch.setenv("STAR1_CACHE", str(tmp_path / "cache"))  # after tiny_llama: it reads SmolLM2's cache
    s3 = Store.from_uri(f"s3://{bucket}/base")
    for p in sorted(model.iterdir()):
        s3.write_bytes(p.name, p.read_bytes())
    assert any(r.endswith(".safetensors") for r in s3.list())

    fetched: list[str] = []
    real = Store._read_chunks

    def counts(self, rel, chunk):
        fetched.append(rel)
        yield from real(self, rel, chunk)

    monkeypatch.setattr(Store, "_read_chunks", counts)
    cfg = parse_config(
        {
            "run_name": "t",
            "store": {"uri": str(tmp_path / "s")},
            "train": {"model": s3.uri, "data": [str(RECORDS)], "recipe": {"effective_batch": 2}},
        }
    )
    prep = prepare(cfg, cfg.train, Store.from_uri(str(tmp_path / "s")), print)
    assert prep.stats.samples == 4 and prep.template
    assert fetched and not any(r.endswith(".safetensors") for r in fetched)
    landed = sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert "config.json" in landed and "tokenizer.json" in landed
    assert not any(n.endswith(".safetensors") for n in landed)

    # a worker asks for the whole model: it streams the weights into its node's cache itself
    from star1.train.models import resolve_model as train_model

    full = train_model(s3.uri)
    assert (full / "model.safetensors").read_bytes() == (model / "model.safetensors").read_bytes()
