"""The `star1` command: config errors exit 2 before any work; the demo runs; --explain answers."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from star1.cli import app
from star1.cli.common import DEMO_CONFIG
from tests.conftest import write

runner = CliRunner()


def test_bad_config_exits_2_naming_the_field(tmp_path):
    f = write(tmp_path / "c.yaml", "collect:\n  sources: [a]\n  embed_threshold: 2\n")
    r = runner.invoke(app, ["collect", "--config", str(f)])
    assert r.exit_code == 2
    assert "collect.embed_threshold" in r.output and "less than or equal to 1" in r.output


def test_bad_override_exits_2(tmp_path):
    r = runner.invoke(app, ["collect", "--set", "collect.nope=1", "--set", f"store.uri={tmp_path}"])
    assert r.exit_code == 2 and "collect.nope" in r.output


def test_demo_runs_then_is_up_to_date_and_explains(tmp_path):
    args = ["collect", "--set", f"store.uri={tmp_path}", "--set", "ray.enabled=false"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1].endswith("collect/pool.parquet")
    manifest = json.loads((tmp_path / "collect" / "manifest.json").read_text())
    total = manifest["counts"]["total"]
    assert total["read"] == total["kept"] + total["rejected"] == 45
    r2 = runner.invoke(app, args)
    assert r2.exit_code == 0 and "up to date" in r2.output

    import pyarrow.parquet as pq

    rej = pq.read_table(tmp_path / "collect" / "rejects.parquet").to_pylist()
    dropped = next(x for x in rej if x["rule"] == "ngram_self_dup")
    r3 = runner.invoke(app, [*args, "--explain", dropped["id"]])
    assert r3.exit_code == 0
    assert json.loads(r3.stdout)["rejected"][0]["rule"] == "ngram_self_dup"
    assert runner.invoke(app, [*args, "--explain", "no-such-id"]).exit_code == 1


def test_demo_config_is_bundled():
    assert DEMO_CONFIG.exists()
