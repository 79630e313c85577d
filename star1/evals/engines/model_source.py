"""Where a model comes from, and the hashes that say exactly which model it was.

`path` forms: a local folder; `s3://bucket/prefix` (downloaded once into the local cache); `store:<rel>`, a
folder in this run's store such as a `star1 train` output; `builtin:smollm2` (the embedded default); else a
Hugging Face id (resolved by vLLM from the hub or its cache). Weight hashes are sha256 over every file,
cached per (path, size, mtime) so a 60 GB model is hashed once.

Copies from a store stream (`Store.copy_tree_to_local`: a few MiB in memory whatever the shard size), hash
while they stream, land each file atomically and resume after an interruption. With `backend: ray` the
driver copies only the model's small files (config, tokenizer, chat template): the engines load the weights
from the URI themselves, and the driver hashes them as it streams them from the store, writing nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from star1.config import BUILTIN_SMOLLM2, ModelConfig
from star1.llm.local_server import cache_root
from star1.store import Store, file_sha256, is_model_metadata, mirror_to_local

TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "vocab.json",
    "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json",
)  # fmt: skip
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


class ModelSourceError(RuntimeError):
    """A model path that cannot be resolved (names the path and what was expected)."""


@dataclass(frozen=True)
class ResolvedModel:
    local_dir: Path | None  # a folder on this machine (None: a hub id vLLM resolves itself)
    source: str  # what workers load: the local folder, the s3:// URI, or the hub id
    given: str  # the configured path
    remote: Store | None = None  # the weights, left in this store (ray backend: the engines load them)


def _download(store: Store, dest: Path, weights: bool = True) -> Path:
    """The model folder in `store`, copied into `dest` (all of it, or only its small files). Resumable:
    files already in `dest.partial` from an interrupted copy are kept. Each copied file's sha256, computed
    as it streamed, is remembered, so `model_hashes` does not read the weights again."""
    if (dest / ".complete").exists():
        return dest
    files = store.list("")
    if not any(f.endswith("config.json") for f in files):
        raise ModelSourceError(f"{store.uri} holds no config.json: not a Hugging Face model folder")
    digests = mirror_to_local(store, dest, include=None if weights else is_model_metadata)
    for rel, digest in digests.items():
        _remember(_local_memo(dest / rel), digest)
    return dest


def resolve_model(cfg: ModelConfig, store: Store | None = None) -> ResolvedModel:
    path = cfg.path
    if path == BUILTIN_SMOLLM2:
        from star1.llm.local_server import convert_gguf

        d = convert_gguf()
        return ResolvedModel(d, str(d), path)
    if path.startswith("store:"):
        if store is None:
            raise ModelSourceError(f"model path {path}: no store to read it from")
        rel = path.removeprefix("store:").strip("/")
        if not store.exists(f"{rel}/config.json"):
            raise ModelSourceError(f"model path {path}: {store.url(rel)} has no config.json")
        sub = store.child(rel)
        if sub.is_local:
            return ResolvedModel(Path(sub.root), sub.root, path)
        path = sub.uri
    if path.startswith("s3://"):
        key = hashlib.sha256(path.encode()).hexdigest()[:16]
        full = cache_root() / "models" / f"s3-{key}"
        remote = sub if cfg.path.startswith("store:") else Store.from_uri(path)  # the store's S3 settings
        if cfg.backend == "ray" and not (full / ".complete").exists():
            d = _download(remote, full.with_name(full.name + "-meta"), weights=False)
            return ResolvedModel(d, path, cfg.path, remote)
        return ResolvedModel(_download(remote, full), path, cfg.path)
    local = Path(path).expanduser()
    if local.is_dir():
        if not (local / "config.json").exists():
            raise ModelSourceError(f"model folder {local} has no config.json")
        return ResolvedModel(local.resolve(), str(local.resolve()), cfg.path)
    if path.startswith(("/", "./", "~")):
        raise ModelSourceError(f"model folder {path} does not exist")
    return ResolvedModel(None, path, cfg.path)  # a hub id


def _local_memo(path: Path) -> Path:
    st = path.stat()
    return _memo(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}")


def _memo(key: str) -> Path:
    return cache_root() / "hashes" / f"{hashlib.sha256(key.encode()).hexdigest()}.txt"


def _remember(memo: Path, digest: str) -> None:
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(digest)
    tmp.replace(memo)


def _file_sha256(path: Path) -> str:
    memo = _local_memo(path)
    if memo.exists():
        return memo.read_text().strip()
    digest = file_sha256(path)
    _remember(memo, digest)
    return digest


def _listing_hash(listing: dict[str, str]) -> str | None:
    return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest() if listing else None


def _tree_hash(files: list[Path], root: Path) -> str | None:
    return _listing_hash({str(f.relative_to(root)): _file_sha256(f) for f in sorted(files)})


def _remote_weights_hash(store: Store) -> str | None:
    """The weights' tree hash as if they were on disk (the same value), streamed from the store; each
    object's sha256 is remembered per (URL, size, mtime)."""
    listing: dict[str, str] = {}
    for rel, size, mtime_ns in store.stat_files():
        if not rel.endswith(_WEIGHT_SUFFIXES):
            continue
        memo = _memo(f"{store.url(rel)}|{size}|{mtime_ns}")
        if memo.exists():
            listing[rel] = memo.read_text().strip()
        else:
            listing[rel] = store.sha256(rel)
            _remember(memo, listing[rel])
    return _listing_hash(listing)


def model_hashes(model: ResolvedModel, chat_template: str | None) -> dict[str, Any]:
    """Weights, config, tokenizer and chat-template hashes (None where the model is only a hub id)."""
    out: dict[str, Any] = {
        "model_hash": None,
        "config_hash": None,
        "tokenizer_hash": None,
        "chat_template_hash": hashlib.sha256(chat_template.encode()).hexdigest() if chat_template else None,
    }
    d = model.local_dir
    if d is None:
        return out
    files = [p for p in d.rglob("*") if p.is_file() and not p.name.startswith(".")]
    if model.remote is not None:
        out["model_hash"] = _remote_weights_hash(model.remote)
    else:
        out["model_hash"] = _tree_hash([p for p in files if p.name.endswith(_WEIGHT_SUFFIXES)], d)
    out["config_hash"] = _tree_hash(
        [p for p in files if p.name in ("config.json", "generation_config.json")], d
    )
    out["tokenizer_hash"] = _tree_hash([p for p in files if p.name in TOKENIZER_FILES], d)
    return out
