"""Load a benchmark's items: fetch (file or HF), filter, transform, sample, render each prompt.

A file whose records lack a column the benchmark needs fails at once, naming the benchmark, file, row and
the columns it has. Records that cannot become an item (an empty prompt, a malformed line) are counted by
reason and never dropped silently.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from star1.config import FileLoader, HFLoader, RowFilter
from star1.evals.registry import BenchmarkSpec
from star1.evals.transforms import PREFILTERS, TRANSFORMS, TransformError
from star1.sources.load import fetch, resolve_uri
from star1.sources.readers import SourceError, infer_format, read_bytes

HF_BATCH_ROWS = 10_000  # rows of a Hugging Face dataset converted at once where a transform prefilters


class BenchmarkError(ValueError):
    """A benchmark that cannot be loaded; the message names the benchmark, file and field."""


@dataclass(frozen=True)
class Item:
    item_id: str
    prompt: str
    category: str | None = None
    gold: str | None = None
    label: str | None = None  # overrefusal: safe / unsafe
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedBenchmark:
    spec: BenchmarkSpec
    items: list[Item]
    inputs: list[dict[str, Any]]  # uri + content hash of what was read
    read: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    @property
    def data_hash(self) -> str:
        return hashlib.sha256(json.dumps([i.get("sha256") for i in self.inputs]).encode()).hexdigest()

    def count_warning(self) -> str | None:
        """A warning when the benchmark built another number of items than the registry's `expected_items`
        (counted before `limit`, which explains only its own cut)."""
        built = len(self.items) + self.dropped.get("over_limit", 0)
        expected = self.spec.expected_items
        if expected is None or built == expected:
            return None
        dropped = {k: v for k, v in self.dropped.items() if k != "over_limit"}
        return (
            f"{self.spec.name}: {built} items loaded, the registry expects {expected} (expected_items); "
            f"the source may have changed (read {self.read}, dropped {dropped or 'none'})"
        )


def _col(rec: dict[str, Any], name: str) -> str | None:
    """The record's key for `name`, exact or case-insensitive (JBB's copies differ in capitalisation)."""
    if name in rec:
        return name
    hits = [k for k in rec if isinstance(k, str) and k.lower() == name.lower()]
    return hits[0] if len(hits) == 1 else None


def _passes(rec: dict[str, Any], f: RowFilter) -> bool:
    key = _col(rec, f.column)
    if key is None:
        raise BenchmarkError(f"filter column '{f.column}' missing (columns: {list(rec)[:20]})")
    v = rec[key]

    def eq(a: Any, b: Any) -> bool:
        return a.strip().lower() == str(b).lower() if isinstance(b, bool) and isinstance(a, str) else a == b

    return {
        "eq": lambda: eq(v, f.value),
        "ne": lambda: not eq(v, f.value),
        "in": lambda: any(eq(v, x) for x in f.value),
        "not_in": lambda: not any(eq(v, x) for x in f.value),
    }[f.op]()


def _read_records(
    spec: BenchmarkSpec, base_dir: str, store_opts: dict[str, Any] | None, dropped: Counter[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    loader = spec.loader
    records: list[dict[str, Any]] = []
    inputs: list[dict[str, Any]] = []
    if isinstance(loader, FileLoader):
        wheres = []
        for uri in loader.uri:
            full = resolve_uri(uri, base_dir)
            try:
                data = fetch(full, store_opts)
                fmt = infer_format(full, loader.format)
                rows = list(read_bytes(data, fmt, f"benchmark {spec.name} ({full})", loader.encoding))
            except SourceError as e:
                raise BenchmarkError(str(e)) from None
            inputs.append({"name": spec.name, "uri": full, "sha256": hashlib.sha256(data).hexdigest()})
            for raw in rows:
                if raw.error:
                    dropped[raw.error] += 1
                elif not isinstance(raw.record, dict):
                    dropped["not_a_record"] += 1
                else:
                    records.append(raw.record)
            wheres.append(full)
        return records, inputs, ", ".join(wheres)
    assert isinstance(loader, HFLoader)
    import datasets

    where = f"hf:{loader.path}/{loader.name or ''}"
    for split in loader.split:
        try:
            ds = datasets.load_dataset(
                loader.path, loader.name, split=split, revision=loader.revision, **loader.kwargs
            )
        except Exception as e:
            raise BenchmarkError(f"benchmark {spec.name} ({where}:{split}): cannot load: {e}") from None
        fp = getattr(ds, "_fingerprint", None) or hashlib.sha256(repr(loader).encode()).hexdigest()
        inputs.append(
            {"name": spec.name, "uri": f"{where}:{split}", "sha256": fp, "revision": loader.revision}
        )
        prefilter = PREFILTERS.get(spec.transform or "") if not spec.filters else None
        if prefilter is None:
            records.extend(ds)
            continue
        # read in Arrow batches, dropping rows before they become Python dicts (WildChat-1M: 1M rows)
        offset = 0
        for batch in ds.with_format("arrow").iter(batch_size=HF_BATCH_ROWS):
            try:
                kept, more = prefilter(batch, offset)
            except TransformError as e:
                raise BenchmarkError(f"benchmark {spec.name} ({where}:{split}): {e}") from None
            dropped.update(more)
            records.extend(kept.to_pylist())
            offset += batch.num_rows
    return records, inputs, where


def _seeded_sample(records: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """`datasets.Dataset.shuffle(seed).select(range(n))`: numpy default_rng permutation, first n."""
    perm = np.random.default_rng(seed).permutation(len(records))
    return [records[i] for i in perm[:n]]


def load_benchmark(
    spec: BenchmarkSpec,
    base_dir: str = ".",
    limit: int | None = None,
    store_opts: dict[str, Any] | None = None,
) -> LoadedBenchmark:
    dropped: Counter[str] = Counter()
    records, inputs, where = _read_records(spec, base_dir, store_opts, dropped)
    read = len(records) + sum(dropped.values())
    try:
        if spec.filters:
            kept = [r for r in records if all(_passes(r, f) for f in spec.filters)]
            dropped["filtered"] += len(records) - len(kept)
            records = kept
        if spec.transform:
            records, more = TRANSFORMS[spec.transform](records, **spec.transform_args)
            dropped.update(more)
    except (BenchmarkError, TransformError) as e:
        raise BenchmarkError(f"benchmark {spec.name} ({where}): {e}") from None
    if spec.sample is not None and len(records) > spec.sample.n:
        dropped["not_sampled"] += len(records) - spec.sample.n
        records = _seeded_sample(records, spec.sample.n, spec.sample.seed)
    items = [_item(spec, rec, i, where, dropped) for i, rec in enumerate(records, start=1)]
    items = [it for it in items if it is not None]
    ids = [it.item_id for it in items]
    if len(set(ids)) != len(ids):
        dup = sorted({x for x in ids if ids.count(x) > 1})[:5]
        raise BenchmarkError(f"benchmark {spec.name} ({where}): duplicate item ids {dup}")
    if limit is not None and len(items) > limit:
        dropped["over_limit"] += len(items) - limit
        items = items[:limit]
    if not items:
        raise BenchmarkError(f"benchmark {spec.name} ({where}): no items ({dict(dropped)})")
    return LoadedBenchmark(spec, items, inputs, read, dropped)


def _item(
    spec: BenchmarkSpec, rec: dict[str, Any], row: int, where: str, dropped: Counter[str]
) -> Item | None:
    keys = {c: _col(rec, c) for c in spec.required_columns()}
    missing = [c for c, k in keys.items() if k is None]
    if missing:
        raise BenchmarkError(
            f"benchmark {spec.name} ({where}): row {row}: missing column(s) {missing} "
            f"(columns: {sorted(map(str, rec))[:20]})"
        )
    view = {c: rec[k] for c, k in keys.items() if k is not None}
    prompt = spec.render(view).strip()
    if not prompt or not any(str(view[f]).strip() for f in spec.template_fields):
        dropped["empty_prompt"] += 1
        return None

    def text(col: str | None) -> str | None:
        return None if col is None or view.get(col) is None else str(view[col]).strip()

    return Item(
        item_id=text(spec.id_column) or str(row),
        prompt=prompt,
        category=text(spec.category_column),
        gold=text(spec.answer_column),
        label=text(spec.label_column),
        meta={c: view[c] for c in spec.meta_columns},
    )
