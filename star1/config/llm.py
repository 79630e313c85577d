"""`llm:` — one OpenAI-compatible endpoint per role, with its limits, retries, sampling and price."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from star1.config.base import ConfigError, Strict


class SamplingConfig(Strict):
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


class BatchConfig(Strict):
    """`mode: batch`: an OpenAI-style Batch API (JSONL upload → batch create → poll → download)."""

    max_requests: int = Field(50_000, gt=0, description="requests per batch file (OpenAI: 50,000)")
    max_bytes: int = Field(190_000_000, gt=0, description="bytes per batch file (OpenAI: 200 MB)")
    completion_window: str = "24h"
    poll_s: float = Field(30.0, gt=0, description="seconds between status polls")
    max_rounds: int = Field(10, ge=1, description="rounds of batches (re-asks, retries, expired requests)")
    discount: float = Field(0.5, ge=0, le=1, description="price multiplier for batch calls")


class RoleConfig(Strict):
    """An OpenAI-compatible endpoint used for one role (classifier, generator, judge, rewriter)."""

    base_url: str = Field(description="e.g. https://api.openai.com/v1, http://vllm:8000/v1, or 'local'")
    model: str
    endpoint_id: str | None = Field(None, description="identity for caching (default: base_url)")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="env var holding the key (never the key)")
    api_key_file: str | None = Field(None, description="file holding the key, e.g. a mounted k8s Secret")
    timeout_s: float = Field(300.0, gt=0)
    max_attempts: int = Field(8, ge=1)
    concurrency: int = Field(16, ge=1, description="requests in flight per worker")
    rpm: int | None = Field(None, gt=0, description="requests per minute, paced evenly (shared by workers)")
    tpm: int | None = Field(None, gt=0, description="tokens per minute, paced evenly (shared by workers)")
    rps: int | None = Field(None, gt=0, description="requests per second, paced evenly")
    burst: int = Field(1, ge=1, description="requests that may go at once before pacing applies")
    limit_window: bool = Field(
        False,
        description="opt-in: treat rpm/tpm as sliding 60 s windows that may be spent in a burst (only for "
        "providers documented to allow it); default: paced rates",
    )
    adaptive_limits: bool = Field(True, description="lower the rate on 429s and recover (AIMD)")
    structured_output: Literal["json_schema", "json_object", "none"] = Field(
        "json_schema", description="steps down by itself when the endpoint refuses a mode"
    )
    reasks: int = Field(2, ge=0, description="re-asks when output does not parse")
    resample_truncated: int = Field(
        10, ge=1, description="samples per call when a complete answer is required (paper: 10)"
    )
    mode: Literal["online", "batch"] = "online"
    batch: BatchConfig = Field(default_factory=BatchConfig)
    price_in_per_mtok: float | None = Field(None, ge=0)
    price_out_per_mtok: float | None = Field(None, ge=0)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * (self.price_in_per_mtok or 0) + completion_tokens * (self.price_out_per_mtok or 0)
        ) / 1e6


LOCAL = "local"  # base_url of a role served by the local model server star1 starts itself


class LocalModelConfig(Strict):
    """The local OpenAI-compatible server star1 starts for roles whose base_url is 'local'."""

    served_name: str = "smollm2"
    model_dir: str | None = Field(
        None, description="HF model folder; default: SmolLM2-135M-Instruct from GGUF"
    )
    port: int | None = Field(None, gt=0, lt=65536, description="default: a free port")
    max_model_len: int = Field(2048, gt=0)
    startup_timeout_s: float = Field(300.0, gt=0)
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "auto",
        description="auto: on CPU bfloat16 only where it has bf16 arithmetic (AVX-512-BF16, AMX, Arm bf16), "
        "else float32; on a GPU vLLM's choice",
    )


GENERATOR_SAMPLING = {"temperature": 0.6, "top_p": 0.7, "max_tokens": 8000}  # paper §2.3


ROLES = ("classifier", "generator", "judge", "rewriter")


class LLMConfig(Strict):
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
