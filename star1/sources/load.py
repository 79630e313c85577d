"""Load one source into the unified row schema: rows kept for dedup, and rejects with a reason each.

Unified row: `id` (stable hash of source + normalised prompt), `source`, `prompt`, `source_row`,
`source_meta` (the record's other fields, as JSON). Nothing is dropped silently: every input row ends up
either in `rows` or in `rejects`.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from star1.config import FileLoader, HFLoader, RowFilter, SourceSpec
from star1.sources.readers import RawRow, SourceError, has_bad_encoding, infer_format, read_bytes
from star1.store import Store

_WS = re.compile(r"\s+")


def normalize_prompt(text: str) -> str:
    """The form ids are computed from: NFKC, case-folded, whitespace collapsed."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def prompt_id(source: str, prompt: str) -> str:
    return hashlib.sha256(f"{source}\x1f{normalize_prompt(prompt)}".encode()).hexdigest()[:16]


@dataclass
class LoadedSource:
    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)  # uri + sha256 (or HF fingerprint)
    read: int = 0

    def reject(
        self, row: int, reason: str, detail: str = "", prompt: str | None = None, meta: str | None = None
    ) -> None:
        rid = prompt_id(self.name, prompt) if prompt else f"{self.name}#row{row}"
        self.rejects.append(
            {
                "id": rid,
                "source": self.name,
                "source_row": row,
                "prompt": prompt,
                "rule": reason,
                "detail": detail,
                "source_meta": meta,
            }
        )


# --------------------------------------------------------------------------- fetching


def resolve_uri(uri: str, base_dir: str | Path) -> str:
    if "://" in uri:
        return uri
    p = Path(uri).expanduser()
    return str(p if p.is_absolute() else Path(base_dir) / p)


def fetch(uri: str, store_opts: dict[str, Any] | None = None, timeout: float = 60.0) -> bytes:
    """Bytes of a local path, an `s3://` object or an `http(s)://` URL (with a few retries)."""
    try:
        if uri.startswith(("http://", "https://")):
            last: Exception | None = None
            for _ in range(3):
                try:
                    with urllib.request.urlopen(uri, timeout=timeout) as resp:
                        return resp.read()
                except OSError as e:
                    last = e
            raise last or OSError("download failed")
        if uri.startswith("s3://"):
            bucket_key = uri[len("s3://") :]
            bucket, _, key = bucket_key.partition("/")
            return Store.from_uri(f"s3://{bucket}", **(store_opts or {})).read_bytes(key)
        return Path(uri).read_bytes()
    except (OSError, ValueError) as e:
        raise SourceError(f"cannot read {uri}: {e}") from None


# --------------------------------------------------------------------------- rows


def _filter_fails(rec: dict[str, Any], f: RowFilter) -> str | None:
    if f.column not in rec:
        return f"filter column '{f.column}' missing"
    v = rec[f.column]
    ok = {
        "eq": lambda: _eq(v, f.value),
        "ne": lambda: not _eq(v, f.value),
        "in": lambda: any(_eq(v, x) for x in f.value),
        "not_in": lambda: not any(_eq(v, x) for x in f.value),
    }[f.op]()
    return None if ok else f"{f.column}={v!r} fails {f.op} {f.value!r}"


def _eq(a: Any, b: Any) -> bool:
    """Equality that treats CSV text 'False'/'false' like the boolean False."""
    if isinstance(b, bool) and isinstance(a, str):
        return a.strip().lower() == str(b).lower()
    return a == b


def _column(rec: dict[str, Any], col: str) -> str | None:
    if col in rec:
        return col
    lowered = [k for k in rec if isinstance(k, str) and k.lower() == col.lower()]
    return lowered[0] if len(lowered) == 1 else None


def _meta(rec: Any, col: str | None) -> str | None:
    if not isinstance(rec, dict):
        return None
    rest = {k: v for k, v in rec.items() if k != col}
    return json.dumps(rest, ensure_ascii=False, default=str, sort_keys=True) if rest else None


def add_record(out: LoadedSource, spec: SourceSpec, raw: RawRow, where: str, max_chars: int) -> None:
    """Turn one raw record into a row or a reject."""
    if raw.error:
        out.reject(raw.row, raw.error, f"{where}: {raw.detail}")
        return
    rec = raw.record
    col: str | None = None
    if isinstance(rec, dict):
        if spec.prompt_column is None:
            raise SourceError(f"{where}: records are objects with fields {list(rec)[:20]}; set prompt_column")
        col = _column(rec, spec.prompt_column)
        if col is None:
            raise SourceError(
                f"{where}: row {raw.row}: no column '{spec.prompt_column}' (columns: {list(rec)[:20]})"
            )
        value = rec[col]
        for f in spec.filters:
            why = _filter_fails(rec, f)
            if why is not None:
                out.reject(
                    raw.row, "filtered", why, value if isinstance(value, str) else None, _meta(rec, col)
                )
                return
    elif spec.prompt_column is not None and not isinstance(rec, str):
        out.reject(raw.row, "non_text_prompt", f"{where}: record is {type(rec).__name__}, not an object")
        return
    else:
        value = rec
    meta = _meta(rec, col)
    if value is None:
        out.reject(raw.row, "empty_prompt", f"{where}: prompt is null", None, meta)
        return
    if not isinstance(value, str):
        out.reject(raw.row, "non_text_prompt", f"{where}: prompt is {type(value).__name__}", None, meta)
        return
    if has_bad_encoding(value):
        shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        out.reject(raw.row, "invalid_encoding", f"{where}: prompt has undecodable bytes", shown, meta)
        return
    for marker in spec.strip:
        value = value.replace(marker, " ")
    value = value.strip()
    if not value:
        out.reject(raw.row, "empty_prompt", f"{where}: prompt is empty", None, meta)
        return
    if len(value) > max_chars:
        out.reject(raw.row, "too_long", f"{where}: {len(value)} chars > {max_chars}", value, meta)
        return
    out.rows.append(
        {
            "id": prompt_id(spec.name, value),
            "source": spec.name,
            "prompt": value,
            "source_row": raw.row,
            "source_meta": meta,
        }
    )


