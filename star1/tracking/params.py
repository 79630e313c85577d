"""Nested config → flat `a.b.c` params within trackers' limits (MLflow: keys ≤ 250, values ≤ 6000 chars)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

MAX_KEY = 250
MAX_VALUE = 6000
CUT = "…(truncated)"


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """`{"a": {"b": 1}, "c": [1, 2]}` → `{"a.b": "1", "c": "[1, 2]"}`; lists stay one JSON value, None is
    left out, over-long values are cut with a marker."""
    out: dict[str, str] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}."))
        elif v is not None:
            out[key[:MAX_KEY]] = _text(v)
    return out


def _text(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str, ensure_ascii=False)
    return s if len(s) <= MAX_VALUE else s[: MAX_VALUE - len(CUT)] + CUT


def tracker_key(*parts: str) -> str:
    """Parts joined by `/`, each within what every tracker accepts as a metric name (MLflow: letters,
    digits, `_ - . : ` and space): `("aime24", "pass@1")` → `aime24/pass_at_1`."""
    return "/".join(re.sub(r"[^\w.\- :]+", "_", p.replace("@", "_at_")).strip(" .") or "_" for p in parts)
