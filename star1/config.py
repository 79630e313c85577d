"""Typed run configuration: one YAML file, `--set a.b=c` overrides, validated before any work starts.

Secrets never live here: S3 credentials come from the standard AWS environment variables (or a mounted
Kubernetes Secret exported as them), model API keys from the env var each endpoint names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A configuration problem, with the field path and what was expected."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------- sources


class RowFilter(_Strict):
    """Keep a row only when `row[column] <op> value` holds (all filters of a source must hold)."""

    column: str
    op: Literal["eq", "ne", "in", "not_in"] = "eq"
    value: Any

    @model_validator(mode="after")
    def _check_value(self) -> RowFilter:
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"op '{self.op}' needs a list value, got {type(self.value).__name__}")
        return self


class SampleSpec(_Strict):
    """Seeded subsample after filtering (e.g. WildJailbreak eval: shuffle(seed=42), first 250)."""

    n: int = Field(gt=0)
    seed: int = 42


class FileLoader(_Strict):
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


class HFLoader(_Strict):
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


class SourceSpec(_Strict):
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
        if isinstance(v, dict) and "kind" not in v:
            return {**v, "kind": "hf" if "path" in v and "uri" not in v else "file"}
        return v

    @model_validator(mode="after")
    def _prompt_column_needed(self) -> SourceSpec:
        if self.prompt_column is None and self.loader.kind == "hf":
            raise ValueError("prompt_column is required for a Hugging Face source")
        return self


SourceRef = str | SourceSpec


# --------------------------------------------------------------------------- stages


class EmbeddingConfig(_Strict):
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


class CollectConfig(_Strict):
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


class SamplingConfig(_Strict):
    """Sampling params sent with every request of a role (None = the endpoint's default)."""

    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int = Field(1024, gt=0)
    seed: int | None = None
    stop: list[str] | None = None
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="extra fields, e.g. repetition_penalty"
    )

    def request_params(self) -> dict[str, Any]:
        p: dict[str, Any] = {"max_tokens": self.max_tokens}
        for k in ("temperature", "top_p", "seed", "stop"):
            if getattr(self, k) is not None:
                p[k] = getattr(self, k)
        if self.extra_body:
            p["extra_body"] = dict(self.extra_body)
        return p


class RoleConfig(_Strict):
    """An OpenAI-compatible endpoint used for one role (classifier, generator, judge, rewriter)."""

    base_url: str = Field(description="e.g. https://api.openai.com/v1, http://vllm:8000/v1, or 'local'")
    model: str
    endpoint_id: str | None = Field(None, description="identity for caching (default: base_url)")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="env var holding the key (never the key)")
    api_key_file: str | None = Field(None, description="file holding the key, e.g. a mounted k8s Secret")
    timeout_s: float = Field(300.0, gt=0)
    max_attempts: int = Field(8, ge=1)
    concurrency: int = Field(16, ge=1, description="requests in flight per worker")
    rpm: int | None = Field(None, gt=0, description="requests per sliding minute, shared by all workers")
    tpm: int | None = Field(None, gt=0, description="tokens per sliding minute, shared by all workers")
    rps: int | None = Field(None, gt=0, description="requests per strict rolling second")
    structured_output: Literal["json_schema", "json_object", "none"] = "json_schema"
    reasks: int = Field(2, ge=0, description="re-asks when output does not parse")
    price_in_per_mtok: float | None = Field(None, ge=0)
    price_out_per_mtok: float | None = Field(None, ge=0)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * (self.price_in_per_mtok or 0) + completion_tokens * (self.price_out_per_mtok or 0)
        ) / 1e6


LOCAL = "local"  # base_url of a role served by the local model server star1 starts itself


class LocalModelConfig(_Strict):
    """The local OpenAI-compatible server star1 starts for roles whose base_url is 'local'."""

    served_name: str = "smollm2"
    model_dir: str | None = Field(
        None, description="HF model folder; default: SmolLM2-135M-Instruct from GGUF"
    )
    port: int | None = Field(None, gt=0, lt=65536, description="default: a free port")
    max_model_len: int = Field(2048, gt=0)
    startup_timeout_s: float = Field(300.0, gt=0)


GENERATOR_SAMPLING = {"temperature": 0.6, "top_p": 0.7, "max_tokens": 8000}  # paper §2.3


ROLES = ("classifier", "generator", "judge", "rewriter")


class LLMConfig(_Strict):
    """Endpoints per role. Each may be a different provider (e.g. GPT-4o judge, DeepSeek-R1 generator)."""

    classifier: RoleConfig | None = None
    generator: RoleConfig | None = None
    judge: RoleConfig | None = None
    rewriter: RoleConfig | None = None
    local: LocalModelConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _paper_sampling(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("generator"), dict):
            gen = dict(data["generator"])
            gen["sampling"] = {**GENERATOR_SAMPLING, **(gen.get("sampling") or {})}
            data = {**data, "generator": gen}
        return data

    @model_validator(mode="after")
    def _local_is_configured(self) -> LLMConfig:
        uses_local = [r for r in ROLES if (c := getattr(self, r)) is not None and c.base_url == LOCAL]
        if uses_local and self.local is None:
            raise ValueError(f"roles {uses_local} use base_url 'local' but llm.local is not set")
        return self

    def role(self, name: str) -> RoleConfig:
        cfg = getattr(self, name, None)
        if cfg is None:
            raise ConfigError(f"llm.{name} is not configured (needed by this stage)")
        return cfg


