"""Packaging beyond pyproject.toml: the wheel carries the Helm chart, so an installed star1 renders its own
jobs (`star1 submit k8s`, `python -m star1.deploy.chart`). helm/star1 and helm/examples stay the one source
of truth in the repository; the build copies them into the package as star1/deploy/helm/{star1,examples}.
An editable install copies nothing: star1.deploy.chart finds the checkout's helm/ itself."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
CHART_PARTS = ("star1", "examples")  # helm/<part> → star1/deploy/helm/<part>


class BuildPyWithChart(build_py):
    """build_py, then the chart and its example values into the built package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        if not (ROOT / "helm" / "star1" / "Chart.yaml").is_file():
            raise FileNotFoundError(
                f"{ROOT / 'helm/star1/Chart.yaml'} is missing: the wheel must carry the chart"
            )
        for part in CHART_PARTS:
            dest = Path(self.build_lib) / "star1" / "deploy" / "helm" / part
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(ROOT / "helm" / part, dest, ignore=shutil.ignore_patterns("__pycache__"))


setup(cmdclass={"build_py": BuildPyWithChart})
