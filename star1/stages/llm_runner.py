"""Run a task over rows: concurrently in one process, or over a Ray Data actor pool of CPU workers.

Every input row comes back exactly once, either with the task's new fields or with `_reject` set to a
reason (`only_other`, `truncated`, `unparseable`, `rate_limited`, …) and `_detail`. Per-row call statistics
(`_requests`, `_cache_hits`, tokens, cost) travel with the row, so usage adds up across any number of workers.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from star1.config import RoleConfig
from star1.llm.cache import ResponseCache
from star1.llm.client import Completion, LLMCallError, LLMClient, LocalLimiter, RayLimiter
from star1.llm.limiter import Limits, shared_limiter
from star1.llm.parse import ParseError
from star1.manifest import stable_hash
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
    out = dict(row)
    stats = {f: 0 for f in STAT_FIELDS}  # this row's own calls only (rows of a batch run concurrently)

    async def call(messages: list[dict[str, str]], fmt: dict | None) -> Completion:
        try:
            done = await client.chat(messages, fmt)
        except LLMCallError as e:
            stats["_requests"] += e.attempts
            stats["_retries"] += e.attempts - 1
            raise
        if done.cached:
            stats["_cache_hits"] += 1
        else:
            stats["_requests"] += done.attempts
            stats["_retries"] += done.attempts - 1
            stats["_prompt_tokens"] += done.prompt_tokens
            stats["_completion_tokens"] += done.completion_tokens
            stats["_cost_usd"] += client.cfg.cost(done.prompt_tokens, done.completion_tokens)
        return done

    try:
        ask = task.ask(row)
        messages = list(ask.messages)
        fmt = response_format(ask, client.cfg)
        for attempt in range(client.cfg.reasks + 1):
            done = await call(messages, fmt)
            if ask.require_stop and done.finish_reason != "stop":
                raise Reject("truncated", f"finish_reason={done.finish_reason!r}")
            try:
                out.update(task.parse(row, done.text))
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
    except LLMCallError as e:
        out["_reject"], out["_detail"] = e.reason, str(e)
    out.update(stats)
    return out


async def process_rows(task: Task, rows: list[dict[str, Any]], client: LLMClient) -> list[dict[str, Any]]:
    """As many rows at a time as the client's in-flight window. Starting every row of a batch at once would
    keep the event loop busy preparing hundreds of prompts between a rate-limit grant and its send, so
    requests would reach the provider later than granted (and bunched)."""
    out: list[dict[str, Any]] = [{} for _ in rows]
    todo = iter(enumerate(rows))

    async def worker() -> None:
        for i, row in todo:  # one shared iterator: each row is taken once
            out[i] = await process_row(task, row, client)

    await asyncio.gather(*(worker() for _ in range(min(len(rows), client.cfg.concurrency))))
    return out


def limits_of(cfg: RoleConfig) -> Limits:
    return Limits(cfg.rpm, cfg.tpm, cfg.rps)


def limiter_name(cfg: RoleConfig) -> str:
    return (
        "star1-limiter-"
        + stable_hash(
            {
                "url": cfg.base_url.rstrip("/"),
                "model": cfg.model,
                "key_env": cfg.api_key_env,
                "limits": limits_of(cfg).__dict__,
            }
        )[:16]
    )


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
        limiter = RayLimiter(shared_limiter(limiter_name(cfg), limits)) if limits.active else None
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
        out = self.loop.run_until_complete(process_rows(self.task, rows, self.client))
        return {"row": [json.dumps(r, ensure_ascii=False) for r in out]}


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
) -> list[dict[str, Any]]:
    """All rows back, in input order, each with new fields or `_reject`. With Ray, no actor takes a batch
    until the whole pool has started or `start_wait_s` has passed (0: each goes as it starts): actors start
    seconds apart, and the first ones would otherwise spend a burst budget alone at a fraction of the
    pool's rate."""
    if not rows:
        return []
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
                return await process_rows(task, rows, client)
            finally:
                await client.aclose()

        return asyncio.run(go())

    import ray

    limits = limits_of(cfg)
    if limits.active:  # start the shared limiter before the workers, so none waits for it to spawn
        ray.get(shared_limiter(limiter_name(cfg), limits).stats.remote())
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
    finally:
        if gate is not None:
            ray.kill(gate)
    got = sorted((json.loads(r["row"]) for r in taken), key=lambda r: r["_i"])
    if [r["_i"] for r in got] != list(range(len(rows))):
        raise RuntimeError(f"{task.name}: {len(rows)} rows in but {len(got)} came back from Ray")
    for r in got:
        del r["_i"]
    return got
