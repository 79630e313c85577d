"""star1's model client against the fault-injecting server over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest

from star1.config import RoleConfig
from star1.llm.cache import ResponseCache
from star1.llm.client import LLMCallError, LLMClient, LocalLimiter, SystemicError, retry_after_seconds
from star1.llm.limiter import Limits
from star1.store import Store
from tests.fake_llm import FakeLLMServer, Faults


def role(srv: FakeLLMServer, **kw) -> RoleConfig:
    base = {"base_url": srv.base_url, "model": "m", "timeout_s": 2.0, "max_attempts": 4, "concurrency": 8}
    return RoleConfig.model_validate({**base, **kw})


def ask(client: LLMClient, prompts: list[str], fmt: dict | None = None):
    async def go():
        try:
            return await asyncio.gather(
                *(client.chat([{"role": "user", "content": p}], fmt) for p in prompts), return_exceptions=True
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


def test_retry_after_is_honoured_in_seconds_and_as_an_http_date():
    for style in ("ms", "date"):
        with FakeLLMServer(
            faults=Faults(plan={"X": ["429"]}, retry_after_s=1.0, retry_after_style=style)
        ) as srv:
            t0 = time.perf_counter()
            (out,) = ask(LLMClient("judge", role(srv)), ["X"])
            assert out.attempts == 2
            assert time.perf_counter() - t0 >= 0.9, style  # waited (an HTTP date has 1 s resolution)


@pytest.mark.parametrize("value", ["soon", "1.5s", "-3", "Thu, 99 Foo 2026 25:61:00 GMT", "", "nan"])
def test_malformed_retry_after_is_treated_as_absent(value):
    assert retry_after_seconds({"retry-after": value}) is None
    with FakeLLMServer(faults=Faults(plan={"X": ["429", "429"]}, retry_after_style=value or "none")) as srv:
        (out,) = ask(LLMClient("judge", role(srv)), ["X"])
    assert not isinstance(out, Exception) and out.attempts == 3  # backed off instead, then answered


def test_retry_after_header_forms():
    now = time.time()
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "1"}) == 0.25
    assert retry_after_seconds({"retry-after-ms": "soon", "retry-after": "2"}) == 2.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_seconds({"retry-after": date}, now=now) == pytest.approx(30, abs=1)
    assert retry_after_seconds({"retry-after": "99999999"}) == 600.0  # capped
    assert retry_after_seconds({}) is None and retry_after_seconds(None) is None


def test_gives_up_after_max_attempts_with_a_transient_reason():
    with FakeLLMServer(faults=Faults(plan={"Z": ["500"] * 10})) as srv:
        (out,) = ask(LLMClient("judge", role(srv, max_attempts=3)), ["Z"])
    assert isinstance(out, LLMCallError) and out.reason == "server_error" and out.attempts == 3
    assert out.transient


def test_a_client_error_fails_at_once_and_is_not_transient():
    with FakeLLMServer(faults=Faults(plan={"LONG": ["400"] * 5})) as srv:
        client = LLMClient("judge", role(srv))
        out = ask(client, ["LONG prompt", "fine prompt"])
        assert srv.stats["requests"] == 2  # not retried
    err, ok = out
    assert isinstance(err, LLMCallError) and not isinstance(err, SystemicError)
    assert err.reason == "client_error" and err.attempts == 1 and not err.transient
    assert "maximum context length" in str(err) and ok.text == "echo: fine prompt"


def test_systemic_errors_stop_the_client_at_once():
    """A wrong key: every first call fails alike. The client stops after a few, not after every row."""
    with FakeLLMServer(faults=Faults(plan={"q": ["401"] * 1000})) as srv:
        client = LLMClient("judge", role(srv, concurrency=2))
        out = ask(client, [f"q{i}" for i in range(40)])
        sent = srv.stats["requests"]
    assert all(isinstance(o, LLMCallError) for o in out)
    assert sum(isinstance(o, SystemicError) for o in out) >= 30
    assert "Incorrect API key" in str(next(o for o in out if isinstance(o, SystemicError)))
    assert sent <= 6  # 4 alike failures trip the breaker; at most the in-flight ones follow


def test_a_retryable_error_that_is_always_the_same_stops_the_client_too():
    with FakeLLMServer(faults=Faults(plan={"q": ["500"] * 1000})) as srv:
        client = LLMClient("judge", role(srv, concurrency=4, max_attempts=8))
        out = ask(client, [f"q{i}" for i in range(30)])
        sent = srv.stats["requests"]
    assert all(isinstance(o, SystemicError) for o in out)
    assert sent < 30  # far below 30 rows × 8 attempts


def test_empty_answers_are_retried_and_paid_for():
    with FakeLLMServer(faults=Faults(plan={"E": ["empty"]})) as srv:
        client = LLMClient("judge", role(srv, price_in_per_mtok=1.0, price_out_per_mtok=1.0))
        (out,) = ask(client, ["E" * 400])
    assert out.attempts == 2 and out.extra_prompt_tokens == out.prompt_tokens > 0
    assert client.usage.prompt_tokens == 2 * out.prompt_tokens  # both attempts billed
    assert client.usage.cost_usd == pytest.approx(
        (client.usage.prompt_tokens + client.usage.completion_tokens) / 1e6
    )


def test_reasoning_fields_come_back_beside_the_content():
    def think(req):
        return "<think>\nweighing it\n</think>\n\nno."

    for field in ("reasoning_content", "reasoning"):
        with FakeLLMServer({"m": think}, Faults(reasoning_field=field)) as srv:
            (out,) = ask(LLMClient("generator", role(srv)), ["q"])
        assert out.text == "no." and out.reasoning == "weighing it", field


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


def test_resampling_variants_are_distinct_requests_cached_apart(tmp_path):
    store = Store.from_uri(str(tmp_path))
    msgs = [{"role": "user", "content": "q"}]
    with FakeLLMServer() as srv:
        client = LLMClient("generator", role(srv, sampling={"seed": 7}), ResponseCache(store))

        async def go():
            try:
                return [await client.chat(msgs, variant=v) for v in (0, 1, 2, 1)]
            finally:
                await client.aclose()

        out = asyncio.run(go())
        assert len({o.key for o in out[:3]}) == 3 and out[3].cached and out[3].key == out[1].key
        assert srv.stats["ok"] == 3  # the repeated variant came from the cache


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


SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["label"],
    "properties": {"label": {"type": "string", "enum": ["a", "b"]}},
}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}}


@pytest.mark.parametrize("mode", ["json_schema", "json_object", "none"])
def test_every_structured_output_mode_reaches_the_server_as_configured(mode):
    seen = []

    def answer(req):
        seen.append(req.get("response_format"))
        return '```json\n{"label": "b"}\n```'

    with FakeLLMServer({"m": answer}) as srv:
        client = LLMClient("judge", role(srv, structured_output=mode))
        (out,) = ask(client, ["q"], JSON_SCHEMA)
    sent = seen[0]
    assert (sent or {}).get("type", "none") == mode and out.response_format == mode
    # json modes come back as bare JSON (the server honours them); plain text keeps the fences
    assert out.text == ('{"label": "b"}' if mode != "none" else '```json\n{"label": "b"}\n```')


def test_a_server_that_refuses_json_schema_steps_down_once():
    """llama.cpp answers json_schema with a 500 naming the field: step down to json_object, say so once."""
    refuse = {
        "json_schema": (
            500,
            "1 validation error: response_format.type Input should be 'text' or 'json_object'",
        )
    }
    with FakeLLMServer({"m": lambda r: '{"label": "a"}'}, Faults(reject_formats=refuse)) as srv:
        client = LLMClient("judge", role(srv))
        out = ask(client, [f"q{i}" for i in range(6)], JSON_SCHEMA)
        refused = srv.stats["refused_json_schema"]
    assert all(o.text == '{"label": "a"}' and o.response_format == "json_object" for o in out)
    assert 1 <= refused <= 6 and len(client.usage.fallbacks) == 1  # at most the first in-flight ones
    assert "json_object" in client.usage.fallbacks[0]


def test_a_server_that_refuses_both_json_modes_ends_in_plain_text():
    refuse = {"json_schema": (400, "response_format not supported"), "json_object": (422, "response_format")}
    with FakeLLMServer({"m": lambda r: 'label: {"label": "a"}'}, Faults(reject_formats=refuse)) as srv:
        client = LLMClient("judge", role(srv, concurrency=1))
        out = ask(client, ["q1", "q2"], JSON_SCHEMA)
    assert [o.response_format for o in out] == ["none", "none"] and len(client.usage.fallbacks) == 2


def test_shared_limit_across_clients_against_an_enforcing_server():
    def run(limiter):
        with FakeLLMServer(faults=Faults(rps=10)) as srv:
            clients = [LLMClient("judge", role(srv, max_attempts=20), limiter=limiter) for _ in range(3)]

            async def go():
                await asyncio.gather(
                    *(
                        c.chat([{"role": "user", "content": f"{i}-{j}"}])
                        for i, c in enumerate(clients)
                        for j in range(10)
                    )
                )

            asyncio.run(go())
            return srv.stats

    limited = run(LocalLimiter(Limits(rps=10)))
    hammering = run(None)
    assert limited["ok"] == hammering["ok"] == 30  # every row succeeds either way
    # sharing one paced limiter avoids rejections (hammering gets many)
    assert hammering["429"] >= 20 and limited["429"] <= 2
