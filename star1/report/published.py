"""The scorecard's benchmark catalog (the paper's columns, their order and aliases) and the STAR-1 paper's
published Table 1 rows, both read from `published.yaml`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from star1.evals.results import Kind

CATALOG = Path(__file__).with_name("published.yaml")
KIND_ORDER: tuple[Kind, ...] = ("safety", "overrefusal", "reasoning")


@dataclass(frozen=True)
class BenchmarkInfo:
    name: str  # canonical
    label: str
    short: str
    kind: Kind
    order: int  # position among the catalog's benchmarks (unknown ones sort after)


@dataclass(frozen=True)
class PublishedRow:
    """One row of the paper's Table 1: published figures, not star1 measurements."""

    key: str
    label: str
    size: str
    variant: str
    values: dict[str, float]
    avg_safety: float
    avg_reasoning: float


def normalize(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@cache
def _catalog() -> tuple[str, dict[str, BenchmarkInfo], dict[str, str], tuple[PublishedRow, ...]]:
    data = yaml.safe_load(CATALOG.read_text(encoding="utf-8"))
    infos: dict[str, BenchmarkInfo] = {}
    aliases: dict[str, str] = {}
    for i, (name, spec) in enumerate(data["benchmarks"].items()):
        infos[name] = BenchmarkInfo(name, spec["label"], spec["short"], spec["kind"], i)
        for alias in [name, spec["label"], *spec.get("aliases", [])]:
            aliases[normalize(alias)] = name
    rows = tuple(PublishedRow(**row) for row in data["rows"])
    return data["source"].strip(), infos, aliases, rows


def source() -> str:
    """Where the published rows come from (shown under every table that includes one)."""
    return _catalog()[0]


def canonical(name: str) -> str:
    """The catalog name of a benchmark (`JBB-Behaviors` → `jbb`), or the name itself when not catalogued."""
    return _catalog()[2].get(normalize(name), name)


def info(name: str) -> BenchmarkInfo | None:
    return _catalog()[1].get(canonical(name))


def label(name: str) -> str:
    """How tables and plots title a benchmark (or a per-kind average)."""
    if name.startswith("avg_"):
        return "Avg " + name[4:].replace("overrefusal", "over-refusal")
    found = info(name)
    return found.label if found else name


def published_rows() -> tuple[PublishedRow, ...]:
    return _catalog()[3]


def select_published(selectors: list[str]) -> list[PublishedRow]:
    """Rows picked by key (`7b-star1`), by size prefix (`7b` → its three rows) or `all`; an unknown selector
    raises ValueError listing the keys."""
    rows = published_rows()
    out: list[PublishedRow] = []
    for sel in selectors:
        s = sel.strip().lower()
        hit = [r for r in rows if s == "all" or r.key == s or r.key.startswith(f"{s}-")]
        if not hit:
            keys = ", ".join(r.key for r in rows)
            raise ValueError(f"no published row '{sel}' (keys: {keys}; a size such as '7b'; or 'all')")
        out.extend(r for r in hit if r not in out)
    return out
