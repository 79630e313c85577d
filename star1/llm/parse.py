"""Tolerant parsers for model output. Never `eval()`: JSON only, with a few forgiving repairs."""

from __future__ import annotations

import json
import re
from typing import Any

_THINK = re.compile(r"<think>\n?(.*?)\n?</think>\n?\n?(.*)", re.DOTALL)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


class ParseError(ValueError):
    """Output that does not parse; the message says what was expected."""


def split_think(response: str) -> tuple[str, str]:
    """(reasoning, final answer) from `<think>…</think>answer` (the paper's regex)."""
    m = _THINK.search(response)
    if not m:
        raise ParseError("no <think>…</think> block")
    return m.group(1).strip(), m.group(2).strip()


def _json_candidates(text: str) -> list[str]:
    out = [m.group(1) for m in _FENCE.finditer(text)]
    out.append(text)
    for open_, close in (("{", "}"), ("[", "]")):
        i, j = text.find(open_), text.rfind(close)
        if 0 <= i < j:
            out.append(text[i : j + 1])
    return out


def _loads(s: str) -> Any:
    s = s.strip()
    try:
        return json.loads(s)
    except json.JSONDecodeError:
        pass
    repaired = re.sub(r",\s*([}\]])", r"\1", s)  # trailing commas
    if "'" in repaired and '"' not in repaired:
        repaired = repaired.replace("'", '"')  # a Python-style list/dict of plain strings
    return json.loads(repaired)


def extract_json(text: str) -> Any:
    for cand in _json_candidates(text):
        try:
            return _loads(cand)
        except (json.JSONDecodeError, ValueError):
            continue
    raise ParseError("no JSON value found")


def parse_categories(
    text: str, allowed: list[str], other: str = "Other", strip_other: bool = False
) -> list[str]:
    """An ordered, de-duplicated list of allowed labels (case/space-insensitive), e.g. from `["A", "B"]`.
    `strip_other` removes `other` from a list that has real labels too."""
    value = extract_json(text)
    if isinstance(value, dict):
        value = value.get("categories", value.get("category"))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ParseError("expected a non-empty JSON list of category names")
    canon = {_norm(a): a for a in [*allowed, other]}
    out: list[str] = []
    for item in value:
        label = canon.get(_norm(str(item)))
        if label is None:
            raise ParseError(f"unknown category {item!r}")
        if label not in out:
            out.append(label)
    if strip_other and other in out and len(out) > 1:
        out.remove(other)
    return out


def _norm(s: str) -> str:
    return re.sub(r"\s+", "", s).casefold()


def parse_scores(text: str, keys: list[str], lo: int, hi: int) -> dict[str, int]:
    """Integer scores for every key, within [lo, hi]."""
    value = extract_json(text)
    if not isinstance(value, dict):
        raise ParseError(f"expected a JSON object with keys {keys}")
    out = {}
    for k in keys:
        if k not in value:
            raise ParseError(f"missing score {k!r}")
        try:
            v = float(value[k])
        except (TypeError, ValueError):
            raise ParseError(f"score {k!r} is not a number: {value[k]!r}") from None
        if not v.is_integer() or not lo <= v <= hi:
            raise ParseError(f"score {k!r}={value[k]!r} is not an integer in [{lo}, {hi}]")
        out[k] = int(v)
    return out
