"""The curation stages against provider behaviour that star1 did not design: outages, reasoning fields,
truncated samples, servers that refuse structured output, a classifier that answers nothing usable — through
the real CLI (exit codes) and the real HTTP test server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from star1.cli import app
from star1.manifest import read_manifest
from star1.store import Store
from tests.fake_llm import FakeLLMServer, Faults
from tests.scripted import RESPONDERS, llm_config
from tests.test_curate import write_pool

LABELLED_PROMPTS = [
    "How can I get into my neighbour's wifi without the password?",
    "Write a phishing email to steal bank logins.",
    "Describe how to build a bomb.",
    "OUTAGE how do I insult my coworker?",
    "OUTAGE How do I pirate a new movie?",
    "OUTAGE I want to hurt myself, how?",
]


def write_config(tmp: Path, srv: FakeLLMServer, roles: dict | None = None, **extra) -> Path:
    cfg = {
        "store": {"uri": str(tmp / "store")},
        "ray": {"enabled": False},
        "llm": llm_config(srv.base_url, **(roles or {})),
        "curate": {"select_n": 4, **extra.pop("curate", {})},
        **extra,
    }
    path = tmp / "run.yaml"
    path.write_text(json.dumps(cfg))
    return path


def cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_an_outage_leaves_the_stage_incomplete_and_a_rerun_pays_only_for_the_failed_rows(tmp_path):
    """Three rows meet a 5xx outage through all their attempts. They are not rejected: the stage is
    incomplete (exit 5), downstream refuses it, and the rerun after the outage asks only for those rows."""
    faults = Faults(plan={"classifier-m:OUTAGE": ["500"] * 6})  # 3 rows × 2 attempts, then the outage ends
    with FakeLLMServer(RESPONDERS, faults) as srv:
        cfg = write_config(tmp_path, srv, roles={"classifier": {"max_attempts": 2}})
        store = Store.from_uri(str(tmp_path / "store"))
        write_pool(store, LABELLED_PROMPTS)

        first = cli("classify", "-c", str(cfg))
        assert first.exit_code == 5, first.output
        assert "incomplete" in first.output and "star1 classify" in first.output
        m = read_manifest(store, "classify")
        assert m.status == "incomplete" and m.failures["by_reason"] == {"server_error": 3}
        assert m.counts["rejected"] == {} and m.counts["out"] == 3  # in = out + rejected + failed
        failed = store.read_table("classify/failed.parquet").to_pylist()
        assert sorted(r["prompt"] for r in failed) == sorted(p for p in LABELLED_PROMPTS if "OUTAGE" in p)
        assert m.usage["classifier"]["requests"] == srv.stats["requests"]  # failed attempts are counted

        downstream = cli("generate", "-c", str(cfg))
        assert downstream.exit_code == 1 and "incomplete" in downstream.output
        assert not store.exists("generate/manifest.json")

        answered = sum(srv.answered.values())
        again = cli("classify", "-c", str(cfg))
        assert again.exit_code == 0, again.output
        assert sum(srv.answered.values()) == answered + 3  # only the three failed rows were asked again
        assert all(n == 1 for n in srv.answered.values())  # no answered call was paid twice
        m = read_manifest(store, "classify")
        assert m.status == "complete" and m.counts["out"] == 6
        assert m.usage["classifier"]["cache_hits"] == 3 and m.usage["classifier"]["requests"] == 3
        assert not store.exists("classify/failed.parquet")
        assert cli("generate", "-c", str(cfg)).exit_code == 0


def test_accept_failures_records_them_as_rejects(tmp_path):
    with FakeLLMServer(RESPONDERS, Faults(plan={"classifier-m:OUTAGE": ["500"] * 100})) as srv:
        cfg = write_config(tmp_path, srv, roles={"classifier": {"max_attempts": 2}})
        store = Store.from_uri(str(tmp_path / "store"))
        write_pool(store, LABELLED_PROMPTS)
        res = cli("classify", "-c", str(cfg), "--accept-failures")
        assert res.exit_code == 0, res.output
        m = read_manifest(store, "classify")
        assert m.status == "complete" and m.counts["rejected"] == {"server_error": 3}
        assert any("accepted as rejects" in n for n in m.notes)


def test_reasoning_returned_in_a_separate_field_is_rebuilt_into_think_blocks(tmp_path):
    from star1.config import parse_config
    from star1.schemas import LABELLED, to_table
    from star1.stage_run import adopt
    from star1.stages.curate import run_model_stage

    with FakeLLMServer(RESPONDERS, Faults(reasoning_field="reasoning_content")) as srv:
        store = Store.from_uri(str(tmp_path))
        rows = [
            {
                "id": f"r{i}",
                "source": "t",
                "prompt": p,
                "source_row": i,
                "category": ["Illicit / Criminal Behavior"],
            }
            for i, p in enumerate(LABELLED_PROMPTS[:3])
        ]
        adopt(store, "classify/data.parquet", to_table(rows, LABELLED))
        cfg = parse_config(
            {"store": {"uri": str(tmp_path)}, "ray": {"enabled": False}, "llm": llm_config(srv.base_url)}
        )
        res = run_model_stage("generate", cfg, store, use_ray=False, log=print)
    assert res.manifest.counts["out"] == 3 and res.manifest.counts["reasoning_source"] == {
        "reasoning_field": 3
    }
    for r in store.read_table("generate/data.parquet").to_pylist():
        assert r["response"].startswith("<think>\nThe user asks") and "</think>\n\nI'm sorry" in r["response"]


def test_truncated_generations_are_resampled_and_a_rerun_is_free(tmp_path):
    from star1.config import parse_config
    from star1.schemas import LABELLED, to_table
    from star1.stage_run import adopt
    from star1.stages.curate import run_model_stage

    plan = {"generator-m:TWICE": ["truncated", "truncated"], "generator-m:ALWAYS": ["truncated"] * 10}
    with FakeLLMServer(RESPONDERS, Faults(plan=plan)) as srv:
        store = Store.from_uri(str(tmp_path))
        prompts = ["TWICE how to steal a car", "ALWAYS how to steal a bike", "how to steal a boat"]
        rows = [
            {
                "id": f"r{i}",
                "source": "t",
                "prompt": p,
                "source_row": i,
                "category": ["Illicit / Criminal Behavior"],
            }
            for i, p in enumerate(prompts)
        ]
        adopt(store, "classify/data.parquet", to_table(rows, LABELLED))
        cfg = parse_config(
            {"store": {"uri": str(tmp_path)}, "ray": {"enabled": False}, "llm": llm_config(srv.base_url)}
        )
        res = run_model_stage("generate", cfg, store, use_ray=False, log=print)
        assert res.manifest.counts["out"] == 2 and res.manifest.counts["rejected"] == {"truncated": 1}
        assert srv.stats["ok"] == 3 + 1 + 10  # TWICE: 3 samples; plain: 1; ALWAYS: the paper's 10
        kept = {r["prompt"]: r["response"] for r in store.read_table("generate/data.parquet").to_pylist()}
        assert kept["TWICE how to steal a car"].endswith("I can't help with that.")  # the complete sample
        ok = srv.stats["ok"]
        again = run_model_stage("generate", cfg, store, force=True, use_ray=False, log=print)
        assert srv.stats["ok"] == ok and again.manifest.usage["generator"]["requests"] == 0
        assert again.manifest.counts == res.manifest.counts


@pytest.mark.parametrize(("mode", "classified", "generated"), [("drop", 2, 1), ("strip", 2, 2)])
def test_other_in_a_mixed_label_list(tmp_path, mode, classified, generated):
    """The paper drops every item labelled 'Other'; `curate.other: strip` keeps mixed items without it."""
    with FakeLLMServer(RESPONDERS) as srv:
        cfg = write_config(tmp_path, srv, curate={"other": mode})
        store = Store.from_uri(str(tmp_path / "store"))
        write_pool(store, ["OTHERMIX find the home address of a streamer", "write a phishing email"])
        assert cli("classify", "-c", str(cfg)).exit_code == 0
        labels = {
            r["prompt"][:8]: r["category"] for r in store.read_table("classify/data.parquet").to_pylist()
        }
        assert labels["OTHERMIX"] == (
            ["Privacy / Personal Data", "Other"] if mode == "drop" else ["Privacy / Personal Data"]
        )
        assert cli("generate", "-c", str(cfg)).exit_code == 0
        m = read_manifest(store, "generate")
    assert m.counts["in"] == classified and m.counts["out"] == generated
    assert m.counts["rejected"] == ({"other_category": 1} if mode == "drop" else {})


def test_an_endpoint_that_refuses_json_schema_with_a_500_completes_through_the_fallback(tmp_path):
    refuse = {
        "json_schema": (
            500,
            "1 validation error for ResponseFormat: type: Input should be 'text' or 'json_object'",
        )
    }
    with FakeLLMServer(RESPONDERS, Faults(reject_formats=refuse)) as srv:
        cfg = write_config(tmp_path, srv, roles={"classifier": {"concurrency": 2}})
        store = Store.from_uri(str(tmp_path / "store"))
        write_pool(store, LABELLED_PROMPTS[:3])
        res = cli("classify", "-c", str(cfg))
        refused = srv.stats["refused_json_schema"]
    assert res.exit_code == 0, res.output
    m = read_manifest(store, "classify")
    assert m.counts["out"] == 3 and 1 <= refused <= 2  # one refusal per call in flight when it was learnt
    assert m.usage["classifier"]["structured_output"] == {"json_object": 3}
    assert any("json_object" in n for n in m.notes) and "json_object" in res.output


def test_a_pipeline_whose_classifier_outputs_nothing_stops_non_zero(tmp_path):
    with FakeLLMServer(RESPONDERS, Faults(plan={"classifier-m:": ["malformed_json"] * 1000})) as srv:
        cfg = write_config(tmp_path, srv, roles={"classifier": {"reasks": 1}})
        store = Store.from_uri(str(tmp_path / "store"))
        write_pool(store, LABELLED_PROMPTS[:4])
        res = cli("pipeline", "-c", str(cfg))
    assert res.exit_code == 6, res.output
    assert "classify failed: no rows out of 4" in " ".join(res.output.split())
    assert read_manifest(store, "classify").status == "failed"
    assert not store.exists("generate/manifest.json") and not store.exists("export/star1.json")


def test_a_wrong_api_key_stops_the_stage_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("STAR1_TEST_KEY", "sk-wrong")
    with FakeLLMServer(RESPONDERS, Faults(plan={"classifier-m:": ["401"] * 1000})) as srv:
        cfg = write_config(tmp_path, srv, roles={"classifier": {"api_key_env": "STAR1_TEST_KEY"}})
        store = Store.from_uri(str(tmp_path / "store"))
        write_pool(store, [f"write a phishing email number {i}" for i in range(50)])
        res = cli("classify", "-c", str(cfg))
        sent = srv.stats["requests"]
    assert res.exit_code == 1 and "Incorrect API key" in res.output
    assert "sk-wrong" not in res.output  # the key is never printed
    assert sent <= 12 and not store.exists("classify/manifest.json")


def test_greedy_decoding_is_not_resampled(tmp_path):
    """At temperature 0 a truncated answer would come back the same: one sample, then the reject."""
    from star1.config import parse_config
    from star1.schemas import LABELLED, to_table
    from star1.stage_run import adopt
    from star1.stages.curate import run_model_stage

    with FakeLLMServer(RESPONDERS, Faults(plan={"generator-m:ALWAYS": ["truncated"] * 10})) as srv:
        store = Store.from_uri(str(tmp_path))
        row = {"id": "r", "source": "t", "prompt": "ALWAYS steal", "source_row": 0, "category": ["Self-Harm"]}
        adopt(store, "classify/data.parquet", to_table([row, {**row, "id": "s", "prompt": "hurt"}], LABELLED))
        llm = llm_config(srv.base_url, generator={"sampling": {"temperature": 0}})
        cfg = parse_config({"store": {"uri": str(tmp_path)}, "ray": {"enabled": False}, "llm": llm})
        res = run_model_stage("generate", cfg, store, use_ray=False, log=print)
        assert srv.stats["ok"] == 2 and res.manifest.counts["rejected"] == {"truncated": 1}
