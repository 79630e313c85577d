"""Request and token rate limits shared by every worker that calls one endpoint, adapting to what the
provider really enforces.

Providers publish limits per minute but enforce them over much shorter periods, or as token buckets, so a
client that spends a minute's budget in a burst is throttled. The limiter therefore **paces**: `rpm`, `tpm`
and `rps` are rates, and grants are spaced evenly (a generic cell-rate algorithm: each grant moves a
theoretical arrival time on by weight / rate; `burst` grants may go at once), a little under the configured
rate (`margin`) so arrival jitter never overfills a window. Whole-window bursting (a sliding 60 s window for
`rpm`/`tpm`) is an opt-in (`window=True`) for providers documented to allow it.

On a 429 the limiter lowers every rate multiplicatively and then recovers additively over time (AIMD), so a
wrong or missing limit converges within seconds. Only a refusal of a grant made since the last decrease
counts: refusals of requests sent at the old rate carry no news. With nothing configured the limiter sends
freely until the first 429, then paces at what it was sending, lowered, and keeps probing upwards. A long
Retry-After (the provider's budget is spent) pauses every caller; a short one only delays its own retry.

Waits are handed out as durations from the limiter's own clock, never as absolute times, so workers on
nodes with skewed clocks do not overrun a per-second window. One limiter lives in a named Ray actor per
endpoint (its name carries the code version, and it exits after a while unused); without Ray the same
class runs in-process.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import math
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Limits:
    rpm: int | None = None  # requests per minute, as a rate (or a sliding 60 s window with `window`)
    tpm: int | None = None  # tokens (prompt estimate + max output) per minute, likewise
    rps: int | None = None  # requests per second, always paced
    burst: int = 1  # grants that may go at once before pacing applies
    window: bool = False  # opt-in: rpm/tpm as sliding 60 s windows that may be spent in a burst
    margin: float = 0.02  # pace this fraction under the configured rate (arrival jitter)
    adaptive: bool = True  # AIMD on 429s
    decrease: float = 0.85  # rate multiplier per episode of 429s
    recover_per_s: float = 0.1  # additive recovery, as a fraction of the rate at the last decrease
    min_factor: float = 0.05  # never pace below this fraction of a configured rate
    min_pause_s: float = 2.0  # a Retry-After at least this long pauses every caller

    @property
    def configured(self) -> bool:
        return any(x is not None for x in (self.rpm, self.tpm, self.rps))

    @property
    def active(self) -> bool:
        return self.configured or self.adaptive


class _Pace:
    """Evenly spaced grants at `rate` weight units per second (times `factor`), `burst` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tat = -math.inf  # theoretical arrival time of the next grant

    def earliest(self, now: float, weight: float, factor: float) -> float:
        interval = weight / (self.rate * factor)
        return max(now, self.tat - (self.burst - 1) * interval)

    def add(self, t: float, weight: float, factor: float) -> None:
        self.tat = max(self.tat, t) + weight / (self.rate * factor)


class _Window:
    """Opt-in burst mode: at most `limit` × factor weight in any sliding window of `span` seconds."""

    def __init__(self, limit: int, span: float) -> None:
        self.limit, self.span = limit, span
        self.times: deque[float] = deque()
        self.weights: deque[float] = deque()
        self.total = 0.0

    def earliest(self, now: float, weight: float, factor: float) -> float:
        limit = max(1.0, self.limit * factor)
        weight = min(weight, limit)  # an oversize request waits for an empty window, never forever
        while self.times and self.times[0] <= now - self.span:
            self.times.popleft()
            self.total -= self.weights.popleft()
        t = max(now, self.times[-1] if self.times else now)
        excess = self.total + weight - limit
        if excess <= 0:
            return t
        freed = 0.0
        for ti, wi in zip(self.times, self.weights, strict=True):
            freed += wi
            if freed >= excess:
                return max(t, ti + self.span)
        return t

    def add(self, t: float, weight: float, factor: float) -> None:
        i = bisect.bisect_right(self.times, t)
        self.times.insert(i, t)
        self.weights.insert(i, weight)
        self.total += weight


