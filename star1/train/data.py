"""Training records in the STAR-1 format, read and validated up front (before any worker starts).

A record has `question` and `response` (`<think>reasoning</think> answer`), and optionally `id`, `source`,
`category`. Sources are stage outputs in the store (consumed only through a complete manifest) or files by
URI (local or `s3://`; JSON list, JSONL or Parquet); several are concatenated (e.g. STAR-1 + benign).
Every bad record is named in the error (file, record index, id, field); nothing is dropped silently.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow.parquet as pq

from star1.config import TrainSource
from star1.manifest import sha256_bytes
from star1.stage_run import upstream
from star1.store import Store, s3_filesystem

THINK = re.compile(r"<think>\s*(.*?)\s*</think>\s*(.*)", re.DOTALL)
MAX_LISTED = 5  # bad records named in one error


class TrainDataError(ValueError):
    """Training data that cannot be used, with the file, record and field at fault."""


@dataclass(frozen=True)
class Record:
    id: str
    source: str  # the record's own `source` field, else the file it came from
    file: str
    index: int  # position in its file
    question: str
    reasoning: str | None  # None: the response has no <think> block
    answer: str


def split_response(response: str) -> tuple[str | None, str]:
    """`(reasoning, answer)` from `<think>reasoning</think> answer`; `(None, response)` without a block."""
    m = THINK.search(response)
    if m is None:
        return None, response.strip()
    return m.group(1), m.group(2).strip()


def _read_bytes(
    src: TrainSource, store: Store, base_dir: str, s3: tuple[str | None, str | None]
) -> tuple[bytes, dict[str, Any]]:
    """The file's bytes and its manifest input entry (URI + sha256)."""
    if src.store is not None:
        if not store.exists(src.store) and (Path(base_dir) / src.store).is_file():
            raise TrainDataError(
                f"training data '{src.store}' is read as a stage output in the store {store.uri}, where it "
                f"does not exist; for the local file write './{src.store}' or 'uri: {src.store}'"
            )
        entry = upstream(store, src.store)
        return store.read_bytes(src.store), entry
    uri = src.uri or ""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        fs, path = s3_filesystem(*s3), posixpath.join(parsed.netloc, parsed.path.lstrip("/"))
        try:
            with fs.open_input_stream(path) as f:
                data = f.read()
        except (FileNotFoundError, OSError) as e:
            raise TrainDataError(f"training data {uri}: cannot read ({e})") from None
    elif parsed.scheme in ("", "file"):
        p = Path(parsed.path if parsed.scheme == "file" else uri).expanduser()
        p = p if p.is_absolute() else Path(base_dir) / p
        if not p.is_file():
            raise TrainDataError(f"training data {p}: no such file")
        data, uri = p.read_bytes(), str(p.resolve())
    else:
        raise TrainDataError(f"training data {uri}: unsupported scheme '{parsed.scheme}' (path or s3://)")
    return data, {"name": uri, "uri": uri, "sha256": sha256_bytes(data)}


def _rows(data: bytes, fmt: str, label: str) -> list[Any]:
    try:
        if fmt == "parquet":
            return pq.read_table(io.BytesIO(data)).to_pylist()
        text = data.decode("utf-8")
        if fmt == "jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        loaded = json.loads(text)
    except (ValueError, OSError) as e:
        raise TrainDataError(f"training data {label}: not valid {fmt} ({e})") from None
    if isinstance(loaded, dict):  # {"data": [...]} / {"train": [...]}: the one list inside
        lists = [v for v in loaded.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise TrainDataError(
                f"training data {label}: a JSON object must hold exactly one list of records"
            )
        loaded = lists[0]
    if not isinstance(loaded, list):
        raise TrainDataError(
            f"training data {label}: expected a list of records, got {type(loaded).__name__}"
        )
    return loaded


def _format_of(src: TrainSource) -> str:
    if src.format:
        return src.format
    name = src.label.lower()
    for ext, fmt in ((".parquet", "parquet"), (".jsonl", "jsonl"), (".json", "json")):
        if name.endswith(ext):
            return fmt
    raise TrainDataError(f"training data {src.label}: cannot tell the format; set format: json|jsonl|parquet")


def _check(row: Any, i: int, label: str, need_think: bool) -> tuple[Record | None, str | None]:
    """A record, or the reason it is unusable."""
    rid = str(row.get("id")) if isinstance(row, dict) and row.get("id") is not None else None
    where = f"record {i}" + (f" (id={rid})" if rid else "")
    if not isinstance(row, dict):
        return None, f"{where}: not an object"
    for field in ("question", "response"):
        value = row.get(field)
        if value is None:
            return None, f"{where}: missing field '{field}'"
        if not isinstance(value, str) or not value.strip():
            return None, f"{where}: field '{field}' must be a non-empty string"
    reasoning, answer = split_response(row["response"])
    if reasoning is None and need_think:
        return None, f"{where}: field 'response' has no <think>…</think> block"
    if not answer:
        return None, f"{where}: field 'response' has no answer after </think>"
    src = row.get("source")
    return Record(
        id=rid or f"{posixpath.basename(label)}:{i}",
        source=str(src) if src else posixpath.basename(label),
        file=label,
        index=i,
        question=row["question"],
        reasoning=reasoning,
        answer=answer,
    ), None


def load_records(
    sources: list[TrainSource],
    store: Store,
    base_dir: str = ".",
    need_think: bool = True,
    s3: tuple[str | None, str | None] = (None, None),
) -> tuple[list[Record], list[dict[str, Any]]]:
    """All records of all sources, in order, and the manifest inputs; raise on any unusable record.
    `s3` is the (endpoint, region) for `s3://` files (the store's settings)."""
    records: list[Record] = []
    inputs: list[dict[str, Any]] = []
    for src in sources:
        data, entry = _read_bytes(src, store, base_dir, s3)
        label = entry["uri"]
        rows = _rows(data, _format_of(src), label)
        if src.limit is not None:
            rows = rows[: src.limit]
        if not rows:
            raise TrainDataError(f"training data {label}: no records")
        problems: list[str] = []
        for i, row in enumerate(rows):
            rec, why = _check(row, i, label, need_think)
            if why:
                problems.append(why)
            else:
                records.append(rec)  # type: ignore[arg-type]
        if problems:
            listed = "; ".join(problems[:MAX_LISTED]) + ("; …" if len(problems) > MAX_LISTED else "")
            hint = ""
            if need_think and all("<think>" in p for p in problems) and len(problems) == len(rows):
                hint = (
                    " — no record has reasoning: is this a STAR-1-format file? (format.reasoning: drop "
                    "trains on answers alone)"
                )
            raise TrainDataError(
                f"training data {label}: {len(problems)} of {len(rows)} records unusable: {listed}{hint}"
            )
        inputs.append({**entry, "records": len(rows)})
    return records, inputs