def _apply_sample(out: LoadedSource, spec: SourceSpec) -> None:
    if spec.sample is None or len(out.rows) <= spec.sample.n:
        return
    perm = np.random.default_rng(spec.sample.seed).permutation(len(out.rows))
    chosen = set(perm[: spec.sample.n].tolist())
    keep = [r for i, r in enumerate(out.rows) if i in chosen]
    for i, r in enumerate(out.rows):
        if i not in chosen:
            out.reject(
                r["source_row"],
                "not_sampled",
                f"seeded sample of {spec.sample.n} (seed {spec.sample.seed})",
                r["prompt"],
                r["source_meta"],
            )
    out.rows = keep


# --------------------------------------------------------------------------- loaders


def _load_files(
    spec: SourceSpec, loader: FileLoader, base_dir: str, max_chars: int, store_opts: dict[str, Any] | None
) -> LoadedSource:
    out = LoadedSource(spec.name)
    multi = len(loader.uri) > 1
    offset = 0
    for uri in loader.uri:
        full = resolve_uri(uri, base_dir)
        fmt = infer_format(full, loader.format)
        if fmt == "txt" and spec.prompt_column not in (None, "text"):
            raise SourceError(f"source {spec.name}: {full} is TXT (one prompt per line); drop prompt_column")
        data = fetch(full, store_opts)
        out.inputs.append(
            {"name": spec.name, "uri": full, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        )
        where = f"source {spec.name} ({full})"
        n_file = last_row = 0
        for raw in read_bytes(data, fmt, where, loader.encoding, loader.json_key):
            n_file += 1
            last_row = raw.row
            # rows of later files continue the numbering so (source, source_row) stays unique
            add_record(
                out, spec, RawRow(raw.row + offset, raw.record, raw.error, raw.detail), where, max_chars
            )
        out.read += n_file
        if multi:
            offset += last_row
    return out


def _load_hf(spec: SourceSpec, loader: HFLoader, max_chars: int) -> LoadedSource:
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a core dependency
        raise SourceError("loading Hugging Face sources needs `pip install datasets`") from e
    out = LoadedSource(spec.name)
    offset = 0
    for split in loader.split:
        where = f"source {spec.name} (hf:{loader.path}/{loader.name or ''}:{split})"
        try:
            ds = datasets.load_dataset(
                loader.path, loader.name, split=split, revision=loader.revision, **loader.kwargs
            )
        except Exception as e:
            raise SourceError(f"{where}: cannot load: {type(e).__name__}: {e}") from None
        fp = getattr(ds, "_fingerprint", None) or hashlib.sha256(repr(loader).encode()).hexdigest()
        out.inputs.append(
            {
                "name": spec.name,
                "uri": f"hf://{loader.path}/{loader.name or ''}:{split}",
                "sha256": fp,
                "revision": loader.revision,
                "rows": len(ds),
            }
        )
        for i, rec in enumerate(ds, start=1):
            add_record(out, spec, RawRow(i + offset, rec), where, max_chars)
        out.read += len(ds)
        offset += len(ds)
    return out


def load_source(
    spec: SourceSpec, base_dir: str = ".", max_chars: int = 8000, store_opts: dict[str, Any] | None = None
) -> LoadedSource:
    """Read, filter, sample and validate one source. Raises SourceError if the source is unreadable."""
    if isinstance(spec.loader, FileLoader):
        out = _load_files(spec, spec.loader, base_dir, max_chars, store_opts)
    else:
        out = _load_hf(spec, spec.loader, max_chars)
    _apply_sample(out, spec)
    if len(out.rows) + len(out.rejects) != out.read:
        raise AssertionError(
            f"source {spec.name}: {out.read} rows read but {len(out.rows)} kept + {len(out.rejects)} rejected"
        )
    return out


def source_input_hash(
    spec: SourceSpec, base_dir: str, store_opts: dict[str, Any] | None = None
) -> list[dict]:
    """Content hashes of a source's inputs without parsing them (for the skip check)."""
    if isinstance(spec.loader, HFLoader):
        return [
            {
                "name": spec.name,
                "uri": f"hf://{spec.loader.path}",
                "sha256": hashlib.sha256(spec.loader.model_dump_json().encode()).hexdigest(),
            }
        ]
    out = []
    for uri in spec.loader.uri:
        full = resolve_uri(uri, base_dir)
        out.append(
            {"name": spec.name, "uri": full, "sha256": hashlib.sha256(fetch(full, store_opts)).hexdigest()}
        )
    return out
