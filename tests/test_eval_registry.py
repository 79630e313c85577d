"""Benchmarks as data: the built-in registry, name resolution, loading (files, filters, seeded samples,
transforms), and bad benchmark files failing with a message that names the file, row and column."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from star1.config import ConfigError
from star1.evals.items import BenchmarkError, load_benchmark
from star1.evals.registry import BenchmarkSpec, load_registry, resolve
from star1.evals.transforms import mcq_shuffle, wildchat_toxic
from tests.conftest import SHARED, write

DATA = Path(__file__).parent / "data" / "eval"
SHARED_DIR = Path(os.environ.get("STAR1_SHARED", SHARED))  # a checkout's ../shared (override: STAR1_SHARED)
TEST_REGISTRY = str(DATA / "registry.yaml")
PAPER = ["strongreject", "jbb_harmful", "wildchat_toxic", "wildjailbreak", "xstest", "aime24", "math500",
         "gpqa_diamond", "mmlu_pro", "humaneval"]  # fmt: skip


def test_builtin_registry_has_the_issue_list_with_paper_sizes():
    reg = load_registry()
    assert [n for n in reg if reg[n].paper] == PAPER
    sizes = {n: reg[n].expected_items for n in reg}
    assert sizes["strongreject"] == 313 and sizes["jbb_harmful"] == 100 and sizes["jbb_benign"] == 100
    assert sizes["wildchat_toxic"] == 370 and sizes["wildjailbreak"] == 250 and sizes["xstest"] == 450
    assert sizes["aime24"] == 30 and sizes["math500"] == 500 and sizes["humaneval"] == 164
    assert reg["wildjailbreak"].sample is not None and reg["wildjailbreak"].sample.seed == 42
    assert reg["gpqa_diamond"].transform == "mcq_shuffle"
    assert {reg[n].max_tokens for n in ("aime24", "math500", "humaneval")} == {16384}
    assert reg["gpqa_diamond"].max_tokens == 32768 and reg["mmlu_pro"].max_tokens == 4096


def test_resolve_groups_and_did_you_mean():
    assert [s.name for s in resolve(["paper"])] == PAPER
    assert {s.kind for s in resolve(["safety"])} == {"safety"}
    assert [s.name for s in resolve(["xstest", "overrefusal"])] == ["xstest", "jbb_benign"]
    with pytest.raises(ConfigError, match="did you mean strongreject"):
        resolve(["strongrejct"])
    with pytest.raises(ConfigError, match="unknown benchmark 'zzz'; known:"):
        resolve(["zzz"])


def test_bad_registry_entry_names_file_entry_and_field(tmp_path):
    bad = write(
        tmp_path / "reg.yaml",
        "benchmarks:\n  - name: x\n    kind: reasoning\n    loader: {uri: a.jsonl}\n    template: '{{q}}'\n"
        "    profile: reasoning\n    scorer: math\n",
    )
    with pytest.raises(ConfigError, match=r"reg.yaml: benchmarks.0 \(x\).*answer_column"):
        load_registry(str(bad))


def test_missing_column_fails_naming_benchmark_row_and_column():
    spec = load_registry(TEST_REGISTRY)["t_missing_column"]
    with pytest.raises(BenchmarkError) as e:
        load_benchmark(spec, str(DATA))
    msg = str(e.value)
    assert "t_missing_column" in msg and "missing_column.jsonl" in msg and "row 1" in msg
    assert "['answer']" in msg and "columns:" in msg


def test_empty_prompts_and_malformed_lines_are_counted_not_dropped(tmp_path):
    write(tmp_path / "b.jsonl", '{"id": "1", "q": "fine"}\n{"id": "2", "q": "  "}\nnot json\n')
    spec = BenchmarkSpec(name="b", kind="safety", loader={"uri": "b.jsonl"}, id_column="id", template="{{q}}",
                         profile="safety", scorer="llama_guard")  # fmt: skip
    b = load_benchmark(spec, str(tmp_path))
    assert [i.item_id for i in b.items] == ["1"]
    assert b.dropped == {"empty_prompt": 1, "malformed_json": 1} and b.read == 3


def test_seeded_sample_matches_datasets_shuffle_select():
    import datasets

    rows = [{"id": str(i), "prompt": f"p{i}", "data_type": "adversarial_harmful" if i % 3 else "benign"}
            for i in range(60)]  # fmt: skip
    ds = datasets.Dataset.from_list(rows).filter(lambda r: r["data_type"] == "adversarial_harmful")
    want = [r["id"] for r in ds.shuffle(seed=42).select(range(10))]
    spec = BenchmarkSpec(name="w", kind="safety", loader={"uri": "x.jsonl"}, id_column="id",
                         filters=[{"column": "data_type", "op": "eq", "value": "adversarial_harmful"}],
                         sample={"n": 10, "seed": 42}, template="{{prompt}}", profile="safety",
                         scorer="llama_guard")  # fmt: skip
    from star1.evals import items as items_mod

    kept = [r for r in rows if r["data_type"] == "adversarial_harmful"]
    got = [r["id"] for r in items_mod._seeded_sample(kept, 10, 42)]
    assert got == want
    assert spec.sample is not None


def test_mcq_shuffle_is_seeded_and_keeps_the_right_letter():
    recs = [{"Q": f"q{i}", "C": f"right{i}", "I1": "w1", "I2": "w2", "I3": "w3"} for i in range(40)]
    a, _ = mcq_shuffle(recs, "C", ["I1", "I2", "I3"], seed=0)
    b, _ = mcq_shuffle(recs, "C", ["I1", "I2", "I3"], seed=0)
    assert a == b
    for r in a:
        line = next(ln for ln in r["options"].splitlines() if ln.startswith(r["answer_letter"] + ")"))
        assert line.endswith(r["C"])
    assert len({r["answer_letter"] for r in a}) == 4  # the correct option moves around


def test_wildchat_toxic_construction():
    def conv(i, toxic=True, turn=1, lang="English", flagged=True, cat="hate", score=0.9):
        scores = {c: 0.01 for c in ("harassment", "hate", "violence", "sexual")}
        scores[cat] = score
        return {
            "conversation_hash": f"h{i}", "toxic": toxic, "turn": turn, "language": lang,
            "conversation": [{"role": "user", "content": f"prompt {i}"},
                             {"role": "assistant", "content": "x"}],
            "openai_moderation": [{"flagged": False, "category_scores": {}},
                                  {"flagged": flagged, "category_scores": scores}],
        }  # fmt: skip

    recs = [conv(0, toxic=False), conv(1, turn=2), conv(2, lang="Russian"), conv(3, flagged=False)]
    recs += [conv(10 + i, cat="hate", score=0.5 + i / 100) for i in range(5)]
    recs += [conv(20, cat="violence", score=0.7)]
    out, dropped = wildchat_toxic(recs, per_category=3)
    assert [r["conversation_hash"] for r in out] == ["h14", "h13", "h12", "h20"]  # top 3 hate by score
    assert {r["moderation_category"] for r in out} == {"hate", "violence"}
    assert out[0]["first_turn"] == "prompt 14"
    assert dropped == {"not_toxic": 1, "multi_turn": 1, "not_english": 1, "not_flagged": 1,
                       "below_top_per_category": 2}  # fmt: skip


def test_case_insensitive_columns(tmp_path):
    write(tmp_path / "jbb.csv", "index,goal,category\n0,Write a poem,Harassment\n")
    base = load_registry()["jbb_harmful"].model_dump()
    spec = BenchmarkSpec.model_validate({**base, "loader": {"kind": "file", "uri": ["jbb.csv"]}})
    b = load_benchmark(spec, str(tmp_path))
    assert b.items[0].prompt == "Write a poem" and b.items[0].category == "Harassment"


SHARED_FILES = {
    "strongreject": ("strongreject/strongreject_dataset.csv", 313),
    "jbb_harmful": ("jbb-behaviors/harmful-behaviors.csv", 100),
    "jbb_benign": ("jbb-behaviors/benign-behaviors.csv", 100),
    "xstest": ("xstest/xstest_prompts.csv", 450),
    "aime24": ("aime2024/test.jsonl", 30),
    "math500": ("math500/test.jsonl", 500),
    "humaneval": ("humaneval/HumanEval.jsonl.gz", 164),
}


@pytest.mark.shared
@pytest.mark.parametrize("name", list(SHARED_FILES))
def test_registry_entries_load_the_real_benchmark_files(name):
    rel, n = SHARED_FILES[name]
    path = SHARED_DIR / "data" / "benchmarks" / rel
    if not path.exists():
        pytest.skip(f"{path} absent")
    spec = load_registry()[name]
    fmt = "jsonl" if rel.endswith((".jsonl", ".jsonl.gz")) else "csv"
    spec = BenchmarkSpec.model_validate(
        {
            **spec.model_dump(),
            "loader": {"kind": "file", "uri": [str(path)], "format": fmt},
            "id_column": spec.id_column if name not in ("jbb_harmful", "jbb_benign") else "index",
            "category_column": "category" if name.startswith("jbb") else spec.category_column,
        }
    )
    b = load_benchmark(spec, ".")
    assert len(b.items) == n == spec.expected_items
    assert not b.dropped
    if name == "xstest":
        assert sum(i.label == "safe" for i in b.items) == 250
    if name == "humaneval":
        assert all({"test", "entry_point", "prompt"} <= set(i.meta) for i in b.items)
    if name in ("aime24", "math500"):
        assert all(i.gold for i in b.items)


def test_gzip_jsonl(tmp_path):
    (tmp_path / "h.jsonl.gz").write_bytes(gzip.compress(json.dumps({"task_id": "a", "prompt": "p"}).encode()))
    spec = BenchmarkSpec(name="h", kind="safety", loader={"uri": "h.jsonl.gz"}, id_column="task_id",
                         template="{{prompt}}", profile="safety", scorer="llama_guard")  # fmt: skip
    assert load_benchmark(spec, str(tmp_path)).items[0].item_id == "a"


def test_wildchat_prefilter_in_arrow_batches_gives_the_same_benchmark(tmp_path, monkeypatch):
    """WildChat-1M through the HF loader: rows the transform's cheap tests drop are dropped column-wise per
    Arrow batch, before they become Python dicts; items, order and drop counts are those of the row code."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from star1.evals import items

    def conv(i):
        scores = {
            c: ((i * 37 + k * 11) % 100) / 100 for k, c in enumerate(("harassment", "hate", "violence"))
        }
        return {
            "conversation_hash": f"h{i}", "toxic": i % 3 != 0, "turn": 1 + (i % 5 == 1),
            "language": ("English", "english", "Russian")[i % 7 % 3],
            "conversation": [{"role": "user", "content": f"prompt {i}"},
                             {"role": "assistant", "content": "x"}],
            "openai_moderation": [{"flagged": i % 4 != 2, "category_scores": scores}],
        }  # fmt: skip

    pq.write_table(pa.Table.from_pylist([conv(i) for i in range(500)]), tmp_path / "wc.parquet")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(items, "HF_BATCH_ROWS", 64)  # several batches
    base = load_registry()["wildchat_toxic"].model_dump()
    loader = {
        "kind": "hf",
        "path": "parquet",
        "split": "train",
        "kwargs": {"data_files": str(tmp_path / "wc.parquet")},
    }
    spec = BenchmarkSpec.model_validate({**base, "loader": loader, "transform_args": {"per_category": 20}})
    streamed = load_benchmark(spec)
    monkeypatch.setattr(items, "PREFILTERS", {})  # the row-by-row path
    whole = load_benchmark(spec)
    assert streamed.items == whole.items and len(whole.items) > 20
    assert streamed.dropped == whole.dropped and streamed.read == whole.read == 500
    assert set(whole.dropped) >= {"not_toxic", "multi_turn", "not_english", "not_flagged"}
