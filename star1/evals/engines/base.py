"""What every generation engine shares: the sampling profile, a request, a result, the interface.

An engine takes requests (chat messages, or a raw prompt already in the model's own format) and yields
results as they finish, in any order; the runner stores them in chunks, so a killed eval resumes from what
was stored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Sampling:
    """vLLM sampling parameters (the OpenAI engine sends the ones its API knows)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = 8000
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None
    regex: str | None = None  # guided decoding (a stand-in judge held to the verdict format)
    ignore_eos: bool = False  # benchmarks only: generate exactly max_tokens

    def vllm(self) -> dict[str, Any]:
        p = {k: v for k, v in asdict(self).items() if v is not None}
        p["stop"] = list(self.stop) or None
        regex = p.pop("regex", None)
        if regex is not None:
            p["structured_outputs"] = {"regex": regex}
        return {k: v for k, v in p.items() if v is not None}

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stop": list(self.stop)}


@dataclass(frozen=True)
class GenRequest:
    key: str  # content hash: identifies the stored result
    sampling: Sampling
    messages: tuple[tuple[str, str], ...] = ()  # (role, content) pairs, rendered by the chat template
    raw_prompt: str | None = None  # sent as is (already in the model's format, special tokens included)

    def chat(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]


@dataclass
class GenResult:
    key: str
    text: str | None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # top-k alternatives of the first few generated tokens: [{decoded_token: logprob}, ...]
    top_logprobs: list[dict[str, float]] | None = None
    error: str | None = None
    reasoning: str | None = None  # thinking an endpoint returned beside the text (reasoning_content)
    cached: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def output(self) -> str | None:
        """The whole output as the model wrote it: `reasoning` a server split off put back in front of the
        text as `<think>\n…\n</think>\n\n`, left open when the model ran out of tokens before answering (a
        truncated thought); the text stays the final answer."""
        if not self.reasoning or "<think>" in (self.text or ""):
            return self.text
        thought = f"<think>\n{self.reasoning.strip()}"
        if not (self.text or "").strip() and self.finish_reason == "length":
            return thought
        return f"{thought}\n</think>\n\n{(self.text or '').strip()}"


class Engine(Protocol):
    """`generate` yields one result per request (any order); `describe` goes into the manifest."""

    def generate(self, requests: Iterable[GenRequest]) -> Iterator[GenResult]: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


KEEP_LOGPROB_POSITIONS = 4  # enough to reach a guard's verdict token past leading whitespace


def top_logprobs_from_vllm(positions: Any, keep: int = KEEP_LOGPROB_POSITIONS) -> list[dict[str, float]]:
    """vLLM logprobs (per position: {token_id: Logprob or dict}) → [{decoded_token: logprob}]."""
    out: list[dict[str, float]] = []
    for pos in list(positions or [])[:keep]:
        alts: dict[str, float] = {}
        for tok_id, lp in (pos or {}).items():
            if isinstance(lp, dict):
                token, value = lp.get("decoded_token"), lp.get("logprob")
            else:
                token, value = getattr(lp, "decoded_token", None), getattr(lp, "logprob", None)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            token = str(token if token is not None else tok_id)
            alts[token] = max(float(value), alts.get(token, -math.inf))
        out.append(alts)
    return out


def finish_reason(n_generated: int, max_tokens: int, reported: str | None = None) -> str:
    if reported:
        return reported
    return "length" if n_generated >= max_tokens else "stop"
