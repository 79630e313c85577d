"""One async client for every OpenAI-compatible endpoint and role.

Each call: response cache lookup → in-flight window (per worker) → shared rate-limit reservation → request.
429s honour Retry-After (and pause every worker through the shared limiter); 5xx, timeouts, dropped
connections and unparseable responses are retried with jittered exponential backoff; other 4xx fail at once.
Usage (requests, cache hits, tokens, retries, cost) is accounted per role.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from star1.config import RoleConfig
from star1.llm.cache import ResponseCache, request_key
from star1.llm.limiter import Limits, RateLimiter

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}


class LLMCallError(RuntimeError):
    """A call that failed for good; `reason` is the reject reason recorded for its row."""

    def __init__(self, reason: str, message: str, attempts: int) -> None:
        super().__init__(f"{reason} after {attempts} attempt(s): {message}")
        self.reason, self.attempts = reason, attempts


@dataclass
class Completion:
    text: str
    finish_reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    attempts: int = 0
    key: str = ""


@dataclass
class Usage:
    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    rate_limited: int = 0
    failures: int = 0
    cost_usd: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cost_usd"] = round(d["cost_usd"], 6)
        return d


class Limiter(Protocol):
    async def reserve_at(self, tokens: int) -> tuple[float, int]: ...
    async def penalize(self, retry_after: float, seq: int | None) -> None: ...


class LocalLimiter:
    def __init__(self, limits: Limits) -> None:
        self.limiter = RateLimiter(limits)

    async def reserve_at(self, tokens: int) -> tuple[float, int]:
        return self.limiter.reserve_at(tokens)

    async def penalize(self, retry_after: float, seq: int | None) -> None:
        self.limiter.penalize(retry_after, seq)


class RayLimiter:
    """The endpoint's shared limiter actor, so every Ray worker respects one budget."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def reserve_at(self, tokens: int) -> tuple[float, int]:
        return await self.handle.reserve_at.remote(tokens)

    async def penalize(self, retry_after: float, seq: int | None) -> None:
        await self.handle.penalize.remote(retry_after, seq)


def resolve_api_key(cfg: RoleConfig) -> str:
    """From the env var the role names, else a mounted secret file, else a placeholder for open endpoints."""
    if cfg.api_key_env and os.environ.get(cfg.api_key_env):
        return os.environ[cfg.api_key_env]
    if cfg.api_key_file and Path(cfg.api_key_file).is_file():
        return Path(cfg.api_key_file).read_text().strip()
    return "EMPTY"


def retry_after_seconds(headers: Any) -> float | None:
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


