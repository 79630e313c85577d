"""The Hugging Face loader path, offline: `datasets.load_dataset` with a local packaged builder."""

from __future__ import annotations

from star1.config import SourceSpec
from star1.sources.load import load_source
from tests.conftest import write


def test_hf_loader_concatenates_splits_and_filters(tmp_path):
    a = write(tmp_path / "a.csv", "prompt,is_safe\nfirst,False\nsafe one,True\n")
    b = write(tmp_path / "b.csv", "prompt,is_safe\nsecond,False\n")
    spec = SourceSpec.model_validate(
        {
            "name": "hfsrc",
            "loader": {
                "kind": "hf",
                "path": "csv",
                "split": ["one", "two"],
                "kwargs": {"data_files": {"one": str(a), "two": str(b)}},
            },
            "prompt_column": "prompt",
            "filters": [{"column": "is_safe", "op": "eq", "value": False}],
        }
    )
    out = load_source(spec)
    assert [(r["prompt"], r["source_row"]) for r in out.rows] == [("first", 1), ("second", 3)]
    assert out.read == 3 and out.rejects[0]["rule"] == "filtered"
    assert [i["uri"] for i in out.inputs] == ["hf://csv/:one", "hf://csv/:two"]
