"""Run a task over rows: concurrently in one process, over a Ray Data actor pool of CPU workers, or through a
provider's Batch API.

Every input row comes back exactly once: with the task's new fields, with `_reject` (a reason that belongs
to the row: `unparseable`, `truncated`, `client_error`, …), or with `_failed` (a transient call failure —
`rate_limited`, `server_error`, `timeout`, `connection_error`, `bad_response` — that a rerun retries; never a
reject by itself). Per-row call statistics (`_requests`, `_cache_hits`, tokens, cost) travel with the row,
so usage adds up across any number of workers.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from star1.config import RoleConfig
from star1.llm.cache import ResponseCache
from star1.llm.client import (
    Completion,
    Deferred,
    LLMCallError,
    LLMClient,
    LocalLimiter,
    RayLimiter,
    SystemicError,
)
from star1.llm.limiter import Limits, limiter_actor_name, shared_limiter
from star1.llm.parse import ParseError
from star1.stages.tasks import TASKS, Ask, Reject, Task
from star1.store import Store

ACTOR_CPUS = 0.5  # an actor mostly waits on HTTP; half a CPU each lets a pod run two
STAT_FIELDS = ("_requests", "_cache_hits", "_prompt_tokens", "_completion_tokens", "_retries", "_cost_usd")


def response_format(ask: Ask, cfg: RoleConfig) -> dict[str, Any] | None:
    if ask.schema is None or cfg.structured_output == "none":
        return None
    if cfg.structured_output == "json_object":
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": ask.schema, "strict": True}}


async def process_row(task: Task, row: dict[str, Any], client: LLMClient) -> dict[str, Any]:
    """One row through its task. Raises `Deferred` (batch mode: a call is queued) and `SystemicError`."""
    out = dict(row)
    stats = {f: 0 for f in STAT_FIELDS}  # this row's own calls only (rows of a batch run concurrently)

    async def call(messages: list[dict[str, str]], fmt: dict | None, variant: int = 0) -> Completion:
        try:
            done = await client.chat(messages, fmt, variant=variant)
        except LLMCallError as e:
            stats["_requests"] += e.attempts
            stats["_retries"] += max(0, e.attempts - 1)
            stats["_prompt_tokens"] += e.prompt_tokens
            stats["_completion_tokens"] += e.completion_tokens
            stats["_cost_usd"] += client.cfg.cost(e.prompt_tokens, e.completion_tokens)
            raise
        if done.cached and done.key not in client.fresh_batch_keys:
            stats["_cache_hits"] += 1
        else:  # paid in this run (online, or a batch result downloaded by this run)
            attempts = max(done.attempts, 1)
            p_tok = done.prompt_tokens + done.extra_prompt_tokens
            c_tok = done.completion_tokens + done.extra_completion_tokens
            stats["_requests"] += attempts
            stats["_retries"] += attempts - 1
            stats["_prompt_tokens"] += p_tok
            stats["_completion_tokens"] += c_tok
            stats["_cost_usd"] += client.cfg.cost(p_tok, c_tok) * (
                client.cfg.batch.discount if done.from_batch else 1.0
            )
        out["_format"] = done.response_format
        return done

    try:
        ask = task.ask(row)
        messages = list(ask.messages)
        fmt = response_format(ask, client.cfg)
        for attempt in range(client.cfg.reasks + 1):
            done = await call(messages, fmt)
            if ask.require_stop:  # paper: re-sample truncated generations, keep only complete ones
                variant = 0
                samples = client.cfg.resample_truncated if _samples_vary(client.cfg) else 1
                while done.finish_reason != "stop" and variant + 1 < samples:
                    variant += 1
                    done = await call(messages, fmt, variant)
                if done.finish_reason != "stop":
                    raise Reject(
                        "truncated", f"finish_reason={done.finish_reason!r} in {variant + 1} sample(s)"
                    )
            try:
                out.update(task.parse(row, done))
                break
            except ParseError as e:
                if attempt == client.cfg.reasks:
                    raise Reject("unparseable", f"{e}; last output: {done.text[:300]!r}") from None
                retry = f"Your reply could not be used ({e}). Reply again with {task.format_hint}."
                messages = [
                    *messages,
                    {"role": "assistant", "content": done.text},
                    {"role": "user", "content": retry},
                ]
    except Reject as r:
        out["_reject"], out["_detail"] = r.reason, r.detail
    except ParseError as e:
        out["_reject"], out["_detail"] = "unparseable_input", str(e)
    except SystemicError:
        raise
    except LLMCallError as e:
        if e.transient:
            out["_failed"], out["_detail"] = e.reason, str(e)
        else:
            out["_reject"], out["_detail"] = e.reason, str(e)
    out.update(stats)
    return out


def _samples_vary(cfg: RoleConfig) -> bool:
    """Whether asking again can give another answer (greedy decoding repeats itself)."""
    return cfg.sampling.temperature is None or cfg.sampling.temperature > 0


async def process_rows(task: Task, rows: list[dict[str, Any]], client: LLMClient) -> list[dict[str, Any]]:
    """As many rows at a time as the client's in-flight window. Starting every row of a batch at once would
    keep the event loop busy preparing hundreds of prompts between a rate-limit grant and its send, so
    requests would reach the provider later than granted (and bunched). A systemic failure cancels the rest
    and propagates."""
    out: list[dict[str, Any]] = [{} for _ in rows]
    todo = iter(enumerate(rows))

    async def worker() -> None:
        for i, row in todo:  # one shared iterator: each row is taken once
            out[i] = await process_row(task, row, client)

    async with asyncio.TaskGroup() as group:
        for _ in range(min(len(rows), client.cfg.concurrency)):
            group.create_task(worker())
    return out


async def process_rows_deferring(
    task: Task, rows: list[dict[str, Any]], client: LLMClient
) -> list[dict[str, Any] | None]:
    """Batch mode: each row runs until it needs a call that is not in the cache (None: deferred)."""

    async def one(row: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return await process_row(task, row, client)
        except Deferred:
            return None

    return list(await asyncio.gather(*(one(r) for r in rows)))


def limits_of(cfg: RoleConfig) -> Limits:
    return Limits(
        rpm=cfg.rpm,
        tpm=cfg.tpm,
        rps=cfg.rps,
        burst=cfg.burst,
        window=cfg.limit_window,
        adaptive=cfg.adaptive_limits,
    )


def limiter_name(cfg: RoleConfig) -> str:
    return limiter_actor_name(f"{cfg.base_url.rstrip('/')}|{cfg.model}|{cfg.api_key_env}", limits_of(cfg))


class StartGate:
    """Ray actor: holds each pool actor at the end of its start until the whole pool has arrived or `wait_s`
    has passed (then the actors that did start go ahead alone)."""

    def __init__(self, size: int) -> None:
        self.size, self.arrived = size, 0
        self.full = asyncio.Event()

    async def arrive(self, wait_s: float) -> int:
        self.arrived += 1
        if self.arrived >= self.size:
            self.full.set()
        try:
            await asyncio.wait_for(self.full.wait(), wait_s)
        except TimeoutError:
            pass
        return self.arrived


class TaskActor:
    """Ray Data callable: one client per actor, the endpoint's limiter shared across all actors."""

    def __init__(
        self,
        task: str,
        options: dict[str, Any],
        role_cfg: dict[str, Any],
        store_uri: str | None,
        store_opts: dict[str, Any],
        gate: Any = None,
        gate_wait_s: float = 0,
    ) -> None:
        self.task = TASKS[task](options=options)
        cfg = RoleConfig.model_validate(role_cfg)
        limits = limits_of(cfg)
        limiter = RayLimiter(limiter_name(cfg), limits) if limits.active else None
        cache = ResponseCache(Store.from_uri(store_uri, **store_opts)) if store_uri else None
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.client = LLMClient(self.task.role, cfg, cache, limiter, self.task.template_hash())
        if gate is not None:
            import ray

            try:
                ray.get(gate.arrive.remote(gate_wait_s))
            except ray.exceptions.RayActorError:
                pass  # the gate is gone (an actor restarted after the run let it go): nothing to wait for

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        rows = [json.loads(s) for s in batch["row"]]
        try:
            out = self.loop.run_until_complete(process_rows(self.task, rows, self.client))
        except* SystemicError as group:
            raise group.exceptions[0] from None
        fallbacks = list(self.client.usage.fallbacks)
        for r in out:
            r["_fallbacks"] = fallbacks
        return {"row": [json.dumps(r, ensure_ascii=False) for r in out]}


