"""Generation engines behind one interface (`base.Engine`), and the pool that starts them lazily.

`ModelHandle.describe()` (resolution, hashes, chat template) needs no engine, so a current eval is skipped
without starting one. The pool keeps at most one in-process engine alive (a GPU holds one model) and hands
the same engine to every role that uses the same model (SmolLM2 as model and stand-in judge). A handle carries
the requests its run will send (`expect`): an in-process engine sizes its context for them, and one too
small for a later role's requests is replaced by one that fits.
"""

from __future__ import annotations

from typing import Any

from star1.config import ModelConfig
from star1.evals.engines.base import Engine, GenRequest, GenResult, Sampling
from star1.evals.engines.model_source import ResolvedModel, resolve_model
from star1.store import Store

__all__ = ["Engine", "EnginePool", "GenRequest", "GenResult", "ModelHandle", "Sampling"]

_EXECUTION_ONLY = {"name", "batch_size", "thinking"}  # fields that do not change which engine is needed


def engine_identity(cfg: ModelConfig) -> str:
    return cfg.model_dump_json(exclude=_EXECUTION_ONLY)


class ModelHandle:
    """A configured model: where it resolves, its hashes, and (lazily) its engine."""

    def __init__(self, cfg: ModelConfig, store: Store | None) -> None:
        self.cfg, self.store = cfg, store
        self._resolved: ResolvedModel | None = None
        self._desc: dict[str, Any] | None = None
        self.workload: list[GenRequest] = []

    def expect(self, requests: list[GenRequest]) -> None:
        """The requests this run sends the model (stored ones included): an in-process vLLM engine started
        for them sizes its context (max_model_len) to fit them."""
        self.workload = requests

    @property
    def resolved(self) -> ResolvedModel:
        if self._resolved is None:
            self._resolved = resolve_model(self.cfg, self.store)
        return self._resolved

    def describe(self) -> dict[str, Any]:
        if self._desc is not None:
            return self._desc
        if self.cfg.engine == "openai":
            from star1.evals.engines.openai_api import OpenAIEngine

            self._desc = OpenAIEngine(self.cfg, None).describe()
            return self._desc
        from star1.evals.engines.vllm_common import PromptRenderer, describe

        renderer = PromptRenderer(self.cfg, self.resolved)
        self._desc = describe(self.cfg, self.resolved, renderer, self.cfg.backend, self.on_cpu)
        return self._desc

    def on_cpu(self) -> bool:
        """Whether its vLLM engine runs on CPU, decided as the engine will decide it."""
        if self.cfg.backend == "ray":
            from star1.evals.engines.vllm_ray import uses_gpus

            return not uses_gpus(self.cfg)
        from star1.llm.cpu_dtype import vllm_on_cpu

        return vllm_on_cpu()


class EnginePool:
    """Engines by model identity; on a GPU an in-process engine is closed before another one starts."""

    def __init__(self, store: Store | None = None, resource_wait_s: float = 0.0) -> None:
        self.store = store
        self.resource_wait_s = resource_wait_s  # ray backend: how long to wait for the GPUs an engine needs
        self._live: dict[str, Engine] = {}
        self.started: list[str] = []  # labels of engines started, in order (tests and logs)

    def get(self, handle: ModelHandle) -> Engine:
        ident = engine_identity(handle.cfg)
        live = self._live.get(ident)
        if live is not None:
            fits = getattr(live, "fits", None)  # in-process vLLM: is its context large enough?
            if fits is None or fits(handle.workload):
                return live
            live.close()
            del self._live[ident]
        cfg = handle.cfg
        engine: Engine
        if cfg.engine == "openai":
            from star1.evals.engines.openai_api import OpenAIEngine

            engine = OpenAIEngine(cfg, self.store)
        elif cfg.backend == "ray":
            from star1.evals.engines.vllm_ray import VLLMRayEngine

            engine = VLLMRayEngine(cfg, handle.resolved, self.resource_wait_s)
        else:
            from star1.evals.engines.vllm_local import VLLMLocalEngine
            from star1.llm.cpu_dtype import vllm_on_cpu

            if not vllm_on_cpu():
                self.close_local()  # one GPU holds one model; on CPU small engines live side by side

            engine = VLLMLocalEngine(cfg, handle.resolved, handle.workload)
        self._live[ident] = engine
        self.started.append(cfg.label)
        return engine

    def close_local(self) -> None:
        from star1.evals.engines.vllm_local import VLLMLocalEngine

        for ident, eng in list(self._live.items()):
            if isinstance(eng, VLLMLocalEngine):
                eng.close()
                del self._live[ident]

    def usage(self) -> dict[str, Any]:
        out = {}
        for eng in self._live.values():
            u = getattr(eng, "usage", None)
            if u:
                out[eng.cfg.label] = dict(u)  # type: ignore[attr-defined]
        return out

    def close(self) -> None:
        for eng in self._live.values():
            eng.close()
        self._live.clear()
