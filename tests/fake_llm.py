"""An OpenAI-compatible chat server on 127.0.0.1 for tests and benchmarks, imitating what real providers do.

Real HTTP (aiohttp) in a background thread (or its own process: `FakeLLMProcess`). Content is scripted per
model name (one model per role). Provider behaviours it imitates, independent of star1's own model of them:
- **rate limits** enforced three ways: a sliding 60 s window (`rpm`), a strict rolling 1 s window (`rps`),
  a token bucket (`bucket=(capacity, refill_per_s)`); refusals are 429s whose Retry-After comes in the
  provider's style (`retry_after_style`: seconds + `retry-after-ms`, integer seconds only, an HTTP date,
  absent, or a literal such as `soon`);
- **faults** drawn per request body and attempt (so which request fails does not depend on arrival order):
  429, 500, timeouts, dropped connections, malformed bodies, truncated output (finish_reason "length"),
  empty content (billed), malformed JSON despite a response_format (`malformed_json`), and a `plan`
  scripting exact faults for requests containing a marker (`model:marker` for one model's requests);
- **structured output**: `response_format` json_schema / json_object answered per schema (like guided
  decoding), or refused the way some servers refuse it (`reject_formats`, e.g. llama.cpp's 500 for
  json_schema);
- **reasoning fields**: with `reasoning_field`, the thinking goes to `message.reasoning_content` (DeepSeek,
  vLLM reasoning parsers) or `message.reasoning`, and the content holds only the answer; with
  `prompt_opens_think` too (an R1-Distill template: the output has `</think>` but no `<think>`), as vLLM's
  `deepseek_r1` parser does, an output without `</think>` is all reasoning and the content is null;
- **finish reasons**: a responder may return `(content, finish_reason)`, e.g. "length" for an output cut at
  max_tokens;
- the **Batch API** (files + batches endpoints, see tests/fake_batches.py).
Every answered request body is logged (`answered`: body hash → times answered), so tests and benchmarks
count paid-twice calls from the server's own view.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import math
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Responder = Callable[[dict[str, Any]], str | tuple[str, str]]
FAULTS = ("429", "500", "timeout", "drop", "malformed", "truncated", "empty")


@dataclass
class Faults:
    p429: float = 0.0
    p500: float = 0.0
    ptimeout: float = 0.0
    pdrop: float = 0.0
    pmalformed: float = 0.0
    ptruncated: float = 0.0
    pempty: float = 0.0
    latency_s: float = 0.0
    timeout_sleep_s: float = 30.0
    retry_after_s: float = 1.0
    rpm: int | None = None  # enforced over a sliding 60 s window
    rps: int | None = None  # enforced over a strict rolling 1 s window
    bucket: tuple[int, float] | None = None  # token bucket: (capacity, refill per second)
    retry_after_style: str = "ms"  # ms | seconds | date | none | any literal header value
    reject_formats: dict[str, tuple[int, str]] = field(default_factory=dict)  # format type -> (status, msg)
    reasoning_field: str | None = None  # reasoning_content | reasoning
    prompt_opens_think: bool = False  # with reasoning_field: the template opened <think> (vLLM deepseek_r1)
    plan: dict[str, list[str]] = field(default_factory=dict)  # marker -> faults for attempts 1, 2, …
    count_refused: bool = False  # a provider that counts refused requests against the window too


def echo_responder(req: dict[str, Any]) -> str:
    return "echo: " + req["messages"][-1]["content"][:200]


def body_hash(body: dict[str, Any]) -> str:
    """Identity of a request as the provider sees it (everything but transport)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:24]


def _unit(*parts: Any) -> float:
    """A deterministic draw in [0, 1) from the given parts."""
    h = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def schema_instance(schema: dict[str, Any]) -> Any:
    """A minimal instance that satisfies `schema` (what a guided decoder would be forced into)."""
    t = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if t == "object":
        props = schema.get("properties", {})
        return {k: schema_instance(props.get(k, {})) for k in schema.get("required", list(props))}
    if t == "array":
        return [schema_instance(schema.get("items", {})) for _ in range(max(1, schema.get("minItems", 1)))]
    if t == "integer":
        return int(schema.get("minimum", 0))
    if t == "number":
        return float(schema.get("minimum", 0))
    if t == "boolean":
        return False
    return ""


