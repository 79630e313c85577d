"""What both vLLM backends share: the tokenizer that renders prompts, engine arguments, runtime env.

Prompts are rendered and tokenized once, here, by the model's own chat template (no system prompt, the
generation prompt added, as the paper does), so the in-process engine and the Ray Data engines receive
identical token ids and the manifest can hash the exact template used. The same rendering says whether the
prompt ends inside an open `<think>` (DeepSeek-R1-Distill templates add `<think>\n`), which decides where
an output's final answer starts; the manifest records it as `thinking`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from star1.config import ModelConfig
from star1.evals.engines.base import GenRequest, Sampling
from star1.evals.engines.model_source import ModelSourceError, ResolvedModel, model_hashes
from star1.evals.scorers.common import ends_in_open_think
from star1.llm.cpu_dtype import DtypeChoice, resolve_dtype
from star1.llm.local_server import cache_root

# hub settings passed on to Ray engine workers (never secrets: workers get those from their own pods)
PASSED_ON = ("HF_HUB_OFFLINE", "HF_HOME")
PROBE = "star1-thinking-probe"  # the user turn rendered to see how the template opens the answer


def vllm_env() -> dict[str, str]:
    """Engine environment: no usage reporting, a KV cache size for CPU engines (ignored on GPUs), the
    cache under star1's cache root, and the caller's hub settings (offline only where the caller is)."""
    env = {
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "VLLM_CACHE_ROOT": os.environ.get("VLLM_CACHE_ROOT", str(cache_root() / "vllm")),
    }
    return env | {k: os.environ[k] for k in PASSED_ON if k in os.environ}


_VLLM_LOG: list[Path] = []


def quiet_vllm() -> Path | None:
    """When the CLI keeps library output off the terminal (not `--verbose`), the file an in-process vLLM
    engine's output goes to: its loggers (through `VLLM_LOGGING_CONFIG_PATH`, which its engine-core and
    worker processes inherit) and, via `engine_output`, whatever they print. Its path is printed once.
    Call before importing vllm. Returns None when output stays on the terminal."""
    from star1.ray_utils import quiet_log_dir

    if _VLLM_LOG:
        return _VLLM_LOG[0]
    folder = quiet_log_dir()
    if folder is None or "VLLM_LOGGING_CONFIG_PATH" in os.environ:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"vllm-eval-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log), "formatter": "plain"}},
        "loggers": {"vllm": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }
    path = log.with_suffix(".json")
    path.write_text(json.dumps(config))
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(path)
    _VLLM_LOG.append(log)
    print(f"vLLM's output goes to {log} (--verbose shows it here)", file=sys.stderr)
    return log


@contextlib.contextmanager
def engine_output(log: Path | None) -> Iterator[None]:
    """While an engine starts, send this process's stdout/stderr (file descriptors 1 and 2, and the Python
    streams) to `log`: the processes it spawns inherit them, so their prints, warnings and progress bars
    land there too. A no-op when `log` is None."""
    if log is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    stream = open(log, "a", encoding="utf-8", buffering=1)  # closed below
    sys.stdout = sys.stderr = stream
    try:
        yield
    finally:
        stream.flush()
        sys.stdout, sys.stderr = saved_streams
        stream.close()
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for x in saved_fds:
            os.close(x)


def vllm_version() -> str:
    import vllm

    return str(vllm.__version__)


class PromptRenderer:
    """The model's tokenizer: chat messages → token ids through its chat template; raw prompts as is."""

    def __init__(self, cfg: ModelConfig, model: ResolvedModel) -> None:
        from transformers import AutoTokenizer

        where = cfg.tokenizer or str(model.local_dir or model.source)
        try:
            self.tok = AutoTokenizer.from_pretrained(where)
        except (OSError, ValueError) as e:
            raise ModelSourceError(
                f"cannot load the tokenizer of model {model.given!r} from {where}: {e}"
            ) from None
        self.chat_template: str | None = getattr(self.tok, "chat_template", None)
        self.limit = context_limit(cfg, model)
        self.thinking = self.template_thinking() if cfg.thinking == "auto" else cfg.thinking

    def template_thinking(self) -> str:
        """How the chat template leaves the answer: 'open' when the generation prompt it renders after a
        user turn ends inside an unclosed `<think>` (the output starts mid-thought, as with R1-Distill),
        else 'tags' when the template knows think tags (the model writes its own, as Qwen3 does), else
        'none'."""
        if not self.chat_template:
            return "none"
        text = self.text(GenRequest("probe", Sampling(), (("user", PROBE),)))
        if ends_in_open_think(text[text.rindex(PROBE) + len(PROBE) :]):
            return "open"
        return "tags" if "think>" in self.chat_template else "none"

    def text(self, req: GenRequest) -> str:
        if req.raw_prompt is not None:
            return req.raw_prompt
        if not self.chat_template:
            raise ValueError("the model has no chat template; give one in its tokenizer_config.json")
        return self.tok.apply_chat_template(req.chat(), tokenize=False, add_generation_prompt=True)

    def token_ids(self, req: GenRequest) -> list[int]:
        # the rendered text carries its special tokens (BOS included where the template adds it)
        return list(self.tok(self.text(req), add_special_tokens=False)["input_ids"])

    def fit(self, req: GenRequest) -> tuple[list[int], dict[str, Any]] | str:
        """(token ids, vLLM sampling params with max_tokens clamped to the context left), or why the
        request cannot run (a prompt longer than the context is a per-request error, not a failed batch)."""
        ids = self.token_ids(req)
        params = req.sampling.vllm()
        if self.limit is not None:
            room = self.limit - len(ids)
            if room < 1:
                return f"prompt_too_long: {len(ids)} tokens, context {self.limit}"
            params["max_tokens"] = min(params["max_tokens"], room)
        return ids, params


