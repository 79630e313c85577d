"""File-format readers: bytes → (row number, record) pairs, or a per-row error. One small function a format.

A problem that leaves the rest of the file readable (a bad JSONL line, a CSV row with the wrong number of
fields) is yielded as a row error, which becomes a reject with its row number. A problem that makes the file
unreadable (invalid JSON, broken CSV quoting) raises SourceError naming the file and line.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq

csv.field_size_limit(1 << 27)


class SourceError(ValueError):
    """A source cannot be read; the message names the source, file and row/line."""


@dataclass(frozen=True)
class RawRow:
    row: int  # 1-based data row (CSV/TSV data rows, JSONL/TXT lines, JSON list items)
    record: Any = None
    error: str | None = None  # reason code when the row itself is malformed
    detail: str = ""


FORMATS = ("csv", "tsv", "json", "jsonl", "txt", "parquet")
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl",
             ".txt": "txt", ".parquet": "parquet"}  # fmt: skip


def infer_format(uri: str, declared: str | None) -> str:
    if declared:
        return declared
    low = uri.lower().split("?")[0]
    for suffix, fmt in _SUFFIXES.items():
        if low.endswith(suffix) or low.endswith(suffix + ".gz"):
            return fmt
    raise SourceError(
        f"{uri}: cannot tell the file format from its name; set loader.format to one of {FORMATS}"
    )


def decode(data: bytes, encoding: str) -> str:
    """Decode without crashing: undecodable bytes survive as surrogates and are rejected per row."""
    text = data.decode(encoding, errors="surrogateescape")
    return text[1:] if text.startswith("\ufeff") else text


def has_bad_encoding(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def read_delimited(text: str, where: str, delimiter: str) -> Iterator[RawRow]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip() for h in header]
        if len(set(header)) != len(header):
            raise SourceError(f"{where}: duplicate column names in header {header}")
        row = 0
        for fields in reader:
            row += 1
            if not fields:  # a blank line is not a row
                row -= 1
                continue
            if len(fields) != len(header):
                yield RawRow(
                    row,
                    error="malformed_row",
                    detail=f"line {reader.line_num}: expected {len(header)} fields, got {len(fields)}",
                )
                continue
            yield RawRow(row, dict(zip(header, fields, strict=True)))
    except csv.Error as e:
        raise SourceError(
            f"{where}: line {reader.line_num}: malformed {'TSV' if delimiter == chr(9) else 'CSV'}: {e}"
        ) from None


def split_lines(text: str) -> list[str]:
    """Lines split at `\\n` and `\\r\\n` only. `str.splitlines()` also splits at U+2028, U+2029, U+0085, form
    feed and other separators that JSON strings (`ensure_ascii=False`) and prompts may contain."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start a new one
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_jsonl(text: str, where: str) -> Iterator[RawRow]:
    for lineno, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            continue
        try:
            yield RawRow(lineno, json.loads(line))
        except json.JSONDecodeError as e:
            yield RawRow(lineno, error="malformed_json", detail=f"line {lineno}: {e.msg} at column {e.colno}")


def read_json(text: str, where: str, json_key: str | None) -> Iterator[RawRow]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise SourceError(f"{where}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if isinstance(obj, dict):
        if json_key is None:
            lists = [k for k, v in obj.items() if isinstance(v, list)]
            raise SourceError(
                f"{where}: JSON file holds an object, not a list; set loader.json_key "
                f"(keys holding lists: {lists})"
            )
        if not isinstance(obj.get(json_key), list):
            raise SourceError(
                f"{where}: JSON key '{json_key}' is missing or not a list (keys: {list(obj)[:20]})"
            )
        obj = obj[json_key]
    if not isinstance(obj, list):
        raise SourceError(f"{where}: JSON top level is {type(obj).__name__}, expected a list")
    for i, item in enumerate(obj, start=1):
        yield RawRow(i, item)


def read_txt(text: str, where: str) -> Iterator[RawRow]:
    lines = split_lines(text)
    while lines and not lines[-1].strip():
        lines.pop()
    for lineno, line in enumerate(lines, start=1):
        yield RawRow(lineno, line)


def read_parquet(data: bytes, where: str) -> Iterator[RawRow]:
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise SourceError(f"{where}: unreadable Parquet: {e}") from None
    for i, rec in enumerate(table.to_pylist(), start=1):
        yield RawRow(i, rec)


def read_bytes(
    data: bytes, fmt: str, where: str, encoding: str = "utf-8", json_key: str | None = None
) -> Iterator[RawRow]:
    """Dispatch on format. `where` is used in every error message."""
    if data[:2] == b"\x1f\x8b":
        import gzip

        data = gzip.decompress(data)
    if fmt == "parquet":
        return read_parquet(data, where)
    text = decode(data, encoding)
    readers: dict[str, Callable[[], Iterator[RawRow]]] = {
        "csv": lambda: read_delimited(text, where, ","),
        "tsv": lambda: read_delimited(text, where, "\t"),
        "jsonl": lambda: read_jsonl(text, where),
        "json": lambda: read_json(text, where, json_key),
        "txt": lambda: read_txt(text, where),
    }
    if fmt not in readers:
        raise SourceError(f"{where}: unknown format '{fmt}' (known: {FORMATS})")
    return readers[fmt]()