class CurateConfig(_Strict):
    """Knobs of the model-driven stages (classify → generate → score → select → benign → export)."""

    actors: int = Field(2, ge=1, description="Ray actors per stage (each holds one client)")
    batch_size: int = Field(32, ge=1, description="rows per actor call; all rows of a call run concurrently")
    actor_start_wait_s: float = Field(
        120,
        ge=0,
        description="hold the actors until the whole pool has started, at most this long (so early actors "
        "do not spend a burst budget alone); past it the started ones go ahead; 0: each goes as it starts",
    )
    select_threshold: int = Field(10, ge=0, le=10, description="every score must reach this (paper: 10)")
    select_n: int = Field(1000, ge=1)
    benign: bool = Field(True, description="build the benign add-on (STAR-benign-915 style)")


class StoreConfig(_Strict):
    uri: str = Field("./artifacts", description="local folder or s3://bucket/prefix")
    endpoint_url: str | None = Field(None, description="S3 endpoint; default: env AWS_ENDPOINT_URL")
    region: str | None = Field(None, description="S3 region; default: env AWS_REGION / AWS_DEFAULT_REGION")


class RayConfig(_Strict):
    enabled: bool = Field(True, description="run through Ray; false runs everything in this process")
    address: str | None = Field(None, description="cluster address; default: env RAY_ADDRESS, else local")
    num_cpus: int | None = Field(None, gt=0, description="CPUs for a local cluster")


class Star1Config(_Strict):
    run_name: str = "star1"
    store: StoreConfig = Field(default_factory=StoreConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    collect: CollectConfig | None = None
    llm: LLMConfig = Field(default_factory=LLMConfig)
    curate: CurateConfig = Field(default_factory=CurateConfig)
    base_dir: str = Field(".", description="folder that relative paths in this config are resolved against")


# --------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"duplicate key '{key}' at line {key_node.start_mark.line + 1}")
        seen[key] = loader.construct_object(value_node, deep=deep)
    return seen


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file strictly (duplicate keys are errors, with the file and line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e


def apply_override(data: dict, assignment: str) -> None:
    """Apply one `a.b.c=value` override in place; the value is parsed as a YAML scalar/list/map."""
    if "=" not in assignment:
        raise ConfigError(f"override '{assignment}' must look like key.path=value")
    key, raw = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override '{assignment}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override '{assignment}': value is not valid YAML: {e}") from e
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = _list_item(node, part, parts[: i + 1])
            continue
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict | list):
            raise ConfigError(f"override '{assignment}': '{'.'.join(parts[: i + 1])}' is not a mapping")
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, parts)] = value
    else:
        node[last] = value


def _list_index(node: list, part: str, path: list[str]) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(
            f"override path '{'.'.join(path)}': '{part}' is not an index of a {len(node)}-item list"
        )
    return int(part)


def _list_item(node: list, part: str, path: list[str]) -> Any:
    return node[_list_index(node, part, path)]


_TYPE_TAGS = {"str", "SourceSpec", "FileLoader", "HFLoader", "file", "hf"}


def _format_validation_error(err: ValidationError, origin: str) -> str:
    lines = [f"invalid config ({origin}):"]
    errors = err.errors()
    # A source given as a mapping also fails the "name of a registry source" (str) branch: not useful.
    real = [e for e in errors if not (e["type"] == "string_type" and isinstance(e.get("input"), dict))]
    for e in real or errors:
        parts = [str(p) for p in e["loc"] if str(p) not in _TYPE_TAGS and "[" not in str(p)]
        loc = ".".join(parts) or "<root>"
        got = e.get("input")
        got_s = "" if isinstance(got, dict | list) else f" (got {got!r})"
        lines.append(f"  {loc}: {e['msg']}{got_s}")
    return "\n".join(lines)


def parse_config(
    data: dict | None, origin: str = "<dict>", base_dir: str | Path | None = None
) -> Star1Config:
    """Validate a config mapping; raise ConfigError naming each bad field path."""
    data = dict(data or {})
    if base_dir is not None and "base_dir" not in data:
        data["base_dir"] = str(base_dir)
    try:
        return Star1Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, origin)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Star1Config:
    """Load a YAML config (or the defaults), apply `--set` overrides, validate."""
    data: dict = {}
    base_dir: Path | None = None
    origin = "defaults"
    if path is not None:
        loaded = load_yaml(path)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
        data = loaded or {}
        base_dir = Path(path).resolve().parent
        origin = str(path)
    for assignment in overrides or []:
        apply_override(data, assignment)
    return parse_config(data, origin=origin, base_dir=base_dir)
