"""Provider Batch APIs (OpenAI-style: JSONL upload → batch create → poll → download) behind the same response
cache, parsers, usage and reject accounting as online calls.

Rows run in rounds. In each round every pending row runs through its task with a client that answers from
the response cache and queues every miss (`Deferred`). The queued requests go out as batch files, split to
the provider's limits (`batch.max_requests`, `batch.max_bytes`), are polled to an end state, and their
answers are written into the response cache. The next round re-runs the rows that were waiting: their calls
now hit the cache, and any follow-up call (a re-ask, a re-sample) is queued for the next batch. A request
that failed in a batch (5xx, 429, expired) is sent again in the next round until the role's `max_attempts`;
a 4xx fails its row at once. Each batch is recorded in the store the moment it is created, so a killed job
resumes by polling the batches it already made instead of paying for them again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from star1.llm.client import RETRYABLE_STATUS, Completion, LLMCallError, LLMClient, SystemicError, backoff
from star1.store import Store

log = logging.getLogger("star1.llm.batch")
TERMINAL = {"completed", "failed", "expired", "cancelled"}
Row = dict[str, Any]


class BatchRunner:
    def __init__(
        self,
        client: LLMClient,
        store: Store,
        folder: str,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.client, self.store, self.folder = client, store, folder.strip("/")
        self.cfg = client.cfg.batch
        self.say = say or log.info
        self.tries: Counter[str] = Counter()  # batch attempts per request key in this run
        self.stats: Counter[str] = Counter()  # batches created / resumed, lines ok / failed
        self.bodies: dict[str, dict[str, Any]] = {}  # request body per key

    # ------------------------------------------------------------------ rounds

    async def run(
        self, process: Callable[[list[Row]], Awaitable[list[Row | None]]], rows: list[Row]
    ) -> list[Row]:
        """Every row back, in order: finished by `process`, or `_failed` if batches could not finish it."""
        results: list[Row | None] = [None] * len(rows)
        pending = list(range(len(rows)))
        try:
            for round_no in range(1, self.cfg.max_rounds + 1):
                self.client.deferred = []
                outs = await process([rows[i] for i in pending])
                waiting = [i for i, o in zip(pending, outs, strict=True) if o is None]
                for i, o in zip(pending, outs, strict=True):
                    if o is not None:
                        results[i] = o
                if not waiting:
                    break
                requests = {r["key"]: r for r in self.client.deferred}
                self.say(
                    f"batch round {round_no}: {len(waiting)} row(s) waiting on {len(requests)} request(s)"
                )
                await self.submit_and_collect(list(requests.values()))
                pending = waiting
            else:
                for i in pending:
                    results[i] = {
                        **rows[i],
                        "_failed": "batch_incomplete",
                        "_detail": f"still waiting after {self.cfg.max_rounds} batch rounds",
                    }
        finally:
            self.client.deferred = None
        return [r for r in results if r is not None]

    # ------------------------------------------------------------------ one round of batches

    def _records(self) -> list[dict[str, Any]]:
        return [self.store.read_json(p) for p in self.store.list(self.folder, suffix=".json")]

    def _save(self, record: dict[str, Any]) -> None:
        self.store.write_json(f"{self.folder}/{record['record_id']}.json", record)

    async def submit_and_collect(self, requests: list[dict[str, Any]]) -> None:
        self.bodies.update({r["key"]: r["body"] for r in requests})
        open_by_key = {k: rec for rec in self._records() if rec["state"] != "done" for k in rec["keys"]}
        resumed = {
            open_by_key[r["key"]]["record_id"]: open_by_key[r["key"]]
            for r in requests
            if r["key"] in open_by_key
        }
        fresh = sorted((r for r in requests if r["key"] not in open_by_key), key=lambda r: r["key"])
        records = list(resumed.values())
        if resumed:
            self.stats["resumed"] += len(resumed)
            ids = sorted(r.get("batch_id", r["record_id"]) for r in resumed.values())
            self.say(f"resuming {len(resumed)} batch(es) created by an earlier run: {ids}")
        for rec in records:
            if rec["state"] == "submitting":  # killed between upload and create: find it, or create it now
                await self._adopt_or_create(rec)
        for chunk in self._chunks(fresh):
            records.append(await self._create(chunk))
        await asyncio.gather(*(self._finish(rec) for rec in records))

    def _chunks(self, requests: list[dict[str, Any]]) -> list[list[bytes]]:
        chunks: list[list[bytes]] = []
        size = 0
        for r in requests:
            line = (
                json.dumps(
                    {
                        "custom_id": r["key"],
                        "method": "POST",
                        "url": "/v1/chat/completions",
                        "body": r["body"],
                    },
                    ensure_ascii=False,
                )
                + "\n"
            ).encode()
            if len(line) > self.cfg.max_bytes:
                raise ValueError(
                    f"one request is {len(line)} bytes, over batch.max_bytes {self.cfg.max_bytes}"
                )
            if (
                not chunks
                or len(chunks[-1]) >= self.cfg.max_requests
                or size + len(line) > self.cfg.max_bytes
            ):
                chunks.append([])
                size = 0
            chunks[-1].append(line)
            size += len(line)
        return chunks

    async def _api(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """A Files/Batches API call, retried like a chat call on transient errors."""
        import openai

        for attempt in range(1, self.client.cfg.max_attempts + 1):
            try:
                return await call()
            except openai.APIStatusError as e:
                if e.status_code not in RETRYABLE_STATUS or attempt == self.client.cfg.max_attempts:
                    raise SystemicError(
                        "systemic", f"batch API {what}: HTTP {e.status_code}: {e}", attempt
                    ) from None
            except (openai.APITimeoutError, openai.APIConnectionError) as e:
                if attempt == self.client.cfg.max_attempts:
                    raise SystemicError("systemic", f"batch API {what}: {e}", attempt) from None
            await asyncio.sleep(backoff(attempt))
        raise AssertionError("unreachable")

    async def _create(self, lines: list[bytes]) -> dict[str, Any]:
        """Upload a batch file and create its batch. The record is saved before the create call (state
        `submitting`, with a record id the batch carries in its metadata) and again after it (`open`), so a
        job killed at any point finds its batch again instead of paying for it twice."""
        api = self.client.openai
        data = b"".join(lines)
        keys = [json.loads(x)["custom_id"] for x in lines]
        record_id = uuid.uuid4().hex
        name = f"star1-{self.folder.replace('/', '-')}-{record_id[:8]}.jsonl"
        f = await self._api(
            "upload", lambda: api.files.create(file=(name, data, "application/jsonl"), purpose="batch")
        )
        record = {
            "record_id": record_id,
            "input_file_id": f.id,
            "keys": keys,
            "state": "submitting",
            "created_at": time.time(),
        }
        self._save(record)
        await self._submit(record)
        self.say(f"batch {record['batch_id']}: created ({len(keys)} requests, {len(data)} bytes)")
        return record

    async def _submit(self, record: dict[str, Any]) -> None:
        api = self.client.openai
        b = await self._api(
            "create",
            lambda: api.batches.create(
                input_file_id=record["input_file_id"],
                endpoint="/v1/chat/completions",
                completion_window=self.cfg.completion_window,  # type: ignore[arg-type]
                metadata={"star1": self.folder, "star1_record": record["record_id"]},
            ),
        )
        record.update(batch_id=b.id, state="open")
        self._save(record)
        self.stats["created"] += 1

    async def _adopt_or_create(self, record: dict[str, Any]) -> None:
        api = self.client.openai
        page = await self._api("list", lambda: api.batches.list(limit=100))
        async for b in page:
            if (b.metadata or {}).get("star1_record") == record["record_id"]:
                record.update(batch_id=b.id, state="open")
                self._save(record)
                self.say(f"batch {b.id}: found again (created by an earlier run)")
                return
        await self._submit(record)

    async def _finish(self, record: dict[str, Any]) -> None:
        api = self.client.openai
        last = None
        while True:
            b = await self._api("retrieve", lambda: api.batches.retrieve(record["batch_id"]))
            counts = b.request_counts
            state = f"{b.status} ({counts.completed if counts else 0}/{counts.total if counts else '?'})"
            if state != last:
                self.say(f"batch {b.id}: {state}")
                last = state
            if b.status in TERMINAL:
                break
            await asyncio.sleep(self.cfg.poll_s)
        if b.status == "failed":
            errors = "; ".join(e.message or e.code or "" for e in (b.errors.data or [])) if b.errors else ""
            raise SystemicError("systemic", f"batch {b.id} failed: {errors or 'no reason given'}", 1)
        answered: set[str] = set()
        for file_id in (b.output_file_id, b.error_file_id):
            if file_id:
                content = await self._api("download", lambda fid=file_id: api.files.content(fid))
                for line in content.text.splitlines():
                    if line.strip():
                        answered.add(self._line(json.loads(line), b.id))
        for key in set(record["keys"]) - answered:  # cancelled, or missing from both files
            self._failed(key, "server_error", f"batch {b.id} ended '{b.status}' without an answer")
        record["state"] = "done"
        record["status"] = b.status
        self._save(record)

    # ------------------------------------------------------------------ results

    def _line(self, line: dict[str, Any], batch_id: str) -> str:
        from openai.types.chat import ChatCompletion

        from star1.llm.client import reasoning_of

        key = line["custom_id"]
        self.tries[key] += 1
        resp, err = line.get("response"), line.get("error")
        status = resp.get("status_code") if resp else None
        if status == 200:
            body = ChatCompletion.model_validate(resp["body"])
            choice, u = body.choices[0], body.usage
            done = Completion(
                choice.message.content or "",
                choice.finish_reason,
                (u.prompt_tokens if u else 0) or 0,
                (u.completion_tokens if u else 0) or 0,
                attempts=self.tries[key],
                key=key,
                reasoning=reasoning_of(choice.message),
                from_batch=True,
            )
            fmt = self.bodies.get(key, {}).get("response_format")
            done.response_format = fmt.get("type", "none") if isinstance(fmt, dict) else "none"
            self.client.to_cache(done, batch_id=batch_id, attempts=self.tries[key])
            self.client.fresh_batch_keys.add(key)
            self.stats["lines_ok"] += 1
            return key
        self.stats["lines_failed"] += 1
        if resp is not None:
            message = json.dumps(resp.get("body"))[:300]
            reason = "rate_limited" if status == 429 else "server_error"
            if status not in RETRYABLE_STATUS:
                self.client.failed_keys[key] = LLMCallError(
                    "client_error", f"HTTP {status}: {message}", self.tries[key]
                )
                return key
            self._failed(key, reason, f"HTTP {status}: {message}")
        else:
            code = (err or {}).get("code", "unknown")
            self._failed(
                key,
                "timeout" if code == "batch_expired" else "server_error",
                f"{code}: {(err or {}).get('message')}",
            )
        return key

    def _failed(self, key: str, reason: str, message: str) -> None:
        """A transient failure: sent again next round, until the role's max_attempts."""
        if self.tries[key] >= self.client.cfg.max_attempts:
            self.client.failed_keys[key] = LLMCallError(reason, message, self.tries[key])
