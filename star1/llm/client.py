"""One async client for every OpenAI-compatible endpoint and role.

Each call: response cache lookup → in-flight window (per worker) → shared rate-limit reservation → request.
429s honour Retry-After (a long one pauses every worker through the shared limiter, which also lowers its
rate); 5xx, timeouts, dropped connections and unusable bodies are retried with jittered exponential backoff;
other 4xx fail at once. Every paid attempt is accounted (requests, tokens, cost), retried ones included.

Endpoints differ: reasoning models put their thinking in `message.reasoning_content` (or `reasoning`), which
comes back as `Completion.reasoning`; servers that refuse a structured-output mode (llama.cpp answers
`json_schema` with a 500) make the client step down once — `json_schema` → `json_object` → plain text — and
say so; and when the first calls all fail alike with a non-transient error, the client stops at once
(`SystemicError`) instead of spending the retry budget on every row.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import os
import random
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from star1.config import RoleConfig
from star1.llm.cache import ResponseCache, request_key
from star1.llm.limiter import Limits, RateLimiter

log = logging.getLogger("star1.llm")

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}
# call failures that a later rerun may not see again: never recorded as rejects of the row
TRANSIENT = {"rate_limited", "server_error", "timeout", "connection_error", "bad_response"}
FORMAT_STEPS = ("json_schema", "json_object", "none")
_FORMAT_WORDS = re.compile(r"response_format|json_schema|json_object|structured|guided|grammar", re.I)
MAX_RETRY_AFTER_S = 600.0


class LLMCallError(RuntimeError):
    """A call that failed for good; `reason` names the cause (see TRANSIENT)."""

    def __init__(
        self, reason: str, message: str, attempts: int, prompt_tokens: int = 0, completion_tokens: int = 0
    ):
        super().__init__(f"{reason} after {attempts} attempt(s): {message}")
        self.reason, self.attempts, self.message = reason, attempts, message
        # tokens billed for attempts that came back unusable (e.g. empty answers), so usage stays exact
        self.prompt_tokens, self.completion_tokens = prompt_tokens, completion_tokens

    @property
    def transient(self) -> bool:
        return self.reason in TRANSIENT


class SystemicError(LLMCallError):
    """Every first call failed the same way: the endpoint or its configuration is wrong, not one row."""


class Deferred(Exception):
    """Batch mode: the call is not in the cache yet; its request was queued for the next batch."""


@dataclass
class Completion:
    text: str
    finish_reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    attempts: int = 0
    key: str = ""
    reasoning: str | None = None  # thinking returned beside the content (reasoning_content / reasoning)
    # what this call paid for beyond its own answer: earlier attempts whose tokens were spent (an empty
    # answer that was retried), so usage adds up to what the provider bills
    extra_prompt_tokens: int = 0
    extra_completion_tokens: int = 0
    response_format: str = "none"  # the structured-output mode the answer was produced under
    from_batch: bool = False


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
    fallbacks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cost_usd"] = round(d["cost_usd"], 6)
        return d


class Limiter(Protocol):
    async def reserve(self, tokens: int) -> tuple[float, int]: ...
    async def penalize(self, retry_after: float | None, seq: int | None) -> None: ...


class LocalLimiter:
    def __init__(self, limits: Limits) -> None:
        self.limiter = RateLimiter(limits)

    async def reserve(self, tokens: int) -> tuple[float, int]:
        return self.limiter.reserve(tokens)

    async def penalize(self, retry_after: float | None, seq: int | None) -> None:
        self.limiter.penalize(retry_after, seq)


class RayLimiter:
    """The endpoint's shared limiter actor, so every Ray worker respects one budget. If the actor went away
    (it exits when idle), the next call finds or makes a fresh one by name."""

    def __init__(self, name: str, limits: Limits) -> None:
        from star1.llm.limiter import shared_limiter

        self.name, self.limits = name, limits
        self.handle = shared_limiter(name, limits)

    async def _call(self, method: str, *args: Any) -> Any:
        import ray

        from star1.llm.limiter import shared_limiter

        try:
            return await getattr(self.handle, method).remote(*args)
        except ray.exceptions.RayActorError:
            self.handle = shared_limiter(self.name, self.limits)
            return await getattr(self.handle, method).remote(*args)

    async def reserve(self, tokens: int) -> tuple[float, int]:
        return await self._call("reserve", tokens)

    async def penalize(self, retry_after: float | None, seq: int | None) -> None:
        await self._call("penalize", retry_after, seq)


def resolve_api_key(cfg: RoleConfig) -> str:
    """From the env var the role names, else a mounted secret file, else a placeholder for open endpoints."""
    if cfg.api_key_env and os.environ.get(cfg.api_key_env):
        return os.environ[cfg.api_key_env]
    if cfg.api_key_file and Path(cfg.api_key_file).is_file():
        return Path(cfg.api_key_file).read_text().strip()
    return "EMPTY"


def retry_after_seconds(headers: Any, now: float | None = None) -> float | None:
    """Seconds the provider asks us to wait: `retry-after-ms`, else `Retry-After` as delay-seconds or an
    HTTP date. Anything malformed (`soon`, `1.5s`, a negative number, a bad date) counts as absent."""
    if headers is None:
        return None

    def number(raw: Any, scale: float) -> float | None:
        try:
            value = float(str(raw).strip()) * scale
        except (TypeError, ValueError):
            return None
        return value if math.isfinite(value) and value >= 0 else None

    ms = headers.get("retry-after-ms")
    if ms is not None and (v := number(ms, 0.001)) is not None:
        return min(v, MAX_RETRY_AFTER_S)
    raw = headers.get("retry-after")
    if raw is None or not str(raw).strip():
        return None
    if (v := number(raw, 1.0)) is not None:
        return min(v, MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(str(raw))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return min(max(0.0, when.timestamp() - (now if now is not None else time.time())), MAX_RETRY_AFTER_S)


def backoff(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Full-jitter exponential backoff."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def estimate_tokens(messages: list[dict[str, str]], max_tokens: int) -> int:
    return sum(len(m.get("content") or "") for m in messages) // 4 + 8 * len(messages) + max_tokens


def reasoning_of(message: Any) -> str | None:
    """Thinking a server returned beside the content: DeepSeek's and vLLM's `reasoning_content`, or
    `reasoning` (newer vLLM, OpenRouter)."""
    for name in ("reasoning_content", "reasoning"):
        value = getattr(message, name, None)
        if isinstance(value, str) and value.strip():
            return value
    return None


def _signature(status: int | None, message: str) -> str:
    """An error message with ids and numbers removed, so the same failure on different requests compares
    equal."""
    return f"{status}:" + re.sub(r"[0-9a-f]{6,}|\d+", "#", message.lower())[:160]


class _Breaker:
    """Watches the first attempts of a client: if none succeeded and they all failed with one message —
    `client_after` attempts of a non-retryable error, or `server_after` of a retryable one, over at least
    `min_requests` different requests — the endpoint is broken for every row, not for one."""

    def __init__(self, client_after: int = 4, server_after: int = 12, min_requests: int = 3) -> None:
        self.client_after, self.server_after, self.min_requests = client_after, server_after, min_requests
        self.succeeded = False
        self.failures: Counter[str] = Counter()
        self.keys: dict[str, set[str]] = {}
        self.tripped: str | None = None

    def success(self) -> None:
        self.succeeded = True

    def failure(self, signature: str, key: str, retryable: bool, message: str) -> None:
        if self.succeeded or self.tripped:
            return
        self.failures[signature] += 1
        self.keys.setdefault(signature, set()).add(key)
        if len(self.failures) > 1:  # failures differ: no single systemic cause
            self.succeeded = True
            return
        needed = self.server_after if retryable else self.client_after
        if self.failures[signature] >= needed and len(self.keys[signature]) >= self.min_requests:
            self.tripped = message


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

        self.role, self.cfg, self.cache, self.limiter = role, cfg, cache, limiter
        self.template_hash = template_hash
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
        self.format_mode = cfg.structured_output  # steps down when the endpoint refuses a mode
        self.breaker = _Breaker()
        self.deferred: list[dict[str, Any]] | None = None  # batch mode: cache misses are queued here
        self.fresh_batch_keys: set[str] = set()  # batch results downloaded (paid) by this run
        self.failed_keys: dict[str, LLMCallError] = {}  # batch mode: requests that failed for good

    @property
    def openai(self) -> Any:
        """The underlying `AsyncOpenAI` client (for the Batch API)."""
        return self._client

    # ------------------------------------------------------------------ requests

    def effective_format(self, response_format: dict | None) -> dict | None:
        """The response format actually sent, after any step-down for this endpoint."""
        if response_format is None or self.format_mode == "none":
            return None
        if response_format.get("type") == "json_schema" and self.format_mode == "json_object":
            return {"type": "json_object"}
        return response_format

    def _sampling_for(self, variant: int) -> dict[str, Any]:
        params = dict(self._sampling)
        if variant and params.get("seed") is not None:
            params["seed"] = params["seed"] + variant  # a re-sample must not repeat a seeded draw
        return params

    def key(self, messages: list[dict[str, str]], response_format: dict | None, variant: int = 0) -> str:
        sampling = self._sampling_for(variant)
        if variant:
            sampling = {**sampling, "_variant": variant}
        return request_key(
            self.cfg.endpoint_id or self.cfg.base_url,
            self.cfg.model,
            messages,
            sampling,
            self.effective_format(response_format),
            self.template_hash,
        )

    def body(self, messages: list[dict[str, str]], response_format: dict | None, variant: int = 0) -> dict:
        params = self._sampling_for(variant)
        extra = params.pop("extra_body", {})
        body = {"model": self.cfg.model, "messages": messages, **params, **extra}
        fmt = self.effective_format(response_format)
        if fmt is not None:
            body["response_format"] = fmt
        return body

    def from_cache(self, key: str) -> Completion | None:
        if self.cache is None:
            return None
        hit = self.cache.get(key)
        if hit is None:
            return None
        return Completion(
            hit["text"],
            hit.get("finish_reason"),
            hit.get("prompt_tokens", 0),
            hit.get("completion_tokens", 0),
            cached=True,
            attempts=hit.get("attempts", 0),
            key=key,
            reasoning=hit.get("reasoning"),
            response_format=hit.get("response_format", "none"),
            from_batch=bool(hit.get("batch_id")),
        )

    def to_cache(self, done: Completion, **extra: Any) -> None:
        if self.cache is None:
            return
        self.cache.put(
            done.key,
            {
                "text": done.text,
                "finish_reason": done.finish_reason,
                "prompt_tokens": done.prompt_tokens,
                "completion_tokens": done.completion_tokens,
                "reasoning": done.reasoning,
                "response_format": done.response_format,
                "model": self.cfg.model,
                "role": self.role,
                **extra,
            },
        )

    async def chat(
        self, messages: list[dict[str, str]], response_format: dict | None = None, *, variant: int = 0
    ) -> Completion:
        """One answer for `messages` (from the cache when this exact request was answered before).
        `variant` > 0 asks for a fresh sample of the same request (e.g. after a truncated one), cached under
        its own key so that reruns get the same sequence."""
        if self.breaker.tripped:
            raise SystemicError("systemic", self.breaker.tripped, 0)
        while True:
            key = self.key(messages, response_format, variant)
            hit = await asyncio.to_thread(self.from_cache, key)
            if hit is not None:
                self.usage.cache_hits += 1
                return hit
            if key in self.failed_keys:
                raise self.failed_keys[key]
            if self.deferred is not None:
                self.deferred.append(
                    {"key": key, "body": self.body(messages, response_format, variant), "role": self.role}
                )
                raise Deferred(key)
            mode = self.format_mode
            async with self._window:
                done = await self._call(messages, response_format, variant, key)
            if done is None:  # the endpoint refused the structured-output mode: stepped down, ask again
                continue
            done.response_format = mode if self.effective_format(response_format) else "none"
            await asyncio.to_thread(self.to_cache, done)
            return done

    def _step_down(self, message: str, sent: str) -> bool:
        """Step the structured-output mode down once, if the error is about it. True to ask again (also when
        another in-flight call already stepped down past the mode this one was sent with)."""
        if sent == "none" or not _FORMAT_WORDS.search(message):
            return False
        if self.format_mode != sent:
            return True
        old = self.format_mode
        self.format_mode = FORMAT_STEPS[FORMAT_STEPS.index(old) + 1]
        note = f"{self.role}: endpoint refused structured output '{old}'; using '{self.format_mode}'"
        self.usage.fallbacks.append(note)
        log.warning("%s (%s)", note, message[:200])
        return True

    async def _call(
        self, messages: list[dict[str, str]], response_format: dict | None, variant: int, key: str
    ) -> Completion | None:
        import openai
        from openai.types.chat import ChatCompletion

        body = self.body(messages, response_format, variant)
        sent_mode = self.format_mode if "response_format" in body else "none"
        tokens = estimate_tokens(messages, self.cfg.sampling.max_tokens)
        spent_in = spent_out = 0
        last, reason = "", "failed"
        for attempt in range(1, self.cfg.max_attempts + 1):
            if self.breaker.tripped:
                raise SystemicError("systemic", self.breaker.tripped, attempt - 1)
            grant = None
            if self.limiter is not None:
                wait, grant = await self.limiter.reserve(tokens)
                if wait > 0:
                    await asyncio.sleep(wait)
            self.usage.requests += 1
            try:
                # the SDK's low-level post: same errors and response model as `chat.completions.create`,
                # without its per-call type transform of the request (the largest CPU cost per request)
                resp = await self._client.post("/chat/completions", body=body, cast_to=ChatCompletion)
                u = resp.usage
                p_tok, c_tok = (
                    (getattr(u, "prompt_tokens", 0) or 0),
                    (getattr(u, "completion_tokens", 0) or 0),
                )
                self.usage.prompt_tokens += p_tok  # billed whether or not the answer is usable
                self.usage.completion_tokens += c_tok
                self.usage.cost_usd += self.cfg.cost(p_tok, c_tok)
                choice = resp.choices[0]
                text = choice.message.content
                reasoning = reasoning_of(choice.message)
                if text is None and reasoning is None:
                    spent_in, spent_out = spent_in + p_tok, spent_out + c_tok
                    raise ValueError("response has no message content")
            except openai.APIStatusError as e:
                status = e.status_code
                message = _error_message(e)
                last = f"HTTP {status}: {message[:300]}"
                retryable = status in RETRYABLE_STATUS
                if (
                    status != 429
                    and (status in (400, 422) or status >= 500)
                    and self._step_down(message, sent_mode)
                ):
                    return None
                if status != 429:
                    self.breaker.failure(_signature(status, message), key, retryable, last)
                if not retryable:
                    self.usage.failures += 1
                    if self.breaker.tripped:
                        raise SystemicError("systemic", self.breaker.tripped, attempt) from None
                    raise LLMCallError("client_error", last, attempt) from None
                delay = backoff(attempt)
                if status == 429:
                    self.usage.rate_limited += 1
                    reason = "rate_limited"
                    ra = retry_after_seconds(e.response.headers if e.response is not None else None)
                    if ra is not None:
                        delay = ra + random.uniform(0, 0.05 * max(ra, 1.0))
                    if self.limiter is not None:
                        await self.limiter.penalize(ra, grant)
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
                self.breaker.success()
                return Completion(
                    text or "",
                    choice.finish_reason,
                    p_tok,
                    c_tok,
                    attempts=attempt,
                    key=key,
                    reasoning=reasoning,
                    extra_prompt_tokens=spent_in,
                    extra_completion_tokens=spent_out,
                )
            if attempt < self.cfg.max_attempts:
                self.usage.retries += 1
                await asyncio.sleep(delay)
        self.usage.failures += 1
        raise LLMCallError(reason, last, self.cfg.max_attempts, spent_in, spent_out)

    async def aclose(self) -> None:
        await self._client.close()


def _error_message(e: Any) -> str:
    """The provider's error text: `error.message` of an OpenAI-style body, else the raw body/exception."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if body.get("detail"):
            return str(body["detail"])
    return str(getattr(e, "message", "") or e)
