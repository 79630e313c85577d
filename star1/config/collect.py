"""`collect:` — prompt sources (loaders, filters, sampling), eval sets, dedup thresholds."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from star1.config.base import Strict


class RowFilter(Strict):
    """Keep a row only when `row[column] <op> value` holds (all filters of a source must hold)."""

    column: str
    op: Literal["eq", "ne", "in", "not_in"] = "eq"
    value: Any

    @model_validator(mode="after")
    def _check_value(self) -> RowFilter:
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"op '{self.op}' needs a list value, got {type(self.value).__name__}")
        return self


class SampleSpec(Strict):
    """Seeded subsample after filtering (e.g. WildJailbreak eval: shuffle(seed=42), first 250)."""

    n: int = Field(gt=0)
    seed: int = 42


class FileLoader(Strict):
    """One or more files: local paths, `s3://…` or `http(s)://…` URLs."""

    kind: Literal["file"] = "file"
    uri: list[str] = Field(min_length=1)
    format: Literal["csv", "tsv", "json", "jsonl", "txt", "parquet"] | None = None
    json_key: str | None = Field(None, description="key of the list inside a JSON object file")
    encoding: str = "utf-8"

    @field_validator("uri", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class HFLoader(Strict):
    """A Hugging Face dataset: `datasets.load_dataset(path, name, split=…, **kwargs)`, splits concatenated."""

    kind: Literal["hf"] = "hf"
    path: str
    name: str | None = None
    split: list[str] = Field(default_factory=lambda: ["train"], min_length=1)
    revision: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("split", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


Loader = Annotated[FileLoader | HFLoader, Field(discriminator="kind")]


def default_loader_kind(v: Any) -> Any:
    """A loader given without `kind`: `hf` when it names a hub `path` (and no `uri`), else `file`."""
    if isinstance(v, dict) and "kind" not in v:
        return {**v, "kind": "hf" if "path" in v and "uri" not in v else "file"}
    return v


class SourceSpec(Strict):
    """One prompt source: where it loads from, which column holds the prompt, which rows to keep."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    loader: Loader
    prompt_column: str | None = Field(None, description="None only for TXT files (one prompt per line)")
    filters: list[RowFilter] = Field(default_factory=list)
    strip: list[str] = Field(default_factory=list, description="literal markers removed from the prompt")
    ngram: int = Field(8, ge=1, le=64, description="word n-gram size for this source's self-dedup")
    sample: SampleSpec | None = None
    license: str | None = None

    @field_validator("loader", mode="before")
    @classmethod
    def _default_kind(cls, v: Any) -> Any:
        return default_loader_kind(v)

    @model_validator(mode="after")
    def _prompt_column_needed(self) -> SourceSpec:
        if self.prompt_column is None and self.loader.kind == "hf":
            raise ValueError("prompt_column is required for a Hugging Face source")
        return self


SourceRef = str | SourceSpec


class EmbeddingConfig(Strict):
    model: str = Field("all-MiniLM-L6-v2", description="sentence-transformers model id or local folder")
    batch_size: int = Field(256, gt=0)
    chunk_size: int = Field(4096, gt=0, description="texts per cached embedding chunk (unit of resume)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="auto: bfloat16 where computed natively (cosines within ~0.01), else float32",
    )
    actors: int = Field(1, gt=0, description="Ray actors computing embeddings")
    cpus_per_actor: float | None = Field(None, gt=0, description="default: the cluster's CPUs / actors")
    max_seq_length: int = Field(128, gt=0)


class EmbeddingSearchConfig(Strict):
    """How the embedding self-dedup finds pairs with cosine ≥ `embed_threshold` (it is the one O(N²) step).

    exact: blocked matrix products, every pair (O(N²) time, O(block × N) memory).
    ivf: faiss inverted-file index (k-means cells; each row scans its `nprobe` nearest cells), ~N² · nprobe /
    nlist; recall against exact search is measured by `bench/collect.py`.
    auto: exact up to `exact_max_rows` rows, ivf above.
    """

    method: Literal["auto", "exact", "ivf"] = "auto"
    exact_max_rows: int = Field(250_000, gt=0, description="auto: largest pool searched exactly")
    nlist: int | None = Field(None, gt=0, description="ivf cells; default ≈ 4·√rows")
    nprobe: int = Field(128, gt=0, description="ivf cells scanned per row (pair recall 0.9955 at 200K)")


class CollectConfig(Strict):
    registry: str | None = Field(None, description="YAML registry of named sources; default: built-in STAR-1")
    sources: list[SourceRef] = Field(min_length=1)
    eval_sets: list[SourceRef] = Field(default_factory=list)
    max_prompt_chars: int = Field(8000, gt=0)
    decontam_ngram: int = Field(
        8, ge=1, description="n-gram size for decontamination vs. eval + earlier sources"
    )
    tfidf_threshold: float = Field(0.6, gt=0, le=1)
    embed_threshold: float = Field(0.7, gt=0, le=1)
    embed_decontam_threshold: float = Field(0.7, gt=0, le=1)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    block_rows: int = Field(2048, gt=0, description="rows per block in similarity search (memory knob)")
    embedding_search: EmbeddingSearchConfig = Field(default_factory=EmbeddingSearchConfig)
