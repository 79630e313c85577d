"""The one-time GGUF → Hugging Face conversion of the local model: one terminal line, a usable folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from star1.llm.local_server import gguf_path


@pytest.fixture(autouse=True)
def _gguf():
    try:
        gguf_path()
    except RuntimeError as e:
        pytest.skip(str(e))


def test_conversion_prints_one_line_and_writes_a_bf16_folder_with_chat_template(tmp_path):
    out = tmp_path / "model"
    env = {k: v for k, v in os.environ.items() if k != "DS_ACCELERATOR"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from star1.llm.local_server import convert_gguf; "
            "convert_gguf(Path(sys.argv[1]))",
            str(out),
        ],
        capture_output=True,
        text=True,
        env={**env, "STAR1_CACHE": str(tmp_path / "cache"), "CUDA_VISIBLE_DEVICES": ""},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    # nothing but star1's own line: no GGUF progress bar, no DeepSpeed accelerator warning
    assert len(lines) == 1 and lines[0].startswith("local model: converting"), lines
    config = json.loads((out / "config.json").read_text())
    assert config.get("torch_dtype", config.get("dtype")) == "bfloat16"
    assert "quantization_config" not in config
    assert (
        "{%" in json.loads((out / "tokenizer_config.json").read_text()).get("chat_template", "")
        or (out / "chat_template.jinja").exists()
    )
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