def backoff(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Full-jitter exponential backoff."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def estimate_tokens(messages: list[dict[str, str]], max_tokens: int) -> int:
    return sum(len(m.get("content") or "") for m in messages) // 4 + 8 * len(messages) + max_tokens


class LLMClient:
    """Calls one role's endpoint. Create one per worker (actor); share `limiter` across workers."""

    def __init__(
        self,
        role: str,
        cfg: RoleConfig,
        cache: ResponseCache | None = None,
        limiter: Limiter | None = None,
        template_hash: str = "",
    ) -> None:
        from openai import AsyncOpenAI, DefaultAioHttpClient

        self.role, self.cfg, self.cache, self.limiter, self.template_hash = (
            role,
            cfg,
            cache,
            limiter,
            template_hash,
        )
        self.usage = Usage()
        # aiohttp transport: half the CPU per request of the default httpx pool, which matters when one pod
        # drives thousands of requests per minute
        self._client = AsyncOpenAI(
            base_url=cfg.base_url,
            api_key=resolve_api_key(cfg),
            max_retries=0,
            timeout=cfg.timeout_s,
            http_client=DefaultAioHttpClient(timeout=cfg.timeout_s),
        )
        self._window = asyncio.Semaphore(cfg.concurrency)
        self._sampling = cfg.sampling.request_params()

    def key(self, messages: list[dict[str, str]], response_format: dict | None) -> str:
        return request_key(
            self.cfg.endpoint_id or self.cfg.base_url,
            self.cfg.model,
            messages,
            self._sampling,
            response_format,
            self.template_hash,
        )

    async def chat(self, messages: list[dict[str, str]], response_format: dict | None = None) -> Completion:
        key = self.key(messages, response_format)
        if self.cache is not None:
            hit = await asyncio.to_thread(self.cache.get, key)
            if hit is not None:
                self.usage.cache_hits += 1
                return Completion(
                    hit["text"],
                    hit.get("finish_reason"),
                    hit.get("prompt_tokens", 0),
                    hit.get("completion_tokens", 0),
                    cached=True,
                    key=key,
                )
        async with self._window:
            done = await self._call(messages, response_format, key)
        if self.cache is not None:
            await asyncio.to_thread(
                self.cache.put,
                key,
                {
                    "text": done.text,
                    "finish_reason": done.finish_reason,
                    "prompt_tokens": done.prompt_tokens,
                    "completion_tokens": done.completion_tokens,
                    "model": self.cfg.model,
                    "role": self.role,
                },
            )
        return done

    async def _call(
        self, messages: list[dict[str, str]], response_format: dict | None, key: str
    ) -> Completion:
        import openai
        from openai.types.chat import ChatCompletion

        params = dict(self._sampling)
        extra = params.pop("extra_body", {})
        body = {"model": self.cfg.model, "messages": messages, **params, **extra}
        if response_format is not None:
            body["response_format"] = response_format
        tokens = estimate_tokens(messages, self.cfg.sampling.max_tokens)
        last = ""
        reason = "failed"
        for attempt in range(1, self.cfg.max_attempts + 1):
            grant = None
            if self.limiter is not None:
                at, grant = await self.limiter.reserve_at(tokens)
                wait = at - time.time()  # the limiter's clock is time.time
                if wait > 0:
                    await asyncio.sleep(wait)
            self.usage.requests += 1
            try:
                # the SDK's low-level post: same errors and response model as `chat.completions.create`,
                # without its per-call type transform of the request (the largest CPU cost per request)
                resp = await self._client.post("/chat/completions", body=body, cast_to=ChatCompletion)
                choice = resp.choices[0]
                text = choice.message.content
                if text is None:
                    raise ValueError("response has no message content")
            except openai.APIStatusError as e:
                status = e.status_code
                last = f"HTTP {status}: {str(e)[:200]}"
                if status not in RETRYABLE_STATUS:
                    self.usage.failures += 1
                    raise LLMCallError("client_error", last, attempt) from None
                delay = backoff(attempt)
                if status == 429:
                    self.usage.rate_limited += 1
                    reason = "rate_limited"
                    ra = retry_after_seconds(e.response.headers if e.response is not None else None)
                    if ra is not None:
                        delay = ra + random.uniform(0, 0.05 * max(ra, 1.0))
                    if self.limiter is not None:
                        await self.limiter.penalize(ra or 0.0, grant)
                else:
                    reason = "server_error"
            except openai.APITimeoutError as e:
                last, reason, delay = f"timeout: {e}", "timeout", backoff(attempt)
            except openai.APIConnectionError as e:
                last, reason, delay = f"connection: {e}", "connection_error", backoff(attempt)
            except (
                openai.APIResponseValidationError,
                ValueError,
                IndexError,
                AttributeError,
                TypeError,
            ) as e:
                last, reason, delay = f"bad response: {e}"[:300], "bad_response", backoff(attempt)
            else:
                u = resp.usage
                done = Completion(
                    text,
                    choice.finish_reason,
                    getattr(u, "prompt_tokens", 0) or 0,
                    getattr(u, "completion_tokens", 0) or 0,
                    attempts=attempt,
                    key=key,
                )
                self.usage.prompt_tokens += done.prompt_tokens
                self.usage.completion_tokens += done.completion_tokens
                self.usage.cost_usd += self.cfg.cost(done.prompt_tokens, done.completion_tokens)
                return done
            if attempt < self.cfg.max_attempts:
                self.usage.retries += 1
                await asyncio.sleep(delay)
        self.usage.failures += 1
        raise LLMCallError(reason, last, self.cfg.max_attempts)

    async def aclose(self) -> None:
        await self._client.close()
