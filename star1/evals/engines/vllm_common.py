"""What both vLLM backends share: the tokenizer that renders prompts, engine arguments, runtime env.

Prompts are rendered and tokenized once, here, by the model's own chat template (no system prompt, the
generation prompt added, as the paper does), so the in-process engine and the Ray Data engines receive
identical token ids and the manifest can hash the exact template used.
"""

from __future__ import annotations

import os
from typing import Any

from star1.config import ModelConfig
from star1.evals.engines.base import GenRequest
from star1.evals.engines.model_source import ResolvedModel, model_hashes
from star1.llm.local_server import cache_root

VLLM_ENV = {
    "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
    "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def vllm_env() -> dict[str, str]:
    return {**VLLM_ENV, "VLLM_CACHE_ROOT": os.environ.get("VLLM_CACHE_ROOT", str(cache_root() / "vllm"))}


def on_cpu() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def vllm_version() -> str:
    import vllm

    return str(vllm.__version__)


class PromptRenderer:
    """The model's tokenizer: chat messages → token ids through its chat template; raw prompts as is."""

    def __init__(self, cfg: ModelConfig, model: ResolvedModel) -> None:
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(cfg.tokenizer or model.source)
        self.chat_template: str | None = getattr(self.tok, "chat_template", None)

    def text(self, req: GenRequest) -> str:
        if req.raw_prompt is not None:
            return req.raw_prompt
        if not self.chat_template:
            raise ValueError("the model has no chat template; give one in its tokenizer_config.json")
        return self.tok.apply_chat_template(req.chat(), tokenize=False, add_generation_prompt=True)

    def token_ids(self, req: GenRequest) -> list[int]:
        # the rendered text carries its special tokens (BOS included where the template adds it)
        return list(self.tok(self.text(req), add_special_tokens=False)["input_ids"])


def engine_kwargs(cfg: ModelConfig, cpu: bool) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "dtype": cfg.dtype,
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "enforce_eager": cfg.enforce_eager if cfg.enforce_eager is not None else cpu,
        "seed": 0,
    }
    if cfg.tokenizer:
        kw["tokenizer"] = cfg.tokenizer
    if cfg.max_model_len:
        kw["max_model_len"] = cfg.max_model_len
    if cfg.max_num_seqs:
        kw["max_num_seqs"] = cfg.max_num_seqs
    if not cpu:
        kw["gpu_memory_utilization"] = cfg.gpu_memory_utilization
    return {**kw, **cfg.engine_kwargs}


def describe(cfg: ModelConfig, model: ResolvedModel, renderer: PromptRenderer, backend: str) -> dict:
    return {
        "engine": "vllm",
        "backend": backend,
        "engine_version": vllm_version(),
        "model": cfg.label,
        "model_path": model.given,
        "model_source": model.source,
        **model_hashes(model, renderer.chat_template),
        "dtype": cfg.dtype,
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "data_parallel_size": cfg.replicas if backend == "ray" else 1,
        "max_model_len": cfg.max_model_len,
        "accelerator_type": cfg.accelerator_type,
        "engine_kwargs": cfg.engine_kwargs,
    }
