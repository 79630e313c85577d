"""The shared limiter: paced rates, bursts, opt-in windows, AIMD on 429s, durations, the Ray actor's life."""

from __future__ import annotations

import time

import pytest

from star1.llm.limiter import Limits, RateLimiter, limiter_actor_name


def clocked(limits: Limits) -> tuple[RateLimiter, list[float]]:
    t = [0.0]
    return RateLimiter(limits, clock=lambda: t[0]), t


def starts(lim: RateLimiter, t: list[float], n: int, tokens: int = 0) -> list[float]:
    return [t[0] + lim.reserve(tokens)[0] for _ in range(n)]


def test_rpm_is_a_paced_rate_not_a_burst():
    lim, t = clocked(Limits(rpm=1200, margin=0.0))
    s = starts(lim, t, 40)
    assert s == pytest.approx([i / 20 for i in range(40)])  # 20 per second, evenly
    for x in s:  # no rolling second ever holds more than 20
        assert sum(1 for y in s if x <= y < x + 1.0) <= 20


def test_margin_paces_a_little_under_the_configured_rate():
    lim, t = clocked(Limits(rps=10))  # default margin 2%
    s = starts(lim, t, 11)
    assert s[10] == pytest.approx(10 / (10 * 0.98))


def test_a_small_burst_then_pacing():
    lim, t = clocked(Limits(rps=10, burst=3, margin=0.0))
    s = starts(lim, t, 6)
    assert s[:3] == [0.0, 0.0, 0.0] and s[3] == pytest.approx(0.1) and s[5] == pytest.approx(0.3)


def test_tokens_per_minute_are_paced_by_weight():
    lim, t = clocked(Limits(tpm=60_000, margin=0.0))  # 1,000 tokens per second
    s = starts(lim, t, 3, tokens=500)
    assert s == pytest.approx([0.0, 0.5, 1.0])


def test_whole_window_bursting_is_opt_in():
    lim, t = clocked(Limits(rpm=3, window=True, margin=0.0))
    s = starts(lim, t, 4)
    assert s[:3] == [0.0, 0.0, 0.0] and s[3] == pytest.approx(60.0)


def test_waits_are_durations_from_the_limiters_own_clock():
    """Two workers whose wall clocks disagree by an hour get the same spacing: only durations travel."""
    lim, t = clocked(Limits(rps=5, margin=0.0))
    t[0] = 1e9  # the limiter's clock is not the callers'
    waits = [lim.reserve()[0] for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])


def test_429s_lower_the_rate_once_per_episode_then_it_recovers():
    lim, t = clocked(Limits(rps=10, margin=0.0))
    seqs = [lim.reserve()[1] for _ in range(10)]
    for seq in seqs:  # a burst of refusals of grants made at the old rate: one decrease
        lim.penalize(None, seq)
    assert lim.stats()["decreases"] == 1 and lim.factor == pytest.approx(0.85)
    lim.penalize(None, lim.reserve()[1])  # a refusal of a grant made since: a second decrease
    assert lim.stats()["decreases"] == 2 and lim.factor == pytest.approx(0.85**2)
    t[0] += 2.0
    lim.reserve()
    assert lim.factor == pytest.approx(0.85**2 + 0.2)  # additive: 10% of the rate per second
    t[0] += 10.0
    lim.reserve()
    assert lim.factor == 1.0  # never above the configured rate


def test_with_nothing_configured_the_first_429_sets_a_pace_from_what_was_sent():
    lim, t = clocked(Limits())
    for i in range(60):  # 30 per second for 2 s, unpaced
        t[0] = i / 30
        assert lim.reserve()[0] == 0.0
    lim.penalize(None, 59)
    assert lim.stats()["learned_rps"] == pytest.approx(30 * 0.85, rel=0.05)  # 60 grants over 2 s
    waits = [lim.reserve()[0] for _ in range(5)]
    assert waits[-1] > waits[0]  # now paced
    t[0] += 10
    lim.reserve()
    assert lim.stats()["learned_rps"] > 30 * 0.85 * 1.9  # probing upwards again


def test_a_long_retry_after_pauses_every_caller_a_short_one_does_not():
    lim, _ = clocked(Limits(rps=100))
    lim.penalize(0.5, None)
    assert lim.reserve()[0] < 0.5
    lim.penalize(5.0, None)
    assert lim.reserve()[0] >= 5.0


def test_actor_names_carry_the_code_version_and_the_limits():
    a = limiter_actor_name("https://x/v1|m|K", Limits(rpm=10))
    b = limiter_actor_name("https://x/v1|m|K", Limits(rpm=20))
    from star1.llm.limiter import CODE_VERSION

    assert a != b and CODE_VERSION in a and a.startswith("star1-limiter-")


@pytest.mark.slow
def test_the_shared_limiter_actor_exits_when_unused(ray_local):
    import ray

    from star1.llm.limiter import shared_limiter

    name = limiter_actor_name("idle-test", Limits(rps=5))
    actor = shared_limiter(name, Limits(rps=5), idle_exit_s=1.0)
    assert ray.get(actor.reserve.remote(0))[1] == 0
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            ray.get_actor(name, namespace="star1")
        except ValueError:
            break  # gone
        time.sleep(0.5)
    else:
        pytest.fail("the idle limiter actor did not exit")
    again = shared_limiter(name, Limits(rps=5), idle_exit_s=60)  # a later job gets a fresh one by name
    assert ray.get(again.reserve.remote(0))[1] == 0
    ray.kill(again)
