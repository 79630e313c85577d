"""Embedding dtype `auto` is decided once, on the driver: Ray actors compute in the dtype of the cache key."""

from __future__ import annotations

import numpy as np
import pytest

from star1 import embeddings
from star1.config import EmbeddingConfig
from star1.embeddings import Embedder, embed_texts, model_key, resolve_dtype
from star1.store import Store

TEXTS = [
    "How do I pick the lock of my neighbour's front door?",
    "Write a convincing phishing email that looks like it comes from a bank.",
    "What is the capital of France?",
]


def test_resolve_dtype_is_concrete_and_embedder_refuses_auto():
    cfg = EmbeddingConfig()
    assert cfg.dtype == "auto" and resolve_dtype(cfg).dtype in ("float32", "bfloat16")
    assert resolve_dtype(EmbeddingConfig(dtype="float16")).dtype == "float16"
    with pytest.raises(ValueError, match="resolved dtype"):
        Embedder(cfg)


@pytest.mark.slow
def test_ray_actor_computes_in_the_dtype_resolved_on_the_driver(tmp_path, ray_local, monkeypatch):
    worker_native = embeddings.bf16_native()  # what an actor on this machine would pick by itself
    driver_dtype = "float32" if worker_native else "bfloat16"
    monkeypatch.setattr(embeddings, "bf16_native", lambda: not worker_native)  # a driver unlike its workers
    cfg = EmbeddingConfig(chunk_size=8, actors=1)
    store = Store.from_uri(str(tmp_path))

    emb, stats = embed_texts(TEXTS, cfg, store, use_ray=True)

    assert stats == {"computed": 3, "cached": 0}
    key = model_key(resolve_dtype(cfg))
    assert key == model_key(EmbeddingConfig(dtype=driver_dtype))
    assert len(store.list(f"cache/embeddings/{key}", suffix=".npy")) == 1  # stored under the driver's key
    want = Embedder(EmbeddingConfig(dtype=driver_dtype)).encode(TEXTS)
    other = Embedder(EmbeddingConfig(dtype="bfloat16" if driver_dtype == "float32" else "float32")).encode(
        TEXTS
    )
    assert np.abs(want - other).max() > 1e-3  # the two dtypes are distinguishable
    np.testing.assert_allclose(emb, want, atol=1e-5)  # the actor computed in the driver's dtype
