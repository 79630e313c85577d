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


def begin(
    store: Store,
    stage: str,
    algorithm: str,
    params: dict[str, Any],
    inputs: list[dict[str, Any]],
    outputs: list[str],
    force: bool,
) -> tuple[str, Manifest | None]:
    """(fingerprint, the stored manifest if the stage is current). When it is not, the old manifest is
    removed so no reader trusts outputs that are about to be rewritten."""
    from star1.manifest import fingerprint

    fp = fingerprint(stage, algorithm, params, inputs)
    previous = current_run(store, stage, fp, outputs, force)
    if previous is None:
        invalidate(store, stage)
    return fp, previous


def finish(
    store: Store,
    stage: str,
    algorithm: str,
    fp: str,
    params: dict[str, Any],
    inputs: list[dict[str, Any]],
    outputs: dict[str, dict[str, Any]],
    counts: dict[str, Any],
    timings: dict[str, float] | None = None,
    usage: dict[str, Any] | None = None,
) -> Manifest:
    """Write the stage's manifest — last, after every output — and return it."""
    from star1.manifest import code_info, package_versions, stable_hash, write_manifest

    manifest = Manifest(
        stage=stage,
        fingerprint=fp,
        params=params,
        params_hash=stable_hash(params),
        inputs=inputs,
        outputs=outputs,
        counts=counts,
        timings=timings or {},
        usage=usage or {},
        code=code_info(algorithm),
        packages=package_versions(),
    )
    write_manifest(store, manifest)
    return manifest
