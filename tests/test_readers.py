from __future__ import annotations

import json

import pytest

from star1.config import SourceSpec
from star1.sources.load import load_source, normalize_prompt, prompt_id
from star1.sources.readers import SourceError
from tests.conftest import write


def spec(**kw) -> SourceSpec:
    return SourceSpec.model_validate({"name": "s", **kw})


def test_csv_filters_meta_and_rejects(tmp_path):
    f = write(
        tmp_path / "a.csv",
        'Prompt,lang,n\n"Hi, there friend",en,1\n,en,2\nBonjour,fr,3\nx,en\n'
        + "Way too long " * 10
        + ",en,5\n",
    )
    out = load_source(
        spec(
            loader={"uri": str(f)},
            prompt_column="prompt",
            filters=[{"column": "lang", "op": "eq", "value": "en"}],
        ),
        max_chars=50,
    )
    assert [r["prompt"] for r in out.rows] == ["Hi, there friend"]
    assert json.loads(out.rows[0]["source_meta"]) == {"lang": "en", "n": "1"}
    assert {(r["source_row"], r["rule"]) for r in out.rejects} == {
        (2, "empty_prompt"),
        (3, "filtered"),
        (4, "malformed_row"),
        (5, "too_long"),
    }
    assert out.read == 5


def test_jsonl_bad_line_is_a_reject_not_a_skip(tmp_path):
    f = write(tmp_path / "a.jsonl", '{"text": "one"}\n{"text": "two"\n\n{"text": ["list"]}\n{"text": null}\n')
    out = load_source(spec(loader={"uri": str(f)}, prompt_column="text"))
    assert [r["prompt"] for r in out.rows] == ["one"]
    rej = {r["source_row"]: r for r in out.rejects}
    assert rej[2]["rule"] == "malformed_json" and "line 2" in rej[2]["detail"]
    assert rej[4]["rule"] == "non_text_prompt" and rej[5]["rule"] == "empty_prompt"
    assert out.read == len(out.rows) + len(out.rejects) == 4


def test_txt_json_list_and_json_key(tmp_path):
    txt = write(tmp_path / "a.txt", "first\n\nsecond\n\n")
    out = load_source(spec(loader={"uri": str(txt)}))
    assert [r["prompt"] for r in out.rows] == ["first", "second"] and out.rejects[0]["rule"] == "empty_prompt"
    lst = write(tmp_path / "b.json", json.dumps(["p1", "p2", 3]))
    out = load_source(spec(loader={"uri": str(lst)}))
    assert [r["prompt"] for r in out.rows] == ["p1", "p2"] and out.rejects[0]["rule"] == "non_text_prompt"
    obj = write(tmp_path / "c.json", json.dumps({"instructions": ["q1"], "inputs": []}))
    assert load_source(spec(loader={"uri": str(obj), "json_key": "instructions"})).rows[0]["prompt"] == "q1"
    with pytest.raises(SourceError, match=r"set loader\.json_key"):
        load_source(spec(loader={"uri": str(obj)}))


def test_tsv_multiple_files_and_strip(tmp_path):
    a = write(tmp_path / "a.tsv", 'vanilla\tx\n"### Instruction:\nHow?\n### Response:"\t1\n')
    b = write(tmp_path / "b.tsv", "vanilla\tx\nWhy?\t2\n")
    out = load_source(
        spec(
            loader={"uri": [str(a), str(b)]},
            prompt_column="vanilla",
            strip=["### Instruction:", "### Response:"],
        )
    )
    assert [(r["prompt"], r["source_row"]) for r in out.rows] == [("How?", 1), ("Why?", 2)]
    assert len(out.inputs) == 2 and all(len(i["sha256"]) == 64 for i in out.inputs)


def test_invalid_utf8_row_is_rejected_and_reported(tmp_path):
    f = write(tmp_path / "a.csv", b"prompt\nfine\nbad \xff\xfe bytes\n")
    out = load_source(spec(loader={"uri": str(f)}, prompt_column="prompt"))
    assert [r["prompt"] for r in out.rows] == ["fine"]
    assert out.rejects[0]["rule"] == "invalid_encoding" and "\ufffd" in out.rejects[0]["prompt"]