def configured_max_len(cfg: ModelConfig) -> int | None:
    """max_model_len as configured (`engine_kwargs` win, as in `engine_kwargs`), or None."""
    value = cfg.engine_kwargs.get("max_model_len") or cfg.max_model_len
    return int(value) if value else None


def model_max_len(model: ResolvedModel) -> int | None:
    """The model's max_position_embeddings, when its config is on this machine."""
    if model.local_dir is None or not (model.local_dir / "config.json").exists():
        return None
    conf = json.loads((model.local_dir / "config.json").read_text())
    value = conf.get("max_position_embeddings") or conf.get("text_config", {}).get("max_position_embeddings")
    return int(value) if value else None


def context_limit(cfg: ModelConfig, model: ResolvedModel) -> int | None:
    """max_model_len as configured, else the model's maximum."""
    return configured_max_len(cfg) or model_max_len(model)


@dataclass(frozen=True)
class ContextChoice:
    """The context (vLLM's max_model_len) an in-process engine starts with, and why."""

    max_model_len: int | None  # None: vLLM's own default (the model's maximum, unknown here)
    reason: str
    configured: bool = False


def choose_max_model_len(configured: int | None, model_max: int | None, need: int | None) -> ContextChoice:
    """An explicit value wins; else what the requests need (longest prompt + its max_tokens), capped by the
    model's maximum; else the model's maximum. A smaller context leaves more KV cache for concurrent
    sequences and lets a CPU engine start where the model's maximum (131,072 for R1-Distill) would not fit."""
    if configured:
        return ContextChoice(configured, "configured", configured=True)
    if need is None:
        why = "the model's maximum (no requests known when the engine started)"
        return ContextChoice(model_max, why if model_max else "vLLM's default (the model's maximum)")
    if model_max is not None and need > model_max:
        return ContextChoice(model_max, f"the model's maximum (the requests need {need})")
    cap = f"model maximum {model_max}" if model_max else "model maximum unknown"
    return ContextChoice(need, f"the requests' longest prompt + max_tokens ({cap})")


def context_need(renderer: PromptRenderer, requests: Iterable[GenRequest]) -> int | None:
    """The context the requests need: the longest rendered prompt plus its max_tokens (None: no requests)."""
    return max((len(renderer.token_ids(r)) + r.sampling.max_tokens for r in requests), default=None)


def requested_dtype(cfg: ModelConfig) -> str:
    return str(cfg.engine_kwargs.get("dtype", cfg.dtype))  # engine_kwargs win, as in `engine_kwargs`


def engine_dtype(cfg: ModelConfig, on_cpu: Callable[[], bool]) -> DtypeChoice:
    """The dtype the engine runs in: as configured, except `auto` on CPU, chosen from the CPU's features
    (vLLM would take a bf16 checkpoint's bf16 even where the CPU has no bf16 arithmetic). On a GPU `auto`
    stays vLLM's choice. `on_cpu` is asked only for `auto`."""
    return resolve_dtype(requested_dtype(cfg), on_cpu)


def engine_kwargs(cfg: ModelConfig, cpu: bool) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "dtype": engine_dtype(cfg, lambda: cpu).dtype,
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "enforce_eager": cfg.enforce_eager if cfg.enforce_eager is not None else cpu,
        "seed": 0,
    }
    if cfg.tokenizer:
        kw["tokenizer"] = cfg.tokenizer
    if cfg.max_model_len:
        kw["max_model_len"] = cfg.max_model_len
    if cfg.max_num_seqs:
        kw["max_num_seqs"] = cfg.max_num_seqs
    if not cpu:
        kw["gpu_memory_utilization"] = cfg.gpu_memory_utilization
    return {**kw, **cfg.engine_kwargs}


def describe(
    cfg: ModelConfig,
    model: ResolvedModel,
    renderer: PromptRenderer,
    backend: str,
    on_cpu: Callable[[], bool],
) -> dict:
    """What the manifest records of a vLLM model. `dtype` is the one it runs in; only a dtype star1 chose
    (`auto` on CPU) adds `dtype_reason`, so the record of a GPU run and its fingerprint stay as they were."""
    dtype = engine_dtype(cfg, on_cpu)
    chosen = {"dtype_reason": dtype.reason} if dtype.dtype != requested_dtype(cfg) else {}
    return {
        "engine": "vllm",
        "backend": backend,
        "engine_version": vllm_version(),
        "model": cfg.label,
        "model_path": model.given,
        "model_source": model.source,
        **model_hashes(model, renderer.chat_template),
        "thinking": renderer.thinking,
        "dtype": dtype.dtype,
        **chosen,
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "data_parallel_size": cfg.replicas if backend == "ray" else 1,
        "max_model_len": cfg.max_model_len,
        "accelerator_type": cfg.accelerator_type,
        "engine_kwargs": cfg.engine_kwargs,
    }
