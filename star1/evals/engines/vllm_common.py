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
from star1.evals.engines.model_source import ModelSourceError, ResolvedModel, model_hashes
from star1.llm.local_server import cache_root

# hub settings passed on to Ray engine workers (never secrets: workers get those from their own pods)
PASSED_ON = ("HF_HUB_OFFLINE", "HF_HOME")


def vllm_env() -> dict[str, str]:
    """Engine environment: no usage reporting, a KV cache size for CPU engines (ignored on GPUs), the
    cache under star1's cache root, and the caller's hub settings (offline only where the caller is)."""
    env = {
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "VLLM_CACHE_ROOT": os.environ.get("VLLM_CACHE_ROOT", str(cache_root() / "vllm")),
    }
    return env | {k: os.environ[k] for k in PASSED_ON if k in os.environ}


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

        where = cfg.tokenizer or str(model.local_dir or model.source)
        try:
            self.tok = AutoTokenizer.from_pretrained(where)
        except (OSError, ValueError) as e:
            raise ModelSourceError(
                f"cannot load the tokenizer of model {model.given!r} from {where}: {e}"
            ) from None
        self.chat_template: str | None = getattr(self.tok, "chat_template", None)
        self.limit = context_limit(cfg, model)

    def text(self, req: GenRequest) -> str:
        if req.raw_prompt is not None:
            return req.raw_prompt
        if not self.chat_template:
            raise ValueError("the model has no chat template; give one in its tokenizer_config.json")
        return self.tok.apply_chat_template(req.chat(), tokenize=False, add_generation_prompt=True)

    def token_ids(self, req: GenRequest) -> list[int]:
        # the rendered text carries its special tokens (BOS included where the template adds it)
        return list(self.tok(self.text(req), add_special_tokens=False)["input_ids"])

    def fit(self, req: GenRequest) -> tuple[list[int], dict[str, Any]] | str:
        """(token ids, vLLM sampling params with max_tokens clamped to the context left), or why the
        request cannot run (a prompt longer than the context is a per-request error, not a failed batch)."""
        ids = self.token_ids(req)
        params = req.sampling.vllm()
        if self.limit is not None:
            room = self.limit - len(ids)
            if room < 1:
                return f"prompt_too_long: {len(ids)} tokens, context {self.limit}"
            params["max_tokens"] = min(params["max_tokens"], room)
        return ids, params


def context_limit(cfg: ModelConfig, model: ResolvedModel) -> int | None:
    """max_model_len, else the model's max_position_embeddings (when its config is on this machine)."""
    if cfg.max_model_len:
        return cfg.max_model_len
    if model.local_dir is not None and (model.local_dir / "config.json").exists():
        import json

        conf = json.loads((model.local_dir / "config.json").read_text())
        value = conf.get("max_position_embeddings") or conf.get("text_config", {}).get(
            "max_position_embeddings"
        )
        return int(value) if value else None
    return None


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