def constrain(text: str, fmt: dict[str, Any]) -> str:
    """The responder's text as a server honouring `response_format` would return it."""
    import jsonschema

    candidates = [m.group(1) for m in re.finditer(r"```(?:json)?\s*(.*?)```", text, re.S)] + [text]
    value: Any = None
    for cand in candidates:
        try:
            value = json.loads(cand)
            break
        except ValueError:
            continue
    if fmt.get("type") == "json_schema":
        schema = fmt.get("json_schema", {}).get("schema", {})
        try:
            jsonschema.validate(value, schema)
        except jsonschema.ValidationError:
            value = schema_instance(schema)
    elif not isinstance(value, dict):
        value = {}
    return json.dumps(value, ensure_ascii=False)


class FakeLLMServer:
    """Start with `with FakeLLMServer(...) as srv:`; `srv.base_url` is the OpenAI base URL."""

    def __init__(
        self,
        responders: dict[str, Responder] | None = None,
        faults: Faults | None = None,
        seed: int = 0,
        api_keys: Collection[str] = (),
    ) -> None:
        self.responders = responders or {}
        self.api_keys = set(api_keys)  # when set, a request must carry one of them (`Authorization: Bearer`)
        self.faults = faults or Faults()
        self.seed = seed
        self.stats: Counter[str] = Counter()
        self.prompts: Counter[str] = Counter()  # successful completions per last user message
        self.answered: Counter[str] = Counter()  # successful completions per request body hash
        self.answered_at: dict[str, list[float]] = {}  # body hash -> time.time() of each completion
        self.by_model: Counter[str] = Counter()  # successful completions per model
        self.attempts: Counter[str] = Counter()  # requests per plan marker
        self._body_attempts: Counter[str] = Counter()  # requests per body hash (fault draws)
        self.first_request: float | None = None  # time.time() of the first request, last success
        self.last_ok: float | None = None
        self.limited_at: list[float] = []  # time.time() of each enforced-limit 429
        self._window60: deque[float] = deque()
        self._window1: deque[float] = deque()
        b = self.faults.bucket
        self._bucket = (float(b[0]), time.monotonic()) if b else (0.0, 0.0)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        from tests.fake_batches import BatchAPI

        self.batches = BatchAPI(self)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeLLMServer:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            app = web.Application(client_max_size=256 * 1024**2)
            app.router.add_post("/v1/chat/completions", self._chat)
            app.router.add_get("/v1/models", self._models)
            app.router.add_get("/health", self._health)
            self.batches.add_routes(app)
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
        """Seconds until a slot frees, if an enforced limit refuses the request (else it is counted)."""
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
            if f.bucket is not None:
                cap, refill = f.bucket
                level, at = self._bucket
                mono = time.monotonic()
                level = min(float(cap), level + (mono - at) * refill)
                self._bucket = (level, mono)
                if level < 1.0:
                    waits.append((1.0 - level) / refill)
            if waits and not f.count_refused:
                return max(waits)
            self._window60.append(now)
            self._window1.append(now)
            if f.bucket is not None:
                level, at = self._bucket
                self._bucket = (level - 1.0, at)
            return max(waits) if waits else None

    def _planned(self, body: dict[str, Any]) -> str | None:
        """A scripted fault for requests whose messages contain a marker (`model:marker` limits it to one
        model), attempt by attempt over all such requests."""
        text = "\n".join(str(m.get("content") or "") for m in body["messages"])
        for marker, seq in self.faults.plan.items():
            model, _, word = marker.rpartition(":")
            if word in text and (not model or model == body.get("model")):
                with self._lock:
                    self.attempts[marker] += 1
                    n = self.attempts[marker]
                return seq[n - 1] if n <= len(seq) else None
        return None

    def _random_fault(self, key: str) -> str | None:
        """Drawn from (seed, request body, attempt at that body): the same request meets the same faults
        whatever order requests arrive in."""
        f = self.faults
        with self._lock:
            self._body_attempts[key] += 1
            attempt = self._body_attempts[key]
        r = _unit(self.seed, key, attempt)
        for name, p in zip(
            FAULTS, (f.p429, f.p500, f.ptimeout, f.pdrop, f.pmalformed, f.ptruncated, f.pempty), strict=True
        ):
            if r < p:
                return name
            r -= p
        return None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.stats["requests"] += 1
        if (
            self.api_keys
            and request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.api_keys
        ):
            self.stats["401"] += 1
            return web.json_response(
                {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                           "code": "invalid_api_key"}},
                status=401,
            )  # fmt: skip
        if self.first_request is None:
            self.first_request = time.time()
        try:
            body = await request.json()
            body["messages"][-1]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            self.stats["400"] += 1
            return web.json_response({"error": {"message": "bad request"}}, status=400)
        fmt = body.get("response_format")
        if fmt and fmt.get("type") in self.faults.reject_formats:
            status, message = self.faults.reject_formats[fmt["type"]]
            self.stats[f"refused_{fmt['type']}"] += 1
            return web.json_response(
                {"error": {"message": message, "type": "invalid_request"}}, status=status
            )
        wait = self._rate_limited(time.time())
        if wait is not None:
            self.stats["429"] += 1
            self.stats["429_enforced"] += 1
            self.limited_at.append(time.time())
            return self._too_many(wait)
        key = body_hash(body)
        fault = self._planned(body) or self._random_fault(key)
        if self.faults.latency_s:
            await asyncio.sleep(self.faults.latency_s)
        if fault:
            self.stats[fault] += 1
        if fault == "429":
            return self._too_many(self.faults.retry_after_s)
        if fault == "500":
            return web.json_response({"error": {"message": "injected server error"}}, status=500)
        if fault in ("400", "401", "404", "422"):
            message = {"401": "Incorrect API key provided", "404": "The model does not exist"}.get(
                fault, "This model's maximum context length is exceeded"
            )
            return web.json_response(
                {"error": {"message": message, "type": "invalid_request"}}, status=int(fault)
            )
        if fault == "timeout":
            await asyncio.sleep(self.faults.timeout_sleep_s)
        if fault == "drop":
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        if fault == "malformed":
            return web.Response(text='{"id": "x", "choices": [{"message": ', content_type="application/json")
        return web.json_response(self.complete(body, fault))

    def complete(self, body: dict[str, Any], fault: str | None = None) -> dict[str, Any]:
        """The chat completion object for `body` (also used by the Batch API)."""
        model = body.get("model", "")
        out = self.responders.get(model, echo_responder)(body)
        content, finish = out if isinstance(out, tuple) else (out, "stop")
        fmt = body.get("response_format")
        if fmt and fault != "malformed_json":
            content = constrain(content, fmt)
        elif fault == "malformed_json":
            content = "this is not JSON {"
        if fault == "truncated":
            content, finish = content[: max(1, len(content) // 3)], "length"
        message: dict[str, Any] = {"role": "assistant", "content": content}
        field_name = self.faults.reasoning_field
        opened = self.faults.prompt_opens_think
        think = rf"\s*{'(?:<think>)?' if opened else '<think>'}\n?(.*?)\n?</think>\s*(.*)"
        if field_name and content and (m := re.match(think, content, re.S)):
            message[field_name], message["content"] = m.group(1), m.group(2)
        elif field_name and content and opened:
            message[field_name], message["content"] = content, None
        n_out = len(content or "") // 4
        if fault == "empty":
            message["content"] = None  # billed, but nothing to use
        self.stats["ok"] += 1
        self.last_ok = time.time()
        with self._lock:
            self.prompts[body["messages"][-1]["content"]] += 1
            self.answered[body_hash(body)] += 1
            self.by_model[model] += 1
            self.answered_at.setdefault(body_hash(body), []).append(self.last_ok)
        n_in = sum(len(m.get("content") or "") for m in body["messages"]) // 4
        return {
            "id": f"chatcmpl-{self.stats['requests']}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out},
        }

    def _too_many(self, wait: float) -> web.Response:
        style = self.faults.retry_after_style
        headers: dict[str, str] = {}
        if style == "ms":
            headers = {
                "Retry-After": str(max(1, math.ceil(wait))),
                "retry-after-ms": str(int(wait * 1000) + 1),
            }
        elif style == "seconds":
            headers = {"Retry-After": str(max(1, math.ceil(wait)))}
        elif style == "date":
            headers = {"Retry-After": email.utils.formatdate(time.time() + wait + 1, usegmt=True)}
        elif style != "none":
            headers = {"Retry-After": style}
        return web.json_response(
            {"error": {"message": "rate limited", "type": "rate_limit"}}, status=429, headers=headers
        )


class FakeLLMProcess:
    """The same server in a child process, so its CPU is not taken from the caller's interpreter (benchmarks:
    the driver also runs Ray Data's executor). Attributes are read from the child. Responders must be
    picklable (module-level functions)."""

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
    def answered(self) -> Counter[str]:
        return Counter(self._ask("answered"))

    @property
    def prompts(self) -> Counter[str]:
        return Counter(self._ask("prompts"))

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
        value = getattr(srv, what)
        conn.send(dict(value) if isinstance(value, Counter) else value)
    srv.stop()
