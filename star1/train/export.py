"""The final model in Hugging Face format, into the store: safetensors weights (in `export_dtype`), config,
generation config, the tokenizer and the chat template the model was trained with (reasoning kept) — a folder
vLLM and transformers load as is."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import torch

from star1.store import Store

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def save_hf(
    module: Any,
    state_dict: dict[str, torch.Tensor],
    tokenizer: Any,
    chat_template: str,
    dtype: str,
    out: Path,
) -> list[str]:
    """Write the model folder locally; returns the file names."""
    target = DTYPES[dtype]
    sd = {k: v.detach().to("cpu", target) for k, v in state_dict.items()}
    module.config.use_cache = True
    module.save_pretrained(out, state_dict=sd, safe_serialization=True, max_shard_size="5GB")
    # save_pretrained records the dtype of the live (fp32 master) parameters; the weights are `dtype`
    config = json.loads((out / "config.json").read_text())
    config["dtype"] = dtype
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(out)
    return sorted(p.name for p in out.iterdir() if p.is_file())


def upload_dir(local: Path, store: Store, rel: str) -> None:
    """Replace the store folder `rel` with the local folder's files (streamed, multipart on S3)."""
    if store.exists(rel):
        store.delete(rel)
    dest = store.child(rel)
    if store.is_local:
        store.fs.create_dir(dest.root, recursive=True)
    pafs.copy_files(
        str(local), dest.root, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=store.fs
    )


def export_model(
    module: Any,
    state_dict: dict[str, torch.Tensor],
    tokenizer: Any,
    chat_template: str,
    dtype: str,
    store: Store,
    rel: str,
) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="star1-export-") as tmp:
        files = save_hf(module, state_dict, tokenizer, chat_template, dtype, Path(tmp))
        upload_dir(Path(tmp), store, rel)
    return files
