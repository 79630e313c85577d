"""Where a model comes from, and the hashes that say exactly which model it was.

`path` forms: a local folder; `s3://bucket/prefix` (downloaded once into the local cache); `store:<rel>`, a
folder in this run's store such as a `star1 train` output; `builtin:smollm2` (the embedded default); else a
Hugging Face id (resolved by vLLM from the hub or its cache). Weight hashes are sha256 over every file,
cached per (path, size, mtime) so a 60 GB model is hashed once.
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
from star1.store import Store

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


def _download(store: Store, dest: Path) -> Path:
    if (dest / ".complete").exists():
        return dest
    files = store.list("")
    if not any(f.endswith("config.json") for f in files):
        raise ModelSourceError(f"{store.uri} holds no config.json: not a Hugging Face model folder")
    tmp = dest.with_name(dest.name + ".partial")
    for rel in files:
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(store.read_bytes(rel))
    (tmp / ".complete").write_text("ok")
    if dest.exists():
        import shutil

        shutil.rmtree(dest)
    tmp.rename(dest)
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
        d = _download(Store.from_uri(path), cache_root() / "models" / f"s3-{key}")
        return ResolvedModel(d, path, cfg.path)
    local = Path(path).expanduser()
    if local.is_dir():
        if not (local / "config.json").exists():
            raise ModelSourceError(f"model folder {local} has no config.json")
        return ResolvedModel(local.resolve(), str(local.resolve()), cfg.path)
    if path.startswith(("/", "./", "~")):
        raise ModelSourceError(f"model folder {path} does not exist")
    return ResolvedModel(None, path, cfg.path)  # a hub id


def _file_sha256(path: Path) -> str:
    st = path.stat()
    memo_key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    memo = cache_root() / "hashes" / f"{memo_key}.txt"
    if memo.exists():
        return memo.read_text().strip()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    digest = h.hexdigest()
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(digest)
    tmp.replace(memo)
    return digest


def _tree_hash(files: list[Path], root: Path) -> str | None:
    if not files:
        return None
    listing = {str(f.relative_to(root)): _file_sha256(f) for f in sorted(files)}
    return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()


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
    out["model_hash"] = _tree_hash([p for p in files if p.name.endswith(_WEIGHT_SUFFIXES)], d)
    out["config_hash"] = _tree_hash(
        [p for p in files if p.name in ("config.json", "generation_config.json")], d
    )
    out["tokenizer_hash"] = _tree_hash([p for p in files if p.name in TOKENIZER_FILES], d)
    return out
