"""Exit 2 means a bad config wherever it is found: on loading, or by a stage before it does any work (an
unconfigured role, an unknown source or benchmark, a training setup error inside `pipeline`). The job wrapper
tells these (never retried) from infrastructure failures (exit 7: the GPUs never came, a Ray node was lost;
retried in place) by the code alone."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from star1.cli import app
from tests.conftest import write

runner = CliRunner()


def _config(tmp_path, body: str):
    head = f"store: {{uri: {tmp_path / 'store'}}}\nray: {{enabled: false}}\n"
    return write(tmp_path / "run.yaml", head + body)


@pytest.mark.parametrize("command", ["classify", "pipeline"])
def test_unconfigured_role_exits_2_naming_it(tmp_path, command):
    cfg = _config(tmp_path, "llm: {}\n")
    r = runner.invoke(app, [command, "-c", str(cfg)])
    assert r.exit_code == 2, r.output
    assert "config error" in r.output and "llm.classifier is not configured" in r.output


@pytest.mark.parametrize("command", ["collect", "pipeline"])
def test_unknown_source_exits_2_naming_it(tmp_path, command):
    cfg = _config(tmp_path, "collect: {sources: [no_such_source]}\n")
    r = runner.invoke(app, [command, "-c", str(cfg)])
    assert r.exit_code == 2, r.output
    assert "collect.sources: unknown source 'no_such_source'" in r.output


def test_training_setup_error_inside_pipeline_exits_2(tmp_path, monkeypatch):
    """The data stages before `train` stand in (they need model servers); `train` is the real one."""
    import star1.stages.runner as runner_mod

    def run_stage(name, *args, **kwargs):
        assert name != "train", "the data-stage runner never runs training"
        return SimpleNamespace(name=name)

    monkeypatch.setattr(runner_mod, "run_stage", run_stage)
    missing = tmp_path / "no-such-model"
    cfg = _config(tmp_path, f"train: {{model: {missing}, data: [export/star1.parquet]}}\n")
    r = runner.invoke(app, ["pipeline", "-c", str(cfg)])
    assert r.exit_code == 2, r.output
    assert f"train.model {missing}: no such folder" in r.output


def test_training_failure_inside_pipeline_still_exits_1(tmp_path, monkeypatch):
    import star1.pipeline as pipeline
    import star1.stages.runner as runner_mod
    from star1.train.errors import TrainFailed

    def run_train(*args, **kwargs):
        raise TrainFailed("worker lost")

    monkeypatch.setattr(runner_mod, "run_stage", lambda name, *a, **k: SimpleNamespace(name=name))
    monkeypatch.setattr(pipeline, "run_train", run_train)
    cfg = _config(tmp_path, "train: {model: local, data: [export/star1.parquet]}\n")
    r = runner.invoke(app, ["pipeline", "-c", str(cfg)])
    assert r.exit_code == 1 and "worker lost" in r.output


def test_eval_without_a_model_exits_2_naming_the_field(tmp_path):
    r = runner.invoke(app, ["eval", "-c", str(_config(tmp_path, ""))])
    assert r.exit_code == 2, r.output
    assert "eval.model is not set" in r.output


def test_eval_unknown_benchmark_exits_2_naming_it(tmp_path):
    cfg = _config(tmp_path, f"eval: {{model: {{path: {tmp_path / 'model'}}}}}\n")
    r = runner.invoke(app, ["eval", "-c", str(cfg), "-b", "strongrejekt"])
    assert r.exit_code == 2, r.output
    assert "eval.benchmarks: unknown benchmark 'strongrejekt'" in r.output


def test_benchmarks_without_config_lists_the_builtin_registry():
    r = runner.invoke(app, ["benchmarks"])
    assert r.exit_code == 0, r.output
    assert "built-in registry (star1/evals/benchmarks.yaml)" in r.output
    for name in ("strongreject", "jbb_harmful", "wildchat_toxic", "wildjailbreak", "xstest", "aime24",
                 "math500", "gpqa_diamond", "mmlu_pro", "humaneval"):  # fmt: skip
        assert name in r.output  # whole names, not cut to the terminal's width
    assert "demo_safety" not in r.output


def test_benchmarks_with_config_lists_its_registry():
    from star1.cli.common import DEMO_CONFIG

    r = runner.invoke(app, ["benchmarks", "-c", str(DEMO_CONFIG)])
    assert r.exit_code == 0, r.output
    assert "eval_benchmarks.yaml" in r.output and "demo_safety" in r.output and "strongreject" not in r.output


def test_benchmarks_missing_registry_exits_2(tmp_path):
    r = runner.invoke(app, ["benchmarks", "--set", f"eval.registry={tmp_path / 'nope.yaml'}"])
    assert r.exit_code == 2 and "eval.registry" in r.output


def test_gpus_that_never_come_exit_7_from_eval_and_train(tmp_path, monkeypatch):
    import star1.evals.run as eval_run
    import star1.train.run as train_run
    from star1.ray_utils import ResourceWaitTimeout

    def no_gpus(*args, **kwargs):
        raise ResourceWaitTimeout("eval engines: no capacity for 8 GPU after 600 s")

    monkeypatch.setattr(eval_run, "run_eval", no_gpus)
    monkeypatch.setattr(train_run, "run_train", no_gpus)
    cfg = _config(tmp_path, f"eval: {{model: {{path: {tmp_path / 'model'}}}}}\ntrain: {{model: local}}\n")
    for command in ("eval", "train"):
        r = runner.invoke(app, [command, "-c", str(cfg)])
        assert r.exit_code == 7, r.output
        assert "infrastructure failure" in r.output and "no capacity for 8 GPU" in r.output
