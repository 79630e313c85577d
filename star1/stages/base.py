"""What every stage does around its work: the skip check, invalidation, and writing the manifest last."""

from __future__ import annotations

from typing import Any

from star1.manifest import Manifest, manifest_path, read_manifest
from star1.store import Store


def current_run(store: Store, stage: str, fp: str, outputs: list[str], force: bool) -> Manifest | None:
    """The stored manifest if it matches `fp` and its outputs exist (and not forced), else None."""
    previous = read_manifest(store, stage)
    if force or previous is None or previous.fingerprint != fp:
        return None
    return previous if all(store.exists(p) for p in outputs) else None


def invalidate(store: Store, stage: str) -> None:
    """Outputs are about to change: remove the manifest first, so no reader trusts half-written outputs."""
    if store.exists(manifest_path(stage)):
        store.delete(manifest_path(stage))


def input_entry(store: Store, rel: str) -> dict[str, Any]:
    """An upstream artifact as a manifest input: its URI and content hash."""
    from star1.manifest import sha256_bytes

    if not store.exists(rel):
        raise FileNotFoundError(f"missing input {store.url(rel)}: run the stage that produces it first")
    return {"name": rel, "uri": store.url(rel), "sha256": sha256_bytes(store.read_bytes(rel))}
