"""Benchmarks as data: the built-in registry (benchmarks.yaml) or a user's own file, and name resolution
(groups `paper`, `safety`, `overrefusal`, `reasoning`, `all`; unknown names suggest close matches)."""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from star1.config import ConfigError, Loader, RowFilter, SampleSpec, Strict, load_yaml
from star1.config.collect import default_loader_kind

BUILTIN = Path(__file__).with_name("benchmarks.yaml")
GROUPS = ("paper", "safety", "overrefusal", "reasoning", "all")
SCORERS = ("llama_guard", "refusal", "math", "choice", "code")
TRANSFORMS = ("wildchat_toxic", "mcq_shuffle", "mcq_list")
_FIELD = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")

Kind = Literal["safety", "overrefusal", "reasoning"]


class BenchmarkSpec(Strict):
    """One benchmark: where its items come from, how each becomes a prompt, how outputs are scored."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    kind: Kind
    description: str = ""
    paper: bool = Field(False, description="part of the paper's evaluation (the `paper` group)")
    expected_items: int | None = Field(None, description="size of the full benchmark, for the report")
    loader: Loader
    filters: list[RowFilter] = Field(default_factory=list)
    sample: SampleSpec | None = Field(None, description="seeded permutation, first n (HF shuffle().select)")
    transform: Literal["wildchat_toxic", "mcq_shuffle", "mcq_list"] | None = None
    transform_args: dict[str, Any] = Field(default_factory=dict)
    id_column: str | None = Field(None, description="default: the row number")
    template: str = Field(description="the user message; {{field}} is replaced by the record's field")
    answer_column: str | None = Field(None, description="gold answer (reasoning)")
    category_column: str | None = None
    label_column: str | None = Field(None, description="overrefusal: 'safe'/'unsafe' per prompt")
    meta_columns: list[str] = Field(default_factory=list, description="fields handed to the scorer")
    profile: Literal["safety", "reasoning"]
    max_tokens: int | None = Field(None, gt=0, description="generation limit (reasoning; safety: 8000)")
    scorer: Literal["llama_guard", "refusal", "math", "choice", "code"]
    scorer_args: dict[str, Any] = Field(default_factory=dict)
    version: str = "1"
    license: str | None = None

    @field_validator("loader", mode="before")
    @classmethod
    def _default_kind(cls, v: Any) -> Any:
        return default_loader_kind(v)

    @model_validator(mode="after")
    def _consistent(self) -> BenchmarkSpec:
        if not self.template_fields:
            raise ValueError("template names no {{field}}")
        if self.scorer in ("math", "choice") and not self.answer_column:
            raise ValueError(f"scorer '{self.scorer}' needs answer_column")
        if self.scorer == "code" and not {"test", "entry_point"} <= set(self.meta_columns):
            raise ValueError("scorer 'code' needs meta_columns with test and entry_point")
        return self

    @property
    def template_fields(self) -> list[str]:
        return list(dict.fromkeys(_FIELD.findall(self.template)))

    def render(self, record: dict[str, Any]) -> str:
        return _FIELD.sub(lambda m: str(record[m.group(1)]), self.template)

    def required_columns(self) -> list[str]:
        """Record fields the benchmark reads (after its transform)."""
        cols = [*self.template_fields, *self.meta_columns]
        for c in (self.id_column, self.answer_column, self.category_column, self.label_column):
            if c:
                cols.append(c)
        return list(dict.fromkeys(cols))


@lru_cache(maxsize=8)
def load_registry(path: str | None = None) -> dict[str, BenchmarkSpec]:
    """{name: spec} in file order; a bad entry fails naming the file, entry and field."""
    file = Path(path) if path else BUILTIN
    raw = load_yaml(file) or {}
    out: dict[str, BenchmarkSpec] = {}
    for i, item in enumerate(raw.get("benchmarks") or []):
        try:
            spec = BenchmarkSpec.model_validate(item)
        except ValidationError as e:
            name = item.get("name", "?") if isinstance(item, dict) else "?"
            why = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'entry'}: {x['msg']}" for x in e.errors())
            raise ConfigError(f"{file}: benchmarks.{i} ({name}): {why}") from None
        if spec.name in out:
            raise ConfigError(f"{file}: duplicate benchmark name '{spec.name}'")
        out[spec.name] = spec
    return out


def resolve(names: list[str], registry: str | None = None) -> list[BenchmarkSpec]:
    """Names and group names → specs in registry order of first mention, without duplicates."""
    known = load_registry(registry)
    out: dict[str, BenchmarkSpec] = {}
    for name in names:
        if name in known:
            out.setdefault(name, known[name])
        elif name in GROUPS:
            for spec in known.values():
                if name == "all" or (name == "paper" and spec.paper) or spec.kind == name:
                    out.setdefault(spec.name, spec)
        else:
            close = difflib.get_close_matches(name, [*known, *GROUPS], n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
            raise ConfigError(f"eval.benchmarks: unknown benchmark '{name}'{hint}")
    return list(out.values())
