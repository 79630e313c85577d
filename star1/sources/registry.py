"""Named sources: the built-in STAR-1 registry (registry.yaml) or a user's own registry file."""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path

from star1.config import ConfigError, SourceRef, SourceSpec, load_yaml

BUILTIN = Path(__file__).with_name("registry.yaml")
STAR1_ALL = "star1"  # `sources: [star1]` means all 18 STAR-1 sources in paper order


@lru_cache(maxsize=8)
def load_registry(path: str | None = None) -> dict[str, dict[str, SourceSpec]]:
    """{"sources": {name: spec}, "eval_sets": {name: spec}}, in file order."""
    file = Path(path) if path else BUILTIN
    raw = load_yaml(file) or {}
    out: dict[str, dict[str, SourceSpec]] = {}
    for section in ("sources", "eval_sets"):
        specs: dict[str, SourceSpec] = {}
        for i, item in enumerate(raw.get(section) or []):
            try:
                spec = SourceSpec.model_validate(item)
            except Exception as e:
                raise ConfigError(f"{file}: {section}.{i}: {e}") from None
            if spec.name in specs:
                raise ConfigError(f"{file}: {section}: duplicate source name '{spec.name}'")
            specs[spec.name] = spec
        out[section] = specs
    return out


def resolve(refs: list[SourceRef], section: str, registry: str | None = None) -> list[SourceSpec]:
    """Turn names and inline specs into specs, keeping order; unknown names suggest close matches."""
    named = load_registry(registry)[section]
    out: list[SourceSpec] = []
    for ref in refs:
        if isinstance(ref, SourceSpec):
            out.append(ref)
        elif ref == STAR1_ALL:
            out.extend(named.values())
        elif ref in named:
            out.append(named[ref])
        else:
            close = difflib.get_close_matches(ref, list(named), n=3)
            hint = f"; did you mean {close}?" if close else f"; known: {list(named)}"
            raise ConfigError(f"collect.{section}: unknown source '{ref}'{hint}")
    names = [s.name for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"collect.{section}: sources listed twice: {dup}")
    return out
