"""The context (max_model_len) an in-process vLLM engine starts with: configured, else what the run's
requests need (longest rendered prompt + max_tokens) capped by the model's maximum — and the pool replacing
an engine too small for a later role's requests. No vLLM: the engine's start is stubbed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from star1.config import ModelConfig
from star1.evals.engines import EnginePool, GenRequest, ModelHandle, Sampling, vllm_local
from star1.evals.engines.vllm_common import ContextChoice, choose_max_model_len

MODEL_MAX = 4096


def test_choice_configured_needed_capped_unknown():
    assert choose_max_model_len(2048, MODEL_MAX, 300) == ContextChoice(2048, "configured", configured=True)
    needed = choose_max_model_len(None, MODEL_MAX, 300)
    assert needed.max_model_len == 300 and "longest prompt + max_tokens" in needed.reason
    assert f"model maximum {MODEL_MAX}" in needed.reason
    capped = choose_max_model_len(None, 131072, 140000)
    assert capped.max_model_len == 131072 and "the requests need 140000" in capped.reason
    assert choose_max_model_len(None, MODEL_MAX, None).max_model_len == MODEL_MAX  # nothing known: the max
    assert choose_max_model_len(None, None, None) == ContextChoice(
        None, "vLLM's default (the model's maximum)"
    )
    assert choose_max_model_len(None, None, 300).max_model_len == 300


def _model_dir(d: Path) -> Path:
    """A model folder with a word-level tokenizer: one word, one token; the template joins the turns."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    fast.chat_template = "{% for m in messages %}{{ m.content }} {% endfor %}"
    fast.save_pretrained(d)
    (d / "config.json").write_text(
        json.dumps({"architectures": ["LlamaForCausalLM"], "max_position_embeddings": MODEL_MAX})
    )
    return d


class _Stubbed(vllm_local.VLLMLocalEngine):
    """The real engine up to `vllm.LLM`, which it does not start."""

    closed = 0

    def _start(self, log):
        return None

    def close(self) -> None:
        type(self).closed += 1


@pytest.fixture
def model_path(tmp_path, monkeypatch) -> str:
    monkeypatch.setattr(vllm_local, "VLLMLocalEngine", _Stubbed)
    monkeypatch.setattr(vllm_local, "vllm_on_cpu", lambda: True)
    monkeypatch.setattr("star1.llm.cpu_dtype.vllm_on_cpu", lambda: True)  # the pool asks too
    monkeypatch.setattr(vllm_local, "vllm_env", dict)
    _Stubbed.closed = 0
    return str(_model_dir(tmp_path / "model"))


def _req(key: str, words: int, max_tokens: int) -> GenRequest:
    return GenRequest(key, Sampling(max_tokens=max_tokens), (("user", " ".join(["w"] * words)),))


def _handle(path: str, requests: list[GenRequest], **cfg) -> ModelHandle:
    h = ModelHandle(ModelConfig(path=path, **cfg), None)
    h.expect(requests)
    return h


def test_engine_sized_for_its_run_and_replaced_when_a_role_needs_more(model_path):
    pool = EnginePool(None)
    target = pool.get(_handle(model_path, [_req("a", 5, 16), _req("b", 40, 8), _req("c", 2, 64)]))
    assert target.context.max_model_len == 66  # max(5 + 16, 40 + 8, 2 + 64): longest prompt + max_tokens
    assert target.kwargs["max_model_len"] == 66 and target.renderer.limit == 66
    assert target.fits([_req("d", 10, 8)])
    assert pool.get(_handle(model_path, [_req("d", 10, 8)])) is target  # a judge's smaller requests: re-used
    assert pool.get(_handle(model_path, [])) is target  # no requests known: whatever is live

    judge = pool.get(_handle(model_path, [_req("e", 100, 12)]))  # the same model, longer prompts
    assert judge is not target and _Stubbed.closed == 1 and judge.context.max_model_len == 112
    assert len(pool.started) == 2

    huge = pool.get(_handle(model_path, [_req("f", 5000, 100)]))
    assert huge.context.max_model_len == MODEL_MAX and "need 5100" in huge.context.reason
    assert huge.renderer.fit(_req("f", 5000, 100)) == f"prompt_too_long: 5000 tokens, context {MODEL_MAX}"


def test_configured_value_wins_and_no_requests_means_the_model_maximum(model_path):
    pool = EnginePool(None)
    fixed = pool.get(_handle(model_path, [_req("a", 5, 16)], max_model_len=2048))
    assert fixed.context == ContextChoice(2048, "configured", configured=True)
    assert fixed.kwargs["max_model_len"] == 2048
    same = _handle(model_path, [_req("b", 3000, 16)], max_model_len=2048)
    assert pool.get(same) is fixed  # configured: too-long prompts are per-request errors, no restart
    bare = vllm_local.VLLMLocalEngine(
        ModelConfig(path=model_path), ModelHandle(ModelConfig(path=model_path), None).resolved
    )
    assert bare.context.max_model_len == MODEL_MAX and "no requests known" in bare.context.reason