class RateLimiter:
    """Reservation-based limiter: `reserve()` says how long to wait before sending, and the grant's id."""

    def __init__(self, limits: Limits, clock=time.monotonic) -> None:
        self.limits, self.clock = limits, clock
        pace = 1.0 - limits.margin
        self.constraints: list[tuple[Any, bool]] = []  # (constraint, counts tokens?)
        for per_min, tokens in ((limits.rpm, False), (limits.tpm, True)):
            if per_min:
                c = (
                    _Window(per_min, 60.0 / pace)
                    if limits.window
                    else _Pace(per_min / 60 * pace, limits.burst)
                )
                self.constraints.append((c, tokens))
        if limits.rps:
            self.constraints.append((_Pace(limits.rps * pace, limits.burst), False))
        self.factor = 1.0  # AIMD multiplier on configured rates
        self.learned: _Pace | None = None  # with nothing configured: the pace learned from 429s
        self._at_decrease = (1.0, 0.0)  # (factor or learned rate, time) at the last decrease
        self.paused_until = -math.inf
        self.granted = 0  # grants so far; a grant's number is its sequence id
        self.penalties = 0
        self.decreases = 0
        self._episode = 0  # grants numbered below this were made before the last decrease
        self._recent: deque[float] = deque()  # grant times over the last 2 s (rate estimate)
        self.last_used = clock()

    # ------------------------------------------------------------------ AIMD

    def _recover(self, now: float) -> None:
        base, since = self._at_decrease
        grown = self.limits.recover_per_s * max(0.0, now - since)
        if self.limits.configured:
            self.factor = min(1.0, base + grown)
        elif self.learned is not None:
            self.learned.rate = base * (1.0 + grown)

    def _decrease(self, now: float) -> None:
        self.decreases += 1
        self._episode = self.granted
        if self.limits.configured:
            self.factor = max(self.limits.min_factor, self.factor * self.limits.decrease)
            self._at_decrease = (self.factor, now)
            return
        if self.learned is None:  # the first 429 with no limit given: pace at what we were sending
            while self._recent and self._recent[0] < now - 2.0:
                self._recent.popleft()
            spent = max(now - self._recent[0], 0.25) if self._recent else 1.0
            self.learned = _Pace(max(len(self._recent) / spent, 1.0), self.limits.burst)
        self.learned.rate = max(0.1, self.learned.rate * self.limits.decrease)
        self._at_decrease = (self.learned.rate, now)

    # ------------------------------------------------------------------ grants

    def reserve(self, tokens: int = 0) -> tuple[float, int]:
        """(seconds to wait before sending, the grant's sequence id — pass it to `penalize`)."""
        now = self.clock()
        self.last_used = now
        if self.limits.adaptive:
            self._recover(now)
        active = [(c, tok) for c, tok in self.constraints]
        if self.learned is not None:
            active.append((self.learned, False))
        t = max(now, self.paused_until)
        for _ in range(4):  # a later t can only free more room; iterate to a fixed point
            t_next = max((c.earliest(t, tokens if tok else 1, self.factor) for c, tok in active), default=t)
            if t_next <= t:
                break
            t = t_next
        for c, tok in active:
            c.add(t, tokens if tok else 1, self.factor)
        seq = self.granted
        self.granted += 1
        self._recent.append(t)
        if len(self._recent) > 4096:
            self._recent.popleft()
        return t - now, seq

    def penalize(self, retry_after: float | None, seq: int | None = None) -> None:
        """The provider refused grant `seq` with a 429. A long Retry-After pauses every caller until then.
        A refusal of a grant made since the last decrease lowers the rate (once per episode)."""
        now = self.clock()
        self.last_used = now
        self.penalties += 1
        if retry_after is not None and retry_after >= self.limits.min_pause_s:
            self.paused_until = max(self.paused_until, now + retry_after)
        if self.limits.adaptive and (seq is None or seq >= self._episode):
            self._decrease(now)

    def stats(self) -> dict[str, Any]:
        return {
            "granted": self.granted,
            "penalties": self.penalties,
            "decreases": self.decreases,
            "factor": round(self.factor, 4),
            "learned_rps": round(self.learned.rate, 3) if self.learned else None,
        }


# ---------------------------------------------------------------------- the shared Ray actor

CODE_VERSION = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:10]


class LimiterActor:
    """Ray actor body: one shared RateLimiter per endpoint. It exits by itself after `idle_exit_s` without
    use, so limiters of finished jobs do not linger on a long-lived cluster."""

    def __init__(self, limits: dict[str, Any], idle_exit_s: float = 900.0) -> None:
        self.limiter = RateLimiter(Limits(**limits))
        self.idle_exit_s = idle_exit_s
        self._reaper: asyncio.Task | None = None

    def _watch(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def _reap(self) -> None:
        import ray

        while True:
            await asyncio.sleep(min(self.idle_exit_s / 4, 30.0))
            if time.monotonic() - self.limiter.last_used >= self.idle_exit_s:
                ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    async def reserve(self, tokens: int = 0) -> tuple[float, int]:
        self._watch()
        return self.limiter.reserve(tokens)

    async def penalize(self, retry_after: float | None, seq: int | None = None) -> None:
        self._watch()
        self.limiter.penalize(retry_after, seq)

    async def stats(self) -> dict[str, Any]:
        self._watch()
        return self.limiter.stats()


def limiter_actor_name(endpoint: str, limits: Limits) -> str:
    """Per endpoint and limit setting, and per code version: a newer star1 never reuses an old limiter."""
    key = hashlib.sha256(repr((endpoint, sorted(asdict(limits).items()))).encode()).hexdigest()[:12]
    return f"star1-limiter-{CODE_VERSION}-{key}"


def shared_limiter(name: str, limits: Limits, idle_exit_s: float = 900.0):
    """The named limiter actor of an endpoint, created on first use (detached: shared by every job on the
    cluster; it exits by itself when unused for `idle_exit_s`)."""
    import ray

    actor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(LimiterActor)
    return actor.options(name=name, namespace="star1", get_if_exists=True, lifetime="detached").remote(
        asdict(limits), idle_exit_s
    )
