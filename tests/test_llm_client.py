"""The model client against the fault-injecting server over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time

import pytest

from star1.config import RoleConfig
from star1.llm.cache import ResponseCache
from star1.llm.client import LLMCallError, LLMClient, LocalLimiter, retry_after_seconds
from star1.llm.limiter import Limits, RateLimiter
from star1.store import Store
from tests.fake_llm import FakeLLMServer, Faults


def role(srv: FakeLLMServer, **kw) -> RoleConfig:
    base = {"base_url": srv.base_url, "model": "m", "timeout_s": 2.0, "max_attempts": 4, "concurrency": 8}
    return RoleConfig.model_validate({**base, **kw})


def ask(client: LLMClient, prompts: list[str]):
    async def go():
        try:
            return await asyncio.gather(
                *(client.chat([{"role": "user", "content": p}]) for p in prompts), return_exceptions=True
            )
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_each_fault_is_retried_until_success():
    plan = {"A": ["429"], "B": ["500", "500"], "C": ["timeout"], "D": ["drop"], "E": ["malformed"]}
    with FakeLLMServer(faults=Faults(plan=plan, retry_after_s=0.2, timeout_sleep_s=5)) as srv:
        client = LLMClient("judge", role(srv))
        out = ask(client, list(plan))
    assert all(not isinstance(o, Exception) for o in out), out
    assert [o.attempts for o in out] == [2, 3, 2, 2, 2]
    assert [o.text for o in out] == [f"echo: {p}" for p in plan]
    assert client.usage.rate_limited == 1 and client.usage.retries == 6 and client.usage.failures == 0


def test_retry_after_is_honoured():
    with FakeLLMServer(faults=Faults(plan={"X": ["429"]}, retry_after_s=1.0)) as srv:
        t0 = time.perf_counter()
        (out,) = ask(LLMClient("judge", role(srv)), ["X"])
        assert time.perf_counter() - t0 >= 1.0 and out.attempts == 2


def test_gives_up_after_max_attempts_with_a_reason():
    with FakeLLMServer(faults=Faults(plan={"Z": ["500"] * 10})) as srv:
        (out,) = ask(LLMClient("judge", role(srv, max_attempts=3)), ["Z"])
    assert isinstance(out, LLMCallError) and out.reason == "server_error" and out.attempts == 3


def test_client_errors_are_not_retried():
    with FakeLLMServer() as srv:
        client = LLMClient("judge", role(srv))

        async def bad():
            try:
                await client._client.chat.completions.create(model="m", messages=[])
            finally:
                await client.aclose()

        import openai

        with pytest.raises(openai.BadRequestError):
            asyncio.run(bad())


def test_cache_hits_skip_the_network_and_changes_miss(tmp_path):
    store = Store.from_uri(str(tmp_path))
    with FakeLLMServer() as srv:
        ask(LLMClient("judge", role(srv), ResponseCache(store)), ["p1", "p2"])
        again = LLMClient("judge", role(srv), ResponseCache(store))
        out = ask(again, ["p1", "p2"])
        assert all(o.cached for o in out) and again.usage.requests == 0 and again.usage.cache_hits == 2
        other = LLMClient("judge", role(srv, sampling={"temperature": 0.5}), ResponseCache(store))
        ask(other, ["p1"])
        assert other.usage.requests == 1
        tmpl = LLMClient("judge", role(srv), ResponseCache(store), template_hash="v2")
        ask(tmpl, ["p1"])
        assert tmpl.usage.requests == 1
        assert srv.prompts["p1"] == 3 and srv.prompts["p2"] == 1


def test_usage_and_cost_are_accounted():
    with FakeLLMServer() as srv:
        client = LLMClient("judge", role(srv, price_in_per_mtok=1.0, price_out_per_mtok=2.0))
        ask(client, ["hello there", "general kenobi"])
    u = client.usage.as_dict()
    assert u["requests"] == 2 and u["prompt_tokens"] > 0 and u["completion_tokens"] > 0
    assert u["cost_usd"] == pytest.approx((u["prompt_tokens"] + 2 * u["completion_tokens"]) / 1e6)


def test_in_flight_window_bounds_concurrency():
    with FakeLLMServer(faults=Faults(latency_s=0.2)) as srv:
        client = LLMClient("judge", role(srv, concurrency=3))
        t0 = time.perf_counter()
        ask(client, [f"q{i}" for i in range(9)])
        assert time.perf_counter() - t0 >= 0.6  # 9 requests, 3 at a time, 0.2 s each


def test_limiter_spaces_requests_and_never_exceeds_a_window():
    t = [0.0]
    lim = RateLimiter(Limits(rps=5, margin=0.0), clock=lambda: t[0])
    waits = [lim.reserve() for _ in range(12)]
    starts = sorted(w + 0.0 for w in waits)
    assert starts == pytest.approx([0.2 * i for i in range(12)])  # the strict window is paced evenly
    for s in starts:  # no rolling 1 s window holds more than 5
        assert sum(1 for x in starts if s <= x < s + 1.0) <= 5
    t[0] = 10.0
    lim.penalize(0.3)  # a short Retry-After: jitter, not an empty budget; nobody else pauses
    assert lim.reserve() == 0.0
    lim.penalize(3.0)  # a long one: every caller waits
    assert lim.reserve() >= 3.0


def test_limiter_tokens_per_minute():
    t = [0.0]
    lim = RateLimiter(Limits(tpm=1000, margin=0.0), clock=lambda: t[0])
    assert lim.reserve(600) == 0 and lim.reserve(300) == 0
    assert lim.reserve(300) == pytest.approx(60.0)


def test_limiter_safety_gap_is_a_fraction_of_a_window_capped_in_seconds():
    t = [0.0]
    minute = RateLimiter(Limits(rpm=2), clock=lambda: t[0])
    assert [minute.reserve() for _ in range(3)] == pytest.approx([0.0, 0.0, 60.5])  # capped at 0.5 s
    second = RateLimiter(Limits(rps=1), clock=lambda: t[0])
    assert [second.reserve() for _ in range(2)] == pytest.approx([0.0, 1.02])  # 2% of 1 s


def test_limiter_widens_once_per_episode_of_refusals():
    """A burst of 429s for grants made under the same spacing widens the gap once, not once per refusal;
    a refusal of a grant made after the widening widens again; clean grants narrow it back."""
    t = [0.0]
    lim = RateLimiter(Limits(rpm=100_000, rps=1000), clock=lambda: t[0])
    seqs = [lim.reserve_at()[1] for _ in range(20)]
    for seq in seqs:
        lim.penalize(0.05, seq)
    assert lim.stats()["gaps_s"] == [0.6, 0.03]  # one step: 60 s window 0.5 + 0.1; 1 s window 0.02 + 0.01
    lim.penalize(0.05, lim.reserve_at()[1])
    assert lim.stats()["gaps_s"] == [0.7, 0.04]
    for _ in range(100):
        lim.reserve_at()
    assert lim.stats()["gaps_s"] == [0.5, 0.02]


def test_shared_limit_across_clients_against_an_enforcing_server():
    def run(limiter):
        with FakeLLMServer(faults=Faults(rps=10)) as srv:
            clients = [LLMClient("judge", role(srv, max_attempts=20), limiter=limiter) for _ in range(3)]

            async def go():
                t0 = time.perf_counter()
                await asyncio.gather(
                    *(
                        c.chat([{"role": "user", "content": f"{i}-{j}"}])
                        for i, c in enumerate(clients)
                        for j in range(10)
                    )
                )
                return time.perf_counter() - t0

            return asyncio.run(go()), srv.stats

    elapsed, limited = run(LocalLimiter(Limits(rps=10)))
    _, hammering = run(None)
    assert limited["ok"] == hammering["ok"] == 30  # every row succeeds either way
    assert 1.9 <= elapsed <= 6.0  # 30 requests at 10/s: two full windows after the first burst
    # sharing one limiter avoids most rejections (a few remain from connection-setup jitter)
    assert hammering["429"] >= 20 and limited["429"] <= hammering["429"] / 4


def test_retry_after_header_forms():
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "1"}) == 0.25
    assert retry_after_seconds({}) is None
