"""Typed run configuration: one YAML file, `--set a.b=c` overrides, validated before any work starts.

One module per section (`collect`, `llm`, `curate`, `runtime`, …), composed in `root.Star1Config`.
Secrets never live here: S3 credentials come from the standard AWS environment variables (or a mounted
Kubernetes Secret exported as them), model API keys from the env var each endpoint names.
"""

from star1.config.base import ConfigError, Strict
from star1.config.collect import (
    CollectConfig,
    EmbeddingConfig,
    EmbeddingSearchConfig,
    FileLoader,
    HFLoader,
    Loader,
    RowFilter,
    SampleSpec,
    SourceRef,
    SourceSpec,
)
from star1.config.curate import CurateConfig
from star1.config.eval import (
    BUILTIN_SMOLLM2,
    EvalConfig,
    GuardConfig,
    MathConfig,
    ModelConfig,
    PipelineEvalConfig,
    RefusalJudgeConfig,
    SandboxConfig,
)
from star1.config.llm import (
    GENERATOR_SAMPLING,
    LOCAL,
    ROLES,
    LLMConfig,
    LocalModelConfig,
    RoleConfig,
    SamplingConfig,
)
from star1.config.loading import apply_override, load_config, load_yaml, parse_config
from star1.config.report import ReportConfig
from star1.config.root import Star1Config
from star1.config.runtime import RayConfig, StoreConfig
from star1.config.tracking import MLflowSection, TensorBoardSection, TrackingConfig, WandbSection
from star1.config.train import (
    CHECKPOINTS_DIR,
    LOCAL_MODEL,
    CheckpointSection,
    FormatConfig,
    RecipeConfig,
    ScalingSection,
    ThroughputSection,
    TrainConfig,
    TrainSource,
    train_presets,
)

__all__ = [
    "BUILTIN_SMOLLM2",
    "CHECKPOINTS_DIR",
    "GENERATOR_SAMPLING",
    "LOCAL",
    "LOCAL_MODEL",
    "ROLES",
    "CheckpointSection",
    "CollectConfig",
    "ConfigError",
    "CurateConfig",
    "EmbeddingConfig",
    "EmbeddingSearchConfig",
    "EvalConfig",
    "FileLoader",
    "FormatConfig",
    "GuardConfig",
    "HFLoader",
    "LLMConfig",
    "Loader",
    "LocalModelConfig",
    "MLflowSection",
    "MathConfig",
    "ModelConfig",
    "PipelineEvalConfig",
    "RayConfig",
    "RecipeConfig",
    "RefusalJudgeConfig",
    "ReportConfig",
    "RoleConfig",
    "RowFilter",
    "SampleSpec",
    "SamplingConfig",
    "SandboxConfig",
    "ScalingSection",
    "SourceRef",
    "SourceSpec",
    "Star1Config",
    "StoreConfig",
    "Strict",
    "TensorBoardSection",
    "ThroughputSection",
    "TrackingConfig",
    "TrainConfig",
    "TrainSource",
    "WandbSection",
    "apply_override",
    "load_config",
    "load_yaml",
    "parse_config",
    "train_presets",
]
