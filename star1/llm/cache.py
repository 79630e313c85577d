"""Content-addressed cache of model responses in the artifact store (works from S3 across pods and restarts).

The key hashes everything that determines a response: endpoint identity (base URL + model), the full
messages, sampling params, response format and the prompt-template hash. A changed prompt or parameter
misses; a rerun after a crash re-uses every finished call.
"""

from __future__ import annotations

import json
from typing import Any

from star1.manifest import stable_hash
from star1.store import Store


def request_key(
    endpoint: str,
    model: str,
    messages: list[dict[str, str]],
    sampling: dict[str, Any],
    response_format: dict[str, Any] | None,
    template_hash: str,
) -> str:
    return stable_hash(
        {
            "endpoint": endpoint.rstrip("/"),
            "model": model,
            "messages": messages,
            "sampling": sampling,
            "response_format": response_format,
            "template": template_hash,
        }
    )


class ResponseCache:
    """One JSON object per finished call under `cache/llm/<key[:2]>/<key>.json`."""

    def __init__(self, store: Store, folder: str = "cache/llm") -> None:
        self.store, self.folder = store, folder

    def _path(self, key: str) -> str:
        return f"{self.folder}/{key[:2]}/{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        if not self.store.exists(path):
            return None
        try:
            return json.loads(self.store.read_bytes(path))
        except (ValueError, OSError):
            return None  # a torn or foreign object is a miss, never a crash

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.store.write_bytes(self._path(key), json.dumps(value, ensure_ascii=False).encode("utf-8"))
