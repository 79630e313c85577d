"""The composed run config: one section per subsystem, each in a module of its own."""

from __future__ import annotations

from pydantic import Field

from star1.config.base import Strict
from star1.config.collect import CollectConfig
from star1.config.curate import CurateConfig
from star1.config.eval import EvalConfig
from star1.config.llm import LLMConfig
from star1.config.report import ReportConfig
from star1.config.runtime import RayConfig, StoreConfig
from star1.config.tracking import TrackingConfig
from star1.config.train import TrainConfig


class Star1Config(Strict):
    run_name: str = "star1"
    store: StoreConfig = Field(default_factory=StoreConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    collect: CollectConfig | None = None
    llm: LLMConfig = Field(default_factory=LLMConfig)
    curate: CurateConfig = Field(default_factory=CurateConfig)
    train: TrainConfig | None = None
    report: ReportConfig = Field(default_factory=ReportConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    base_dir: str = Field(".", description="folder that relative paths in this config are resolved against")
