"""The life of one stage run, owned by one object: skip when current, invalidate before rewriting, consume
only complete upstream outputs, and write the manifest last — complete, or incomplete with what failed.

    with StageRun(store, "score", ALGORITHM, params, inputs, outputs, force) as run:
        if run.skipped:
            return run.previous
        ...write outputs...
        run.complete(outputs, counts, timings, usage)     # or run.incomplete(..., failures={...})

A block that ends without recording either raises: an unfinished stage never looks finished. Stages,
training and evaluation all use it, so skip / incomplete / complete mean the same thing everywhere.
"""

from __future__ import annotations

from typing import Any

from star1.manifest import (
    Manifest,
    code_info,
    fingerprint,
    manifest_path,
    package_versions,
    read_manifest,
    sha256_bytes,
    stable_hash,
    write_manifest,
)
from star1.store import Store


class IncompleteInput(RuntimeError):
    """An upstream output that no complete manifest vouches for."""

    exit_code = 1


class StageIncomplete(RuntimeError):
    """A stage ended with rows whose calls failed transiently (outage, rate limits): rerun to retry them."""

    exit_code = 3


class StageFailed(RuntimeError):
    """A stage did its work but its result fails a check (empty output, too many rejects)."""

    exit_code = 4


def producer_of(rel: str) -> str:
    """The stage that writes `rel` (its first path component: `score/data.parquet` → `score`)."""
    return rel.strip("/").split("/", 1)[0]


def upstream(store: Store, rel: str, require_manifest: bool = True) -> dict[str, Any]:
    """An upstream artifact as a manifest input (URI and content hash), only if the stage that wrote it
    finished completely. A file left behind by a failed or incomplete run is refused with the command that
    finishes it. `require_manifest=False` accepts a bare file (inputs given by URI, not made by a stage)."""
    stage = producer_of(rel)
    if not store.exists(rel):
        raise FileNotFoundError(
            f"missing input {store.url(rel)}: run `star1 {stage.replace('_', '-')}` first"
        )
    if require_manifest:
        m = read_manifest(store, stage)
        if m is None:
            raise IncompleteInput(
                f"{store.url(rel)} has no manifest: the `{stage}` run that wrote it did not finish; "
                f"rerun `star1 {stage.replace('_', '-')}`"
            )
        if m.status == "failed":
            raise IncompleteInput(
                f"`{stage}` failed its checks ({m.failures.get('why', 'see its manifest')}); fix the cause "
                f"and rerun `star1 {stage.replace('_', '-')}`"
            )
        if m.status != "complete":
            raise IncompleteInput(
                f"`{stage}` is incomplete ({describe_failures(m.failures)}); rerun "
                f"`star1 {stage.replace('_', '-')}` to retry only the failed rows, or add --accept-failures "
                "to record them as rejects"
            )
    return {"name": rel, "uri": store.url(rel), "sha256": sha256_bytes(store.read_bytes(rel))}


def describe_failures(failures: dict[str, Any]) -> str:
    """Failed rows by reason, then the stage's own `reasons` (sentences); rows only when some failed or no
    reason was given."""
    by_reason = failures.get("by_reason", {})
    total = failures.get("rows", sum(by_reason.values()))
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(by_reason.items()))
    reasons = failures.get("reasons", [])
    rows = [f"{total} row(s) failed" + (f" — {detail}" if detail else "")] if total or not reasons else []
    return "; ".join(rows + reasons)


class StageRun:
    """One run of one stage. `skipped`/`previous` tell whether a complete, current run is already stored."""

    def __init__(
        self,
        store: Store,
        stage: str,
        algorithm: str,
        params: dict[str, Any],
        inputs: list[dict[str, Any]],
        outputs: list[str],
        force: bool = False,
    ) -> None:
        self.store, self.stage, self.algorithm = store, stage, algorithm
        self.params, self.inputs, self.outputs = params, inputs, outputs
        self.fingerprint = fingerprint(stage, algorithm, params, inputs)
        stored = read_manifest(store, stage)
        current = (
            not force
            and stored is not None
            and stored.status == "complete"
            and stored.fingerprint == self.fingerprint
            and all(store.exists(p) for p in outputs)
        )
        self.previous: Manifest | None = stored if current else None
        self.prior: Manifest | None = stored  # whatever was stored, current or not (an incomplete run, say)
        self.manifest: Manifest | None = None

    @property
    def skipped(self) -> bool:
        return self.previous is not None

    @property
    def url(self) -> str:
        return self.store.url(manifest_path(self.stage))

    def __enter__(self) -> StageRun:
        if not self.skipped and self.store.exists(manifest_path(self.stage)):
            # outputs are about to change: no reader may trust the old manifest while they are rewritten
            self.store.delete(manifest_path(self.stage))
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None and not self.skipped and self.manifest is None:
            raise RuntimeError(f"stage {self.stage} ended without recording a complete or incomplete result")

    def _write(self, status: str, outputs: dict[str, dict[str, Any]], counts: dict[str, Any], **kw: Any):
        self.manifest = Manifest(
            stage=self.stage,
            status=status,
            fingerprint=self.fingerprint,
            params=self.params,
            params_hash=stable_hash(self.params),
            inputs=self.inputs,
            outputs=outputs,
            counts=counts,
            code=code_info(self.algorithm),
            packages=package_versions(),
            **{k: v for k, v in kw.items() if v is not None},
        )
        write_manifest(self.store, self.manifest)
        return self.manifest

    def complete(
        self,
        outputs: dict[str, dict[str, Any]],
        counts: dict[str, Any],
        timings: dict[str, float] | None = None,
        usage: dict[str, Any] | None = None,
        notes: list[str] | None = None,
    ) -> Manifest:
        """Record a finished run (after every output is written)."""
        return self._write("complete", outputs, counts, timings=timings, usage=usage, notes=notes)

    def incomplete(
        self,
        outputs: dict[str, dict[str, Any]],
        counts: dict[str, Any],
        failures: dict[str, Any],
        timings: dict[str, float] | None = None,
        usage: dict[str, Any] | None = None,
        notes: list[str] | None = None,
    ) -> Manifest:
        """Record a run that could not do all its work: never skipped on rerun, refused downstream."""
        return self._write(
            "incomplete", outputs, counts, failures=failures, timings=timings, usage=usage, notes=notes
        )

    def failed(
        self,
        outputs: dict[str, dict[str, Any]],
        counts: dict[str, Any],
        why: str,
        timings: dict[str, float] | None = None,
        usage: dict[str, Any] | None = None,
        notes: list[str] | None = None,
    ) -> Manifest:
        """Record a run whose result fails a check: kept for inspection, refused downstream, redone on rerun
        (from the response cache, so a rerun after fixing the cause pays only for what changed)."""
        return self._write(
            "failed", outputs, counts, failures={"why": why}, timings=timings, usage=usage, notes=notes
        )


def adopt(store: Store, rel: str, table: Any, note: str = "adopted") -> Manifest:
    """Write `table` at `rel` as the complete output of its stage, made outside star1 (bring-your-own data,
    test fixtures): downstream stages consume it like any finished run's output."""
    stage = producer_of(rel)
    store.write_table(rel, table)
    with StageRun(store, stage, "adopted", {"adopted": rel}, [], [rel], force=True) as run:
        return run.complete(
            {rel.rsplit("/", 1)[-1].split(".")[0]: {"uri": store.url(rel)}},
            {"in": table.num_rows, "out": table.num_rows, "rejected": {}},
            notes=[note],
        )