@pytest.mark.parametrize(
    ("name", "content", "column", "message"),
    [
        ("q.csv", 'prompt\n"unterminated\n', "prompt", r"q\.csv.*line \d+: malformed CSV"),
        ("m.csv", "question\nhi\n", "prompt", r"m\.csv.*no column 'prompt'.*\['question'\]"),
        ("j.json", '{"a": [1,', "prompt", r"j\.json.*invalid JSON at line 1"),
        ("u.bin", "x", "prompt", r"u\.bin.*cannot tell the file format"),
    ],
)
def test_unreadable_files_fail_loudly_naming_file_and_line(tmp_path, name, content, column, message):
    f = write(tmp_path / name, content)
    with pytest.raises(SourceError, match=message):
        load_source(spec(loader={"uri": str(f)}, prompt_column=column))


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(SourceError, match="cannot read"):
        load_source(spec(loader={"uri": str(tmp_path / "nope.csv")}, prompt_column="p"))


def test_case_insensitive_column_and_bool_filters(tmp_path):
    f = write(tmp_path / "a.csv", "Goal,is_safe\nA,False\nB,True\n")
    out = load_source(
        spec(
            loader={"uri": str(f)},
            prompt_column="goal",
            filters=[{"column": "is_safe", "op": "eq", "value": False}],
        )
    )
    assert [r["prompt"] for r in out.rows] == ["A"]


def test_ids_are_stable_and_normalised():
    assert prompt_id("s", "Hello   World") == prompt_id("s", " hello world ")
    assert prompt_id("s", "x") != prompt_id("t", "x")
    assert normalize_prompt("Ｈｅｌｌｏ\tWORLD") == "hello world"


def test_seeded_sample_rejects_the_rest(tmp_path):
    f = write(tmp_path / "a.txt", "\n".join(f"p{i}" for i in range(10)))
    a = load_source(spec(loader={"uri": str(f)}, sample={"n": 3, "seed": 1}))
    b = load_source(spec(loader={"uri": str(f)}, sample={"n": 3, "seed": 1}))
    assert [r["prompt"] for r in a.rows] == [r["prompt"] for r in b.rows] and len(a.rows) == 3
    assert sum(r["rule"] == "not_sampled" for r in a.rejects) == 7


def test_http_source(tmp_path):
    import http.server
    import threading
    from functools import partial

    write(tmp_path / "w.txt", "from the web\n")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        out = load_source(spec(loader={"uri": f"http://127.0.0.1:{srv.server_port}/w.txt"}))
    finally:
        srv.shutdown()
    assert out.rows[0]["prompt"] == "from the web"


SEPARATORS = ["\u2028", "\u2029", "\u0085", "\x0c"]  # str.splitlines() breaks at every one of these


def test_jsonl_and_txt_split_records_only_at_newlines(tmp_path):
    prompts = [f"first part{sep}second part" for sep in SEPARATORS]
    lines = [json.dumps({"text": p}, ensure_ascii=False) for p in prompts[:3]]  # raw U+2028/2029/0085
    lines += ['{"text": "raw form feed \x0c is not valid JSON"}', json.dumps({"text": "last"})]
    f = write(tmp_path / "a.jsonl", "\r\n".join(lines) + "\r\n")
    out = load_source(spec(loader={"uri": str(f)}, prompt_column="text"))
    assert [(r["source_row"], r["prompt"]) for r in out.rows] == [
        (1, prompts[0]),
        (2, prompts[1]),
        (3, prompts[2]),
        (5, "last"),
    ]
    assert [(r["source_row"], r["rule"]) for r in out.rejects] == [(4, "malformed_json")]
    assert out.read == 5

    txt = write(tmp_path / "b.txt", "\n".join([*prompts, "tail"]) + "\n")
    out = load_source(spec(loader={"uri": str(txt)}))
    assert [(r["source_row"], r["prompt"]) for r in out.rows] == [
        *enumerate(prompts, start=1),
        (5, "tail"),
    ]
    assert out.read == 5 and not out.rejects
