"""Generations (and judge outputs) stored in chunks as they finish, keyed by a content hash of the
request, so a killed eval resumes with only the missing requests: `<folder>/part-<n>.parquet`.

A result that failed (engine error) is stored too, with its error, and asked again on the next run.
`reasoning` (thinking an endpoint returned beside the text) is null in parts written before it existed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa

from star1.evals.engines import Engine, GenRequest, GenResult
from star1.store import Store

PART = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("reasoning", pa.string()),
        pa.field("finish_reason", pa.string()),
        pa.field("prompt_tokens", pa.int64()),
        pa.field("completion_tokens", pa.int64()),
        pa.field("top_logprobs", pa.string()),  # JSON
        pa.field("error", pa.string()),
        pa.field("created_at", pa.float64()),
    ]
)


class ChunkStore:
    def __init__(self, store: Store, folder: str) -> None:
        self.store, self.folder = store, folder.strip("/")

    def parts(self) -> list[str]:
        return [
            p for p in self.store.list(self.folder, ".parquet") if p.rsplit("/", 1)[-1].startswith("part-")
        ]

    def load(self) -> dict[str, GenResult]:
        """Every stored result by key; a later success replaces an earlier failure."""
        out: dict[str, GenResult] = {}
        for part in self.parts():
            for r in self.store.read_table(part).to_pylist():
                res = GenResult(
                    key=r["key"],
                    text=r["text"],
                    finish_reason=r["finish_reason"],
                    prompt_tokens=r["prompt_tokens"] or 0,
                    completion_tokens=r["completion_tokens"] or 0,
                    top_logprobs=json.loads(r["top_logprobs"]) if r["top_logprobs"] else None,
                    error=r["error"],
                    reasoning=r.get("reasoning"),
                    cached=True,
                )
                if res.error is None or r["key"] not in out:
                    out[r["key"]] = res
        return out

    def write(self, results: list[GenResult]) -> str:
        n = len(self.parts())
        rel = f"{self.folder}/part-{n:05d}-{int(time.time() * 1000) % 10**10:010d}.parquet"
        now = time.time()
        rows = [
            {
                "key": r.key,
                "text": r.text,
                "reasoning": r.reasoning,
                "finish_reason": r.finish_reason,
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
                "top_logprobs": json.dumps(r.top_logprobs) if r.top_logprobs is not None else None,
                "error": r.error,
                "created_at": now,
            }
            for r in results
        ]
        self.store.write_table(rel, pa.Table.from_pylist(rows, schema=PART))
        return rel


def run_pass(
    engine_for: Callable[[], Engine],
    requests: Iterable[GenRequest],
    chunks: ChunkStore,
    chunk_size: int,
    log: Callable[[str], None] = print,
    what: str = "generations",
) -> tuple[dict[str, GenResult], dict[str, Any]]:
    """All results for `requests`: stored ones re-used, missing ones generated and stored in chunks.
    The engine is started only when something is missing."""
    reqs = {r.key: r for r in requests}
    stored = chunks.load()
    have = {k: v for k, v in stored.items() if k in reqs and v.error is None}
    missing = [r for k, r in reqs.items() if k not in have]
    stats = {"requests": len(reqs), "reused": len(have), "generated": 0, "errors": 0, "seconds": 0.0}
    log(f"  {what}: {len(reqs)} requests, {len(have)} stored, {len(missing)} to run")
    if not missing:
        return have, stats
    t0 = time.time()
    engine = engine_for()
    context = getattr(engine, "context", None)  # an in-process vLLM engine's max_model_len and why
    if context is not None:
        stats.update(max_model_len=context.max_model_len, max_model_len_reason=context.reason)
    buf: list[GenResult] = []
    for res in engine.generate(missing):
        buf.append(res)
        have[res.key] = res
        stats["generated"] += 1
        stats["errors"] += res.error is not None
        if len(buf) >= chunk_size:
            chunks.write(buf)
            buf = []
    if buf:
        chunks.write(buf)
    stats["seconds"] = round(time.time() - t0, 2)
    lost = [k for k in reqs if k not in have]
    if lost:
        raise RuntimeError(f"the engine returned no result for {len(lost)} of {len(missing)} requests")
    return have, stats
