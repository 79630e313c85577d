"""Request/token rate limits shared by every worker that calls one endpoint.

The limiter hands out *reservations*: a caller asks for a slot (and its token estimate) and is told when to
send. Grants are spaced so that no window ever holds more than its limit: a sliding 60-second window for
requests and tokens per minute (bursts allowed, as most providers count) and, if set, a strict rolling
per-second window, paced evenly through the second so a burst never arrives as a clump. A 429 with a long
Retry-After pauses every caller until then; any 429 widens the spacing by 1% (clock skew and network jitter
make the provider see bursts the limiter did not grant), relaxing again after runs of clean grants.
One limiter lives in a named Ray actor per endpoint, so all Ray workers share it; without Ray the same class
runs in-process.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    rpm: int | None = None  # requests per sliding 60 s
    tpm: int | None = None  # tokens (prompt estimate + max output) per sliding 60 s
    rps: int | None = None  # requests per strict rolling second
    margin: float = 0.02  # fraction of each window added as a safety gap (clock skew, network jitter)
    min_pause_s: float = (
        1.0  # a Retry-After at least this long pauses every caller; shorter ones only the one
    )

    @property
    def active(self) -> bool:
        return any(x is not None for x in (self.rpm, self.tpm, self.rps))


class _Window:
    """Grants (times and weights) in a rolling window of `span` seconds holding at most `limit` weight."""

    def __init__(self, limit: int, span: float, smooth: bool = False) -> None:
        self.limit, self.base_span, self.span, self.smooth = limit, span, span, smooth
        self.times: deque[float] = deque()
        self.weights: deque[int] = deque()
        self.total = 0

    def _expire(self, now: float) -> None:
        while self.times and self.times[0] <= now - self.span:
            self.times.popleft()
            self.total -= self.weights.popleft()

    def earliest(self, now: float, weight: int) -> float:
        """Earliest t ≥ now at which adding `weight` keeps every window ending at or after t within limit."""
        weight = min(weight, self.limit)  # an oversize request waits for an empty window, never forever
        self._expire(now)
        t = max(now, self.times[-1] if self.times else now)  # grants stay in time order
        if self.smooth and self.times:  # evenly spaced: a burst would arrive as a clump and overflow
            t = max(t, self.times[-1] + self.span / self.limit)
        excess = self.total + weight - self.limit
        if excess <= 0:
            return t
        freed = 0
        for ti, wi in zip(self.times, self.weights, strict=True):
            freed += wi
            if freed >= excess:
                return max(t, ti + self.span)
        return t  # unreachable: weight ≤ limit

    def add(self, t: float, weight: int) -> None:
        i = bisect.bisect_right(self.times, t)
        self.times.insert(i, t)
        self.weights.insert(i, weight)
        self.total += weight


class RateLimiter:
    """Reservation-based limiter. `reserve()` returns seconds to wait before sending (0 when free)."""

    def __init__(self, limits: Limits, clock=time.time) -> None:
        self.limits = limits
        self.clock = clock
        pad = 1.0 + limits.margin
        self.windows: list[tuple[_Window, bool]] = []  # (window, counts tokens?)
        if limits.rpm:
            self.windows.append((_Window(limits.rpm, 60.0 * pad), False))
        if limits.rps:
            self.windows.append((_Window(limits.rps, 1.0 * pad, smooth=True), False))
        if limits.tpm:
            self.windows.append((_Window(limits.tpm, 60.0 * pad), True))
        self.paused_until = 0.0
        self.granted = 0
        self.penalties = 0
        self.slowdown = 1.0  # multiplies every window's span; grows on 429s, decays on clean grants
        self._clean = 0

    def reserve(self, tokens: int = 0) -> float:
        """Seconds to wait before sending."""
        return max(0.0, self.reserve_at(tokens) - self.clock())

    def reserve_at(self, tokens: int = 0) -> float:
        """The clock time at which to send. Callers on other processes sleep until this absolute time, so
        the latency of asking does not shift when the request arrives."""
        now = self.clock()
        t = max(now, self.paused_until)
        for _ in range(4):  # a later t can only free more room; iterate to a fixed point
            t_next = (
                max(w.earliest(t, tokens if is_tok else 1) for w, is_tok in self.windows)
                if self.windows
                else t
            )
            if t_next <= t:
                break
            t = t_next
        for w, is_tok in self.windows:
            w.add(t, tokens if is_tok else 1)
        self.granted += 1
        self._clean += 1
        if self._clean >= 50 and self.slowdown > 1.0:
            self._set_slowdown(self.slowdown / 1.01)
        return t

    def _set_slowdown(self, value: float) -> None:
        self.slowdown, self._clean = min(max(value, 1.0), 1.2), 0
        for w, _ in self.windows:
            w.span = w.base_span * self.slowdown

    def penalize(self, retry_after: float) -> None:
        """The provider said 429. A long Retry-After (the provider's budget is spent) pauses every caller
        until then; a short one (a window momentarily overfull by arrival jitter) costs only the refused
        request its retry. Either way the spacing widens by 1%."""
        self.penalties += 1
        if retry_after >= self.limits.min_pause_s:
            self.paused_until = max(self.paused_until, self.clock() + retry_after)
        self._set_slowdown(self.slowdown * 1.01)

    def stats(self) -> dict[str, float]:
        return {"granted": self.granted, "penalties": self.penalties, "slowdown": round(self.slowdown, 3)}


class LimiterActor:
    """Ray actor body: one shared RateLimiter per endpoint (see `shared_limiter`)."""

    def __init__(
        self, rpm: int | None, tpm: int | None, rps: int | None, margin: float, min_pause_s: float
    ) -> None:
        self.limiter = RateLimiter(Limits(rpm, tpm, rps, margin, min_pause_s))

    def reserve_at(self, tokens: int = 0) -> float:
        return self.limiter.reserve_at(tokens)

    def penalize(self, retry_after: float) -> None:
        self.limiter.penalize(retry_after)

    def stats(self) -> dict[str, float]:
        return self.limiter.stats()


def shared_limiter(name: str, limits: Limits):
    """The named limiter actor of an endpoint, created on first use (detached from any worker)."""
    import ray

    actor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(LimiterActor)
    return actor.options(name=name, namespace="star1", get_if_exists=True, lifetime="detached").remote(
        limits.rpm, limits.tpm, limits.rps, limits.margin, limits.min_pause_s
    )
