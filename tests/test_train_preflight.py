"""Bad input is refused on the driver with a clear message, before any worker starts: a missing model, data
without reasoning, an effective batch the workers cannot divide, a GPU preset on a CPU-only cluster, more
workers than the cluster holds. Nothing is written for a refused run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from star1.cli import app
from star1.config import parse_config, train_presets
from star1.store import Store
from star1.train.cluster import resolve_scaling
from star1.train.errors import TrainSetupError
from star1.train.run import run_train
from tests.conftest import write
from tests.train_helpers import RECORDS, smollm2_dir, tiny_llama

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny") / "model")


def _cfg(store: Path, **train) -> object:
    base = {"model": "x", "data": [str(RECORDS)], "recipe": {"effective_batch": 2}}
    return parse_config({"run_name": "t", "store": {"uri": str(store)}, "train": {**base, **train}})


def _nothing_written(store: Path) -> None:
    assert not (store / "train").exists(), sorted(p.name for p in (store / "train").rglob("*"))


def test_missing_model_exits_2_before_anything(tmp_path):
    cfg = write(
        tmp_path / "c.yaml",
        f"store: {{uri: {tmp_path / 's'}}}\ntrain:\n  model: {tmp_path / 'no-such-model'}\n"
        f"  data: [{RECORDS}]\n  recipe: {{effective_batch: 2}}\n",
    )
    r = runner.invoke(app, ["train", "--config", str(cfg)])
    assert r.exit_code == 2, r.output
    out = " ".join(r.output.split())  # rich wraps long lines
    assert "no-such-model: no such folder" in out
    _nothing_written(tmp_path / "s")


def test_data_without_think_is_refused(tmp_path, tiny):
    rows = [{"question": f"q{i}", "response": "an answer"} for i in range(4)]
    f = write(tmp_path / "plain.json", json.dumps(rows))
    with pytest.raises(
        TrainSetupError, match=r"plain\.json: 4 of 4 records unusable: record 0: field 'response'"
    ):
        run_train(_cfg(tmp_path / "s", model=str(tiny), data=[str(f)]), Store.from_uri(str(tmp_path / "s")))
    _nothing_written(tmp_path / "s")


def test_too_little_data_for_one_batch(tmp_path, tiny, ray_local):
    cfg = _cfg(tmp_path / "s", model=str(tiny), recipe={"effective_batch": 8}, scaling={"num_workers": 2})
    with pytest.raises(TrainSetupError, match="4 training samples are fewer than one effective batch"):
        run_train(cfg, Store.from_uri(str(tmp_path / "s")))
    _nothing_written(tmp_path / "s")


def test_indivisible_effective_batch_exits_2(tmp_path):
    cfg = write(tmp_path / "c.yaml", "train:\n  model: m\n  scaling: {num_workers: 3}\n")
    r = runner.invoke(app, ["train", "--config", str(cfg), "--set", f"store.uri={tmp_path}"])
    assert r.exit_code == 2
    assert "effective batch 128 cannot be divided among 3 workers × 1 per device" in " ".join(
        r.output.split()
    )


def test_gpu_preset_on_cpu_cluster_is_refused(tmp_path, tiny, ray_local):
    assert ray_local.cluster_resources().get("GPU", 0) == 0
    cfg = _cfg(tmp_path / "s", model=str(tiny), preset="r1-distill-1.5b", recipe={"effective_batch": 8})
    assert cfg.train.scaling.use_gpu and cfg.train.strategy == "zero3"  # the preset applied
    with pytest.raises(
        TrainSetupError, match=r"asks for GPUs \(preset r1-distill-1.5b\) but the Ray cluster"
    ):
        run_train(cfg, Store.from_uri(str(tmp_path / "s")))
    _nothing_written(tmp_path / "s")


def test_more_workers_than_the_cluster_holds(tmp_path, tiny, ray_local):
    cfg = _cfg(tmp_path / "s", model=str(tiny), recipe={"effective_batch": 4}, scaling={"num_workers": 4})
    with pytest.raises(TrainSetupError, match=r"4 workers need \{'CPU': 4.0\} but the Ray cluster has"):
        run_train(cfg, Store.from_uri(str(tmp_path / "s")))


def test_auto_workers_divide_the_effective_batch():
    cfg = parse_config(
        {"train": {"model": "m", "scaling": {"num_workers": "auto"}, "recipe": {"effective_batch": 12}}}
    )
    workers, per, notes = resolve_scaling(cfg.train, {"CPU": 8.0})
    assert (workers, per) == (6, {"CPU": 1.0}) and "auto: 6" in notes[0]  # 8 and 7 do not divide 12
    gpu = parse_config(
        {"train": {"model": "m", "preset": "r1-distill-7b", "scaling": {"num_workers": "auto"}}}
    )
    workers, per, _ = resolve_scaling(gpu.train, {"CPU": 96.0, "GPU": 6.0})
    assert (workers, per["GPU"]) == (4, 1.0)  # 6 GPUs, but 128 divides among 4


def test_presets_are_consistent():
    for name, p in train_presets().items():
        cfg = parse_config({"train": {"model": "m", "preset": name}})
        t = cfg.train
        assert t.scaling.use_gpu and t.strategy in ("zero3", "zero3_offload"), name
        assert t.scaling.num_workers == p["gpus"] and t.recipe.effective_batch == 128, name
        # explicit values win over the preset
        own = parse_config({"train": {"model": "m", "preset": name, "scaling": {"num_workers": 4}}})
        assert own.train.scaling.num_workers == 4 and own.train.scaling.use_gpu


def test_reserved_run_name_and_unknown_preset():
    from star1.config import ConfigError

    with pytest.raises(ConfigError, match="reserved"):
        parse_config({"train": {"model": "m", "run_name": "checkpoints"}})
    with pytest.raises(ConfigError, match="unknown preset 'r1-distill-70b'"):
        parse_config({"train": {"model": "m", "preset": "r1-distill-70b"}})


def test_local_model_resolves_to_smollm2():
    from star1.train.models import resolve_model

    path = resolve_model("local")
    assert path == smollm2_dir() and (path / "config.json").is_file()


def test_r1_template_is_patched_with_a_note(tmp_path, tiny):
    from star1.train.run import prepare

    template = Path(__file__).parent / "fixtures" / "r1_style_chat_template.jinja"
    cfg = _cfg(tmp_path / "s", model=str(tiny), format={"chat_template": str(template)})
    logged: list[str] = []
    prep = prepare(cfg, cfg.train, Store.from_uri(str(tmp_path / "s")), logged.append)
    assert "split('</think>')" not in prep.template and "split('</think>')" in template.read_text()
    assert any("removed 1 clause(s) that strip reasoning" in n for n in prep.notes)
    assert any("warning" in m for m in logged)
    assert prep.stats.samples == 4 and prep.table.num_rows == 4


def test_an_explicit_worker_shape_replaces_the_presets_and_must_agree_with_use_gpu():
    """A GPU preset's {CPU: 8, GPU: 1} under an explicit {CPU: 1} stays {CPU: 1} (a worker shape is one value,
    not a section to merge), and a shape that asks for GPUs with use_gpu false is a config error at load
    time, not a Ray traceback after the cluster started."""
    from star1.config import ConfigError

    cpu = {"use_gpu": False, "num_workers": 1, "resources_per_worker": {"CPU": 1}}
    cfg = parse_config(
        {"train": {"model": "m", "preset": "r1-distill-7b", "scaling": cpu, "recipe": {"effective_batch": 2}}}
    )
    assert cfg.train.scaling.resources_per_worker == {"CPU": 1.0} and cfg.train.strategy == "zero3"
    with pytest.raises(ConfigError, match="use_gpu is false but resources_per_worker asks for 1 GPU"):
        parse_config({"train": {"model": "m", "preset": "r1-distill-7b", "scaling": {"use_gpu": False}}})
    no_gpu = {"use_gpu": True, "resources_per_worker": {"CPU": 2}}
    with pytest.raises(ConfigError, match="use_gpu is true but resources_per_worker gives each worker no"):
        parse_config({"train": {"model": "m", "scaling": no_gpu}})