def _named(e: SystemicError, task: Task, cfg: RoleConfig) -> SystemicError:
    """The error with the role, model and endpoint that caused it, for the one line the user sees."""
    where = f"role {task.role} (model {cfg.model} at {cfg.base_url})"
    return SystemicError("systemic", f"{where}: {e.message}", e.attempts)


def _systemic_cause(exc: BaseException) -> SystemicError | None:
    """The SystemicError inside whatever Ray wrapped it in (task error, Ray Data's user-code error)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, SystemicError):
            return e
        todo += [e.__cause__, e.__context__, getattr(e, "cause", None)]
        if isinstance(e, BaseExceptionGroup):
            todo += list(e.exceptions)
    text = str(exc)
    if "SystemicError" in text:  # the error crossed a process boundary as text only: keep its first line
        first = text.split("SystemicError:")[-1].strip().splitlines()[0]
        message = re.sub(r"^systemic after \d+ attempt\(s\): ", "", first)[:500]
        attempts = re.match(r"^systemic after (\d+) attempt", first)
        return SystemicError("systemic", message, int(attempts.group(1)) if attempts else 0)
    return None


def run_task(
    task: Task,
    rows: list[dict[str, Any]],
    cfg: RoleConfig,
    store: Store | None,
    store_opts: dict[str, Any] | None = None,
    use_ray: bool = False,
    actors: int = 1,
    batch_size: int = 64,
    start_wait_s: float = 120,
    limiter_idle_exit_s: float = 900,
    log: Any = None,
) -> list[dict[str, Any]]:
    """All rows back, in input order, each with new fields, `_reject` or `_failed`. With Ray, no actor takes a
    batch until the whole pool has started or `start_wait_s` has passed (0: each goes as it starts): actors
    start seconds apart, and the first ones would otherwise spend a burst budget alone at a fraction of the
    pool's rate. Raises SystemicError when the endpoint fails every first call alike."""
    if not rows:
        return []
    if cfg.mode == "batch":
        return _run_batch(task, rows, cfg, store, log)
    if not use_ray:

        async def go() -> list[dict[str, Any]]:
            limits = limits_of(cfg)
            client = LLMClient(
                task.role,
                cfg,
                ResponseCache(store) if store else None,
                LocalLimiter(limits) if limits.active else None,
                task.template_hash(),
            )
            try:
                out = await process_rows(task, rows, client)
            except* SystemicError as group:
                raise _named(group.exceptions[0], task, cfg) from None
            finally:
                await client.aclose()
            for r in out:
                r["_fallbacks"] = list(client.usage.fallbacks)
            return out

        return asyncio.run(go())

    import ray

    limits = limits_of(cfg)
    if limits.active:  # start the shared limiter before the workers, so none waits for it to spawn
        ray.get(shared_limiter(limiter_name(cfg), limits, limiter_idle_exit_s).stats.remote())
    # rows travel as JSON strings (their nested fields vary by stage), tagged with their position
    items = [{"row": json.dumps({**r, "_i": i}, ensure_ascii=False)} for i, r in enumerate(rows)]
    # whole batches per block: a partial extra block would run alone on one actor after the others finish
    ds = ray.data.from_items(items, override_num_blocks=max(1, -(-len(rows) // batch_size)))
    gate = ray.remote(num_cpus=0)(StartGate).remote(actors) if actors > 1 and start_wait_s > 0 else None
    out = ds.map_batches(
        TaskActor,
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=ACTOR_CPUS,
        fn_constructor_kwargs={
            "task": task.name,
            "options": task.options,
            "role_cfg": cfg.model_dump(mode="json"),
            "store_uri": store.uri if store else None,
            "store_opts": store_opts or {},
            "gate": gate,
            "gate_wait_s": start_wait_s,
        },
    )
    try:
        taken = out.take_all()
    except Exception as e:
        cause = _systemic_cause(e)
        if cause is not None:
            raise _named(cause, task, cfg) from None
        raise
    finally:
        if gate is not None:
            ray.kill(gate)
    got = sorted((json.loads(r["row"]) for r in taken), key=lambda r: r["_i"])
    if [r["_i"] for r in got] != list(range(len(rows))):
        raise RuntimeError(f"{task.name}: {len(rows)} rows in but {len(got)} came back from Ray")
    for r in got:
        del r["_i"]
    return got


def _run_batch(
    task: Task, rows: list[dict[str, Any]], cfg: RoleConfig, store: Store | None, log: Any = None
) -> list[dict]:
    """Rounds through the provider's Batch API (see star1.llm.batch), in this process."""
    from star1.llm.batch import BatchRunner

    if store is None:
        raise ValueError("batch mode needs a store (batch ids and results are kept there)")

    async def go() -> list[dict[str, Any]]:
        client = LLMClient(task.role, cfg, ResponseCache(store), None, task.template_hash())
        say = (lambda m: log(f"{task.name}: {m}")) if log else None
        runner = BatchRunner(client, store, f"batches/{task.name}", say)
        try:
            out = await runner.run(lambda pending: process_rows_deferring(task, pending, client), rows)
        finally:
            await client.aclose()
        for r in out:
            r["_fallbacks"] = list(client.usage.fallbacks)
        return out

    return asyncio.run(go())
