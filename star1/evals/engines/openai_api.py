"""Any OpenAI-compatible endpoint, through star1's client: its rate limits (RPM/TPM/RPS), retries with
Retry-After, the response cache in the store (a rerun re-uses every finished call) and usage accounting.

Sampling comes from the benchmark's profile: one client per distinct sampling (a seed per sample), so each
sample has its own cache key. `repetition_penalty` and `top_k` go in the request body only when they differ
from the neutral value (vLLM and most open servers accept them; OpenAI's own API does not). Raw prompts
(Llama Guard's own format) need a vLLM engine: an endpoint gets chat messages.

Thinking a server returns beside the content (`reasoning_content` / `reasoning`: vLLM's reasoning parsers,
DeepSeek's API) is kept beside it, in `GenResult.reasoning`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from typing import Any

from star1.config import ModelConfig, SamplingConfig
from star1.evals.engines.base import GenRequest, GenResult, Sampling
from star1.llm.cache import ResponseCache
from star1.llm.client import LLMCallError, LLMClient, LocalLimiter
from star1.llm.limiter import Limits
from star1.store import Store


def sampling_config(s: Sampling) -> SamplingConfig:
    extra: dict[str, Any] = {}
    if s.repetition_penalty != 1.0:
        extra["repetition_penalty"] = s.repetition_penalty
    if s.top_k not in (-1, 0):
        extra["top_k"] = s.top_k
    if s.ignore_eos:
        extra["ignore_eos"] = True
    if s.regex:
        extra["structured_outputs"] = {"regex": s.regex}
    return SamplingConfig(
        temperature=s.temperature,
        top_p=s.top_p,
        max_tokens=s.max_tokens,
        seed=s.seed,
        stop=list(s.stop) or None,
        extra_body=extra,
    )


class OpenAIEngine:
    def __init__(self, cfg: ModelConfig, store: Store | None, role: str = "eval") -> None:
        assert cfg.endpoint is not None
        self.cfg, self.endpoint, self.role = cfg, cfg.endpoint, role
        self.cache = ResponseCache(store) if store is not None else None
        self.limits = Limits(cfg.endpoint.rpm, cfg.endpoint.tpm, cfg.endpoint.rps)
        self.usage: dict[str, Any] = {}

    def describe(self) -> dict[str, Any]:
        return {
            "engine": "openai",
            "engine_version": None,
            "model": self.cfg.label,
            "model_path": self.endpoint.model,
            "endpoint": self.endpoint.endpoint_id or self.endpoint.base_url,
            "model_hash": f"endpoint:{self.endpoint.base_url.rstrip('/')}#{self.endpoint.model}",
            "tokenizer_hash": None,
            "chat_template_hash": None,
            "tensor_parallel_size": None,
            "data_parallel_size": None,
            "thinking": self.cfg.thinking,  # auto: from the responses (see run.py)
        }

    def generate(self, requests: Iterable[GenRequest]) -> Iterator[GenResult]:
        reqs = list(requests)
        for r in reqs:
            if r.raw_prompt is not None:
                raise ValueError(
                    "an OpenAI-compatible endpoint takes chat messages, not a raw prompt: use guard format "
                    "'conversation' (a served Llama Guard) or 'task_as_user' (a chat model as the judge)"
                )
        step = 4 * self.endpoint.concurrency  # results reach the runner (and the store) slice by slice
        for start in range(0, len(reqs), step):
            yield from asyncio.run(self._run(reqs[start : start + step]))

    async def _run(self, reqs: list[GenRequest]) -> list[GenResult]:
        limiter = LocalLimiter(self.limits) if self.limits.active else None
        clients: dict[Sampling, LLMClient] = {}
        for r in reqs:
            if r.sampling not in clients:
                role_cfg = self.endpoint.model_copy(update={"sampling": sampling_config(r.sampling)})
                clients[r.sampling] = LLMClient(self.role, role_cfg, self.cache, limiter)

        async def one(r: GenRequest) -> GenResult:
            try:
                c = await clients[r.sampling].chat(r.chat())
            except LLMCallError as e:
                return GenResult(r.key, None, error=f"{e.reason}: {e}"[:500])
            return GenResult(
                r.key,
                c.text,
                c.finish_reason,
                c.prompt_tokens,
                c.completion_tokens,
                reasoning=c.reasoning,
                cached=c.cached,
            )

        try:
            return await asyncio.gather(*(one(r) for r in reqs))
        finally:
            for c in clients.values():
                for k, v in c.usage.as_dict().items():
                    if isinstance(v, list):  # notes such as structured-output fallbacks: keep each once
                        self.usage[k] = sorted({*self.usage.get(k, []), *v})
                    else:
                        self.usage[k] = self.usage.get(k, 0) + v
                await c.aclose()

    def close(self) -> None:
        return None
