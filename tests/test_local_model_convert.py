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
    """Two processes ask at once (parallel test workers, two jobs on one node): one converts, the other
    waits for it and uses its folder."""
    out = tmp_path / "model"
    env = {k: v for k, v in os.environ.items() if k != "DS_ACCELERATOR"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path; from star1.llm.local_server import convert_gguf; "
                "print('ready', convert_gguf(Path(sys.argv[1])), file=sys.stderr)",
                str(out),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "STAR1_CACHE": str(tmp_path / "cache"), "CUDA_VISIBLE_DEVICES": ""},
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-3000:] for _, e in outputs]
    lines = [(o + e).strip().splitlines() for o, e in outputs]
    assert all(ls[-1] == f"ready {out}" for ls in lines), lines
    converting = [ls[:-1] for ls in lines if len(ls) > 1]
    # one conversion, and nothing but star1's own line: no GGUF progress bar, no DeepSpeed warning
    assert len(converting) == 1 and len(converting[0]) == 1, lines
    assert converting[0][0].startswith("local model: converting"), lines
    config = json.loads((out / "config.json").read_text())
    assert config.get("torch_dtype", config.get("dtype")) == "bfloat16"
    assert "quantization_config" not in config
    assert (
        "{%" in json.loads((out / "tokenizer_config.json").read_text()).get("chat_template", "")
        or (out / "chat_template.jinja").exists()
    )
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
