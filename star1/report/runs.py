"""Open a finished eval run (the folder `star1 eval` writes, see `results.py`) for reporting and comparison.

A RUN is named by the path or URI of its folder (local or `s3://`), or by its run name under a store's
`eval/` folder. Only a complete run is read: its manifest must exist (it is written last) and say so.
Bad input raises `RunError` naming the file and the field.
"""

from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from star1.evals.results import OPTIONAL, SAMPLE, RunSummary, samples_path, summary_path
from star1.store import Store

EVAL_FOLDER = "eval"


class RunError(ValueError):
    """An eval run that cannot be read: missing, incomplete, or not in the results layout."""


@dataclass
class EvalRun:
    """A complete eval run: its summary, manifest and where it lives."""

    store: Store
    summary: RunSummary
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.summary.run_name

    @property
    def uri(self) -> str:
        return self.store.uri

    @property
    def synthetic(self) -> bool:
        return bool(self.summary.extra.get("synthetic"))

    def samples(self, benchmark: str, columns: list[str] | None = None) -> pa.Table:
        """A benchmark's per-sample rows (only `columns`, read as column chunks: outputs can be large)."""
        return read_samples(self.store, benchmark, columns)


def resolve(ref: str, store: Store | None = None) -> Store:
    """The folder a RUN argument names: a path or URI of a run folder, else `<store>/eval/<ref>`."""
    if "://" in ref:
        return Store.from_uri(ref)
    if os.path.isdir(ref):
        return Store.from_uri(ref)
    if store is not None and "/" not in ref.strip("/") and store.exists(f"{EVAL_FOLDER}/{ref}/summary.json"):
        return store.child(EVAL_FOLDER, ref)
    where = f" or a run name under {store.url(EVAL_FOLDER)}/" if store is not None else ""
    raise RunError(f"no eval run '{ref}': expected the path or URI of a run folder{where}")


def open_run(ref: str | Store, store: Store | None = None) -> EvalRun:
    """Read and validate a run's summary and manifest; refuse a run whose manifest says it is unfinished."""
    run_store = ref if isinstance(ref, Store) else resolve(ref, store)
    summary = _read_summary(run_store)
    manifest = _read_manifest(run_store)
    for name, bench in summary.benchmarks.items():
        if bench.benchmark != name:
            raise RunError(
                f"{run_store.url(summary_path())}: benchmarks['{name}'].benchmark is '{bench.benchmark}'"
            )
    return EvalRun(run_store, summary, manifest)


def _read_summary(run_store: Store) -> RunSummary:
    rel = summary_path()
    if not run_store.exists(rel):
        raise RunError(f"{run_store.url(rel)} not found: not an eval run folder, or its eval never finished")
    try:
        return RunSummary.model_validate(run_store.read_json(rel))
    except json.JSONDecodeError as e:
        raise RunError(f"{run_store.url(rel)}: not JSON ({e})") from None
    except ValidationError as e:
        raise RunError(f"{run_store.url(rel)}: {_describe(e)}") from None


def _read_manifest(run_store: Store) -> dict[str, Any]:
    rel = "manifest.json"
    if not run_store.exists(rel):
        raise RunError(
            f"{run_store.url(rel)} not found: the eval run did not finish (its manifest is written last); "
            "rerun `star1 eval` to complete it"
        )
    try:
        manifest = run_store.read_json(rel)
    except json.JSONDecodeError as e:
        raise RunError(f"{run_store.url(rel)}: not JSON ({e})") from None
    status = manifest.get("status", "complete")
    if status != "complete":
        raise RunError(
            f"{run_store.url(rel)}: status is '{status}' ({manifest.get('failures') or 'no details'}); "
            "rerun `star1 eval` to finish it before reporting on it"
        )
    return manifest


def _describe(e: ValidationError) -> str:
    first = e.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    more = f" (+{e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"field '{loc}': {first['msg']}{more}"


def read_samples(run_store: Store, benchmark: str, columns: list[str] | None = None) -> pa.Table:
    """Per-sample rows of one benchmark, checked against the SAMPLE schema (names and types); an `OPTIONAL`
    column an older file lacks comes back as nulls."""
    rel = samples_path(benchmark)
    if not run_store.exists(rel):
        raise RunError(f"{run_store.url(rel)} not found (the run's summary lists '{benchmark}')")
    try:
        schema = pq.read_schema(run_store.fs.open_input_file(posixpath.join(run_store.root, rel)))
        wanted = columns or list(SAMPLE.names)
        present = [n for n in wanted if n in schema.names or n not in OPTIONAL]
        for name in present:
            if name not in schema.names:
                raise RunError(f"{run_store.url(rel)}: column '{name}' missing (SAMPLE schema)")
            got, want = schema.field(name).type, SAMPLE.field(name).type
            if not (got == want or (pa.types.is_large_string(got) and pa.types.is_string(want))):
                raise RunError(f"{run_store.url(rel)}: column '{name}' is {got}, expected {want}")
        t = pq.read_table(posixpath.join(run_store.root, rel), filesystem=run_store.fs, columns=present)
    except (pa.ArrowInvalid, OSError) as e:
        raise RunError(f"{run_store.url(rel)}: unreadable Parquet ({e})") from None
    for name in wanted:
        if name not in present:
            t = t.append_column(SAMPLE.field(name), pa.nulls(t.num_rows, SAMPLE.field(name).type))
    return t.select(wanted)
