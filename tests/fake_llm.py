"""An OpenAI-compatible chat server on 127.0.0.1 for tests and benchmarks, with fault injection.

Real HTTP (aiohttp) in a background thread. Content is scripted per model name (one model per role).
Faults: 429 with Retry-After (random or from enforced rate limits: a sliding 60 s window and/or a strict
rolling 1 s window), 500s, timeouts (a response slower than the client waits), dropped connections,
malformed bodies, truncated output (finish_reason "length"), and a fixed latency. A `plan` scripts exact
faults for prompts containing a given marker, attempt by attempt.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Responder = Callable[[dict[str, Any]], str]


@dataclass
class Faults:
    p429: float = 0.0
    p500: float = 0.0
    ptimeout: float = 0.0
    pdrop: float = 0.0
    pmalformed: float = 0.0
    ptruncated: float = 0.0
    latency_s: float = 0.0
    timeout_sleep_s: float = 30.0
    retry_after_s: float = 1.0
    rpm: int | None = None  # enforced over a sliding 60 s window
    rps: int | None = None  # enforced over a strict rolling 1 s window
    plan: dict[str, list[str]] = field(default_factory=dict)  # marker -> faults for attempts 1, 2, …


def echo_responder(req: dict[str, Any]) -> str:
    return "echo: " + req["messages"][-1]["content"][:200]


class FakeLLMServer:
    """Start with `with FakeLLMServer(...) as srv:`; `srv.base_url` is the OpenAI base URL."""

    def __init__(
        self, responders: dict[str, Responder] | None = None, faults: Faults | None = None, seed: int = 0
    ) -> None:
        self.responders = responders or {}
        self.faults = faults or Faults()
        self.rng = random.Random(seed)
        self.stats: Counter[str] = Counter()
        self.prompts: Counter[str] = Counter()  # successful completions per last user message
        self.attempts: Counter[str] = Counter()  # requests per plan marker
        self.first_request: float | None = None  # time.time() of the first request, last success
        self.last_ok: float | None = None
        self.limited_at: list[float] = []  # time.time() of each enforced-limit 429
        self._window60: deque[float] = deque()
        self._window1: deque[float] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeLLMServer:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._chat)
            app.router.add_get("/v1/models", self._models)
            app.router.add_get("/health", self._health)
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True, name="fake-llm")
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)  # type: ignore[union-attr]
        try:
            fut.result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread:
                self._thread.join(10)

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ handlers

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": m, "object": "model"} for m in self.responders]}
        )

    def _rate_limited(self, now: float) -> float | None:
        """Seconds until a slot frees, if the enforced windows are full (else records the request)."""
        f = self.faults
        with self._lock:
            while self._window60 and self._window60[0] <= now - 60.0:
                self._window60.popleft()
            while self._window1 and self._window1[0] <= now - 1.0:
                self._window1.popleft()
            waits = []
            if f.rpm is not None and len(self._window60) >= f.rpm:
                waits.append(self._window60[-f.rpm] + 60.0 - now)
            if f.rps is not None and len(self._window1) >= f.rps:
                waits.append(self._window1[-f.rps] + 1.0 - now)
            if waits:
                return max(waits)
            self._window60.append(now)
            self._window1.append(now)
            return None

    def _planned(self, text: str) -> str | None:
        for marker, seq in self.faults.plan.items():
            if marker in text:
                with self._lock:
                    self.attempts[marker] += 1
                    n = self.attempts[marker]
                return seq[n - 1] if n <= len(seq) else None
        return None

    def _random_fault(self) -> str | None:
        f = self.faults
        r = self.rng.random()
        for name, p in (
            ("429", f.p429),
            ("500", f.p500),
            ("timeout", f.ptimeout),
            ("drop", f.pdrop),
            ("malformed", f.pmalformed),
            ("truncated", f.ptruncated),
        ):
            if r < p:
                return name
            r -= p
        return None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.stats["requests"] += 1
        if self.first_request is None:
            self.first_request = time.time()
        try:
            body = await request.json()
            last = body["messages"][-1]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            self.stats["400"] += 1
            return web.json_response({"error": {"message": "bad request"}}, status=400)
        wait = self._rate_limited(time.time())
        if wait is not None:
            self.stats["429"] += 1
            self.stats["429_enforced"] += 1
            self.limited_at.append(time.time())
            return self._too_many(wait)
        fault = self._planned(last) or self._random_fault()
        if self.faults.latency_s:
            await asyncio.sleep(self.faults.latency_s)
        if fault:
            self.stats[fault] += 1
        if fault == "429":
            return self._too_many(self.faults.retry_after_s)
        if fault == "500":
            return web.json_response({"error": {"message": "injected server error"}}, status=500)
        if fault == "timeout":
            await asyncio.sleep(self.faults.timeout_sleep_s)
        if fault == "drop":
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        if fault == "malformed":
            return web.Response(text='{"id": "x", "choices": [{"message": ', content_type="application/json")
        model = body.get("model", "")
        responder = self.responders.get(model, echo_responder)
        content = responder(body)
        finish = "stop"
        if fault == "truncated":
            content, finish = content[: max(1, len(content) // 3)], "length"
        self.stats["ok"] += 1
        self.last_ok = time.time()
        with self._lock:
            self.prompts[last] += 1
        n_in = sum(len(m.get("content") or "") for m in body["messages"]) // 4
        return web.json_response(
            {
                "id": f"chatcmpl-{self.stats['requests']}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": finish,
                    }
                ],
                "usage": {
                    "prompt_tokens": n_in,
                    "completion_tokens": len(content) // 4,
                    "total_tokens": n_in + len(content) // 4,
                },
            }
        )

    @staticmethod
    def _too_many(wait: float) -> web.Response:
        headers = {"Retry-After": str(max(1, math.ceil(wait))), "retry-after-ms": str(int(wait * 1000) + 1)}
        return web.json_response(
            {"error": {"message": "rate limited", "type": "rate_limit"}}, status=429, headers=headers
        )


class FakeLLMProcess:
    """The same server in a child process, so its CPU is not taken from the caller's interpreter (benchmarks:
    the driver also runs Ray Data's executor). `stats`, `first_request` and `last_ok` are read from the child.
    Responders must be picklable (module-level functions)."""

    def __init__(
        self, responders: dict[str, Responder] | None = None, faults: Faults | None = None, seed: int = 0
    ) -> None:
        self.args = (responders, faults, seed)
        self.port = 0
        self._conn: Any = None
        self._proc: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _ask(self, what: str) -> Any:
        self._conn.send(what)
        return self._conn.recv()

    @property
    def stats(self) -> Counter[str]:
        return Counter(self._ask("stats"))

    @property
    def first_request(self) -> float | None:
        return self._ask("first_request")

    @property
    def last_ok(self) -> float | None:
        return self._ask("last_ok")

    def __enter__(self) -> FakeLLMProcess:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve_child, args=(child, *self.args), daemon=True)
        self._proc.start()
        self.port = self._conn.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.send("stop")
        self._proc.join(10)


def _serve_child(conn: Any, responders: Any, faults: Any, seed: int) -> None:
    srv = FakeLLMServer(responders, faults, seed).start()
    conn.send(srv.port)
    while (what := conn.recv()) != "stop":
        conn.send(dict(srv.stats) if what == "stats" else getattr(srv, what))
    srv.stop()
