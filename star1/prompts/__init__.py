"""Prompt templates as data (markdown with `$name` placeholders), each hashed into the response-cache key."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from string import Template

HERE = Path(__file__).parent


@cache
def template(name: str) -> Template:
    return Template((HERE / f"{name}.md").read_text(encoding="utf-8"))


def render(name: str, **fields: str) -> str:
    """Fill a template; a missing field is an error (never an empty hole in a prompt)."""
    return template(name).substitute(**fields)


def template_hash(*names: str) -> str:
    h = hashlib.sha256()
    for n in names:
        h.update((HERE / f"{n}.md").read_bytes())
    return h.hexdigest()[:16]
