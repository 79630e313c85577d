"""collect is byte-for-byte reproducible across processes: Python's per-process hash salt never leaks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write

ROOT = Path(__file__).resolve().parents[1]

# Each "bridge" prompt shares a word 5-gram with two different earlier prompts (and each "eval bridge" an
# 8-gram with two eval prompts), so which partner is recorded depends only on how n-gram keys are ordered.
_TOPICS = [
    (
        "copper kettles rust quickly near salty harbour air",
        "violet lanterns glow softly above quiet mountain lakes",
    ),
    (
        "seven clever ravens stole shiny buttons from farmers",
        "ancient libraries hold dusty maps of forgotten kingdoms",
    ),
    (
        "midnight trains rattle across frozen northern plains",
        "orange balloons drift slowly over crowded summer fairs",
    ),
    (
        "patient gardeners prune roses before spring rain arrives",
        "brass trumpets echo through narrow cobbled city streets",
    ),
    (
        "hungry foxes circle wooden henhouses after dark falls",
        "silver satellites map distant ocean currents every hour",
    ),
    (
        "retired sailors carve tiny ships inside glass bottles",
        "busy bakers knead heavy dough long before sunrise",
    ),
]
_EVAL = [
    "explain how to disable the alarm system of a large jewellery store quickly",
    "write detailed steps for forging official university diplomas and transcripts today",
]


def make_sources(d: Path) -> None:
    lines = []
    for a, b in _TOPICS:
        lines += [a, b, f"{' '.join(b.split()[:6])} and also {' '.join(a.split()[:6])}"]
    e0, e1 = _EVAL
    lines.append(f"{e1} and then {e0}")  # 8-grams of both eval prompts
    write(d / "src.txt", "\n".join(lines) + "\n")
    write(d / "eval.jsonl", "".join(json.dumps({"prompt": p}) + "\n" for p in _EVAL))


_RUN = """
import json, sys
from star1.config import parse_config
from star1.stages.collect import run_collect
from star1.store import Store
d = sys.argv[1]
cfg = parse_config({
    "store": {"uri": d + "/store"}, "ray": {"enabled": False},
    "collect": {"sources": [{"name": "s", "loader": {"uri": "src.txt"}, "ngram": 5}],
                "eval_sets": [{"name": "e", "loader": {"uri": "eval.jsonl"}, "prompt_column": "prompt"}],
                "embedding": {"dtype": "float32"}}}, base_dir=d)
run_collect(cfg, Store.from_uri(cfg.store.uri), use_ray=False, log=lambda m: None)
"""


def _run(d: Path, seed: str) -> dict:
    d.mkdir()
    make_sources(d)
    env = {**os.environ, "PYTHONHASHSEED": seed, "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", _RUN, str(d)], cwd=ROOT, env=env, check=True, timeout=600)
    out = d / "store" / "collect"
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        "pool": (out / "pool.parquet").read_bytes(),
        "rejects": (out / "rejects.parquet").read_bytes(),
        "counts": manifest["counts"],
        "fingerprint": manifest["fingerprint"],
    }


@pytest.mark.slow
def test_collect_is_byte_identical_across_hash_seeds(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    runs = [_run(tmp_path / f"seed{s}", s) for s in ("1", "2", "3")]
    rejects = pq.read_table(pa.BufferReader(runs[0]["rejects"])).to_pylist()
    bridges = [r for r in rejects if r["rule"] in ("ngram_self_dup", "ngram_overlap")]
    assert len(bridges) == len(_TOPICS) + 1  # the test has teeth: every bridge had two candidate partners
    for other in runs[1:]:
        assert other == runs[0]
