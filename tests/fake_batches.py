"""The OpenAI Batch API on the fake server: `/v1/files` (JSONL upload, content download) and `/v1/batches`
(create, retrieve, cancel, list), with the failure shapes real batches have.

A batch moves one state per retrieve — validating → in_progress → finalizing → completed — so tests
control time by polling. `plan` (consumed one entry per created batch) makes a batch:
- `ok`: every request answered through the server's chat logic (its responders and structured output);
- `expire`: only the first half answered; the rest are in the error file with `batch_expired`;
- `fail`: status `failed` at validation (`errors.data` says why), no output;
The chat server's `plan` content faults (malformed_json, truncated, empty) apply to batch lines too.
Per-request errors: a request whose last message contains a marker in `line_faults` gets the scripted
status codes attempt by attempt (e.g. {"BATCH500": ["500", "ok"]}) as lines of the error file.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from tests.fake_llm import FakeLLMServer

STATES = ("validating", "in_progress", "finalizing", "completed")


class BatchAPI:
    def __init__(self, server: FakeLLMServer) -> None:
        self.server = server
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.plan: list[str] = []
        self.line_faults: dict[str, list[str]] = {}
        self._line_attempts: Counter[str] = Counter()
        self._ids = itertools.count(1)
        self.created = 0  # batches created (a resumed job must not create them again)
        self.retrieves = 0

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{id}", self._file)
        app.router.add_get("/v1/files/{id}/content", self._content)
        app.router.add_post("/v1/batches", self._create)
        app.router.add_get("/v1/batches", self._list)
        app.router.add_get("/v1/batches/{id}", self._retrieve)
        app.router.add_post("/v1/batches/{id}/cancel", self._cancel)

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}"

    def _file_obj(self, f: dict[str, Any]) -> dict[str, Any]:
        return {k: f[k] for k in ("id", "object", "bytes", "created_at", "filename", "purpose", "status")}

    def _store(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        fid = self._new_id("file")
        f = {
            "id": fid,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "data": data,
        }
        self.files[fid] = f
        return f

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form.get("file")
        if upload is None or not hasattr(upload, "file"):
            return web.json_response({"error": {"message": "missing file"}}, status=400)
        f = self._store(upload.file.read(), upload.filename or "upload.jsonl", str(form.get("purpose", "")))
        return web.json_response(self._file_obj(f))

    async def _file(self, request: web.Request) -> web.Response:
        f = self.files.get(request.match_info["id"])
        if f is None:
            return web.json_response({"error": {"message": "no such file"}}, status=404)
        return web.json_response(self._file_obj(f))

    async def _content(self, request: web.Request) -> web.Response:
        f = self.files.get(request.match_info["id"])
        if f is None:
            return web.json_response({"error": {"message": "no such file"}}, status=404)
        return web.Response(body=f["data"], content_type="application/octet-stream")

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("input_file_id") not in self.files:
            return web.json_response({"error": {"message": "input file not found"}}, status=400)
        bid = self._new_id("batch")
        self.created += 1
        self.batches[bid] = {
            "id": bid,
            "object": "batch",
            "endpoint": body.get("endpoint", "/v1/chat/completions"),
            "errors": None,
            "input_file_id": body["input_file_id"],
            "completion_window": body.get("completion_window", "24h"),
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": int(time.time()),
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
            "_plan": self.plan.pop(0) if self.plan else "ok",
        }
        return web.json_response(self._public(self.batches[bid]))

    def _public(self, b: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in b.items() if not k.startswith("_")}

    async def _list(self, request: web.Request) -> web.Response:
        data = [self._public(b) for b in self.batches.values()]
        return web.json_response({"object": "list", "data": data, "has_more": False})

    async def _cancel(self, request: web.Request) -> web.Response:
        b = self.batches.get(request.match_info["id"])
        if b is None:
            return web.json_response({"error": {"message": "no such batch"}}, status=404)
        b["status"] = "cancelled"
        return web.json_response(self._public(b))

    async def _retrieve(self, request: web.Request) -> web.Response:
        b = self.batches.get(request.match_info["id"])
        if b is None:
            return web.json_response({"error": {"message": "no such batch"}}, status=404)
        self.retrieves += 1
        if b["status"] in STATES[:-1]:
            self._advance(b)
        return web.json_response(self._public(b))

    def _advance(self, b: dict[str, Any]) -> None:
        lines = [json.loads(x) for x in self.files[b["input_file_id"]]["data"].decode().splitlines() if x]
        b["request_counts"]["total"] = len(lines)
        if b["status"] == "validating" and b["_plan"] == "fail":
            b["status"] = "failed"
            b["errors"] = {
                "object": "list",
                "data": [{"code": "invalid_file", "message": "validation failed"}],
            }
            return
        nxt = STATES[STATES.index(b["status"]) + 1]
        if nxt == "finalizing":
            self._run(b, lines)
            if b["_plan"] == "expire":
                b["status"] = "expired"
                return
        b["status"] = nxt

    def _run(self, b: dict[str, Any], lines: list[dict[str, Any]]) -> None:
        out, err = [], []
        cut = len(lines) // 2 if b["_plan"] == "expire" else len(lines)
        for i, line in enumerate(lines):
            cid, body = line["custom_id"], line["body"]
            rid = self._new_id("batch_req")
            if i >= cut:
                err.append(
                    {
                        "id": rid,
                        "custom_id": cid,
                        "response": None,
                        "error": {
                            "code": "batch_expired",
                            "message": "not executed before the window expired",
                        },
                    }
                )
                continue
            status = self._line_status(body)
            self.server.stats["batch_requests"] += 1
            if status != 200:
                err.append(
                    {
                        "id": rid,
                        "custom_id": cid,
                        "response": {
                            "status_code": status,
                            "request_id": rid,
                            "body": {"error": {"message": f"injected {status}", "type": "server_error"}},
                        },
                        "error": None,
                    }
                )
                continue
            fault = self.server._planned(body)  # content faults of the chat plan apply to batch lines too
            completion = self.server.complete(
                body, fault if fault in ("malformed_json", "truncated", "empty") else None
            )
            out.append(
                {
                    "id": rid,
                    "custom_id": cid,
                    "response": {"status_code": 200, "request_id": rid, "body": completion},
                    "error": None,
                }
            )
        b["request_counts"].update(completed=len(out), failed=len(err))
        if out:
            data = "".join(json.dumps(x) + "\n" for x in out).encode()
            b["output_file_id"] = self._store(data, f"{b['id']}_output.jsonl", "batch_output")["id"]
        if err:
            data = "".join(json.dumps(x) + "\n" for x in err).encode()
            b["error_file_id"] = self._store(data, f"{b['id']}_error.jsonl", "batch_output")["id"]

    def _line_status(self, body: dict[str, Any]) -> int:
        last = body["messages"][-1]["content"]
        for marker, seq in self.line_faults.items():
            if marker in last:
                self._line_attempts[last] += 1
                n = self._line_attempts[last]
                step = seq[n - 1] if n <= len(seq) else "ok"
                return 200 if step == "ok" else int(step)
        return 200
