"""Installed, not only cloned: star1's wheel, built from the files the image's build context holds
(.dockerignore), carries the Helm chart and its example values, and a star1 installed from it into a scratch
virtualenv — run from an empty folder, without this checkout on sys.path and without $STAR1_CHART — renders
its jobs: `star1 submit k8s curate --dry-run` prints the RayJob, and `python -m star1.deploy.chart write`
writes a k8s/ identical to the checked-in one."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHART_FILES = sorted(
    p.relative_to(REPO / "helm").as_posix()
    for part in ("star1", "examples")
    for p in (REPO / "helm" / part).rglob("*")
    if p.is_file() and "__pycache__" not in p.parts
)


def context_paths() -> list[str]:
    """What the image's build context holds: the `!path` lines of .dockerignore."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [x[1:].rstrip("/") for x in lines if x.startswith("!")]


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{cmd} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """(the scratch venv's python, an empty working folder, the environment to run it in)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for rel in context_paths():
        s = REPO / rel
        if s.is_dir():
            shutil.copytree(s, src / rel, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, src / rel)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "STAR1_CHART", "VIRTUAL_ENV"}}
    env["STAR1_CACHE"] = str(tmp / "cache")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    pip = [sys.executable, "-m", "pip"]
    run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"), str(src)],
        tmp,
        env,
    )
    (wheel,) = (tmp / "dist").glob("star1-*.whl")
    # The scratch venv sees this environment's packages (star1's dependencies) through a .pth file, after its
    # own site-packages. Not `--system-site-packages`: from a venv that means the base interpreter's packages.
    # A path added by a .pth line has its own .pth files skipped, so the editable install's import hook (a
    # .pth in this environment) stays out and `import star1` can only find the wheel's star1.
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp, env)
    py = venv / "bin" / "python"
    purelib = run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, env)
    (Path(purelib.strip()) / "star1-test-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], tmp, env)
    work = tmp / "work"
    work.mkdir()
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return py, work, env | {"WHEEL": str(wheel)}


def test_the_wheel_carries_the_chart_and_its_examples(installed):
    with zipfile.ZipFile(installed[2]["WHEEL"]) as z:
        names = set(z.namelist())
        shipped = sorted(
            n.removeprefix("star1/deploy/helm/") for n in names if n.startswith("star1/deploy/helm/")
        )
        assert shipped == CHART_FILES
        for rel in CHART_FILES:  # a copy of the checkout's files, byte for byte
            assert z.read(f"star1/deploy/helm/{rel}") == (REPO / "helm" / rel).read_bytes(), rel
    for needed in ("star1/Chart.yaml", "star1/values.yaml", "star1/values.schema.json", "examples/sft.yaml"):
        assert needed in CHART_FILES
    assert any(f.startswith("star1/templates/") for f in CHART_FILES)


def test_the_installed_star1_is_the_wheel_and_finds_its_chart(installed):
    py, work, env = installed
    out = run(
        [str(py), "-c", "import star1, star1.deploy.chart as c; print(star1.__file__); print(c.chart_dir())"],
        work,
        env,
    ).split()
    venv = py.parent.parent.resolve()
    assert Path(out[0]).resolve().is_relative_to(venv), out  # not this checkout, not the editable install
    assert Path(out[1]) == Path(out[0]).parent / "deploy" / "helm" / "star1"


def test_submit_k8s_dry_run_renders_the_rayjob(installed):
    """The installed CLI prints the objects this checkout's chart renders for the same job and release."""
    from star1.deploy.rayjob import chart_values, from_chart

    py, work, env = installed
    cmd = [str(py.parent / "star1"), "submit", "k8s", "curate", "--dry-run", "--name", "whl"]
    docs = [d for d in yaml.safe_load_all(run(cmd, work, env)) if d]
    kinds = {d["kind"]: d for d in docs}
    assert {"ConfigMap", "RayJob"} <= set(kinds)
    job = kinds["RayJob"]
    assert job["apiVersion"] == "ray.io/v1" and job["metadata"]["name"].startswith("whl-curate")
    assert job["metadata"]["namespace"] == "star1" and job["spec"]["entrypoint"]
    configmap, rayjob, policies = from_chart("curate", chart_values("curate", [], [], None), "whl", "star1")
    assert job == rayjob and kinds["ConfigMap"] == configmap
    assert len(docs) == 2 + len(policies)


def test_chart_write_renders_k8s_as_checked_in(installed):
    py, work, env = installed
    printed = run([str(py), "-m", "star1.deploy.chart", "write"], work, env).split()
    written = {p.name: p.read_text() for p in sorted((work / "k8s").glob("*.yaml"))}
    assert printed == [f"k8s/{n}" for n in written]
    assert written == {p.name: p.read_text() for p in sorted((REPO / "k8s").glob("*.yaml"))}
    assert run([str(py), "-m", "star1.deploy.chart", "check"], work, env) == ""
