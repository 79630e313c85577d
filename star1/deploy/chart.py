"""The Helm chart `helm/star1` as data: offline rendering (helm-python-sdk embeds Helm v4, no binary, no
cluster), the rendered objects, and `k8s/` — the kubectl-ready rendering: `curate.yaml` with the chart's
default values (which enable only curate), and `sft.yaml`, `eval.yaml`, `nightly.yaml` with the documented
override files `helm/examples/<job>.yaml` (each a complete starting point for that job).

    python -m star1.deploy.chart write     # re-render k8s/ (`make k8s`)
    python -m star1.deploy.chart check     # exit 1 when k8s/ differs from a fresh render

The chart is found in a source checkout (`helm/star1`, `helm/examples`) and in an installed wheel, which
carries a copy made at build time (`star1/deploy/helm/{star1,examples}`, setup.py); `--chart` or
$STAR1_CHART overrides both. Installed, `write`/`check` use `./k8s` of the working folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
# a source checkout (or an editable install of one) has helm/ beside star1/; a wheel carries its own copy
CHECKOUT = (REPO / "helm" / "star1" / "Chart.yaml").is_file()
HELM_DIR = REPO / "helm" if CHECKOUT else Path(__file__).resolve().parent / "helm"
CHART_DIR = HELM_DIR / "star1"
EXAMPLES_DIR = HELM_DIR / "examples"
K8S_DIR = REPO / "k8s" if CHECKOUT else Path("k8s")
RELEASE = "star1"
NAMESPACE = "star1"
JOBS = ("curate", "sft", "eval")
HEADER = (
    "# Rendered from helm/star1 with its default values{extra} (release {release}, namespace {namespace})\n"
    "# by `make k8s`. Do not edit: change the chart and re-render (a test keeps this file in sync).\n"
)


class ChartError(RuntimeError):
    """The chart could not be found, loaded or rendered (the message says why)."""


def chart_dir(path: str | Path | None = None) -> Path:
    """The chart folder: `path`, else $STAR1_CHART, else the checkout's helm/star1 or the installed copy."""
    d = Path(path or os.environ.get("STAR1_CHART") or CHART_DIR)
    if not (d / "Chart.yaml").is_file():
        raise ChartError(f"no Helm chart at {d} (pass --chart or set STAR1_CHART to helm/star1)")
    return d


def _helm():
    try:
        import helm_python
    except ImportError:
        raise ChartError(
            "rendering the chart needs helm-python-sdk: pip install 'helm-python-sdk==0.2.2' "
            "(or the star1[k8s] extra)"
        ) from None
    return helm_python


def render(
    values: dict[str, Any] | None = None,
    *,
    chart: str | Path | None = None,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> dict[str, str]:
    """Render the chart: `{template path: YAML}`; bad values or a failing template raise ChartError."""
    helm = _helm()
    try:
        with helm.Chart.load(str(chart_dir(chart))) as c:
            return c.render(values, name=release, namespace=namespace, is_install=True)
    except helm.HelmError as e:
        raise ChartError(str(e)) from None


def lint(values: dict[str, Any] | None = None, *, chart: str | Path | None = None) -> dict[str, Any]:
    """`helm lint --strict` findings as data."""
    return _helm().lint(str(chart_dir(chart)), values, strict=True, namespace=NAMESPACE)


def objects(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object of a rendering, in template order."""
    out = []
    for name in sorted(rendered):
        if name.endswith(".yaml"):
            out.extend(d for d in yaml.safe_load_all(rendered[name]) if d)
    return out


def k8s_files(
    rendered: dict[str, str], release: str = RELEASE, namespace: str = NAMESPACE, values_file: str = ""
) -> dict[str, str]:
    """`{file name: text}` for k8s/: one file per template that rendered something (not `helm test`'s pods,
    which only `helm test` runs)."""
    extra = f" + {values_file}" if values_file else ""
    head = HEADER.format(release=release, namespace=namespace, extra=extra)
    return {
        Path(name).name: head + text.strip() + "\n"
        for name, text in sorted(rendered.items())
        if name.endswith(".yaml") and text.strip() and "/templates/tests/" not in name
    }


def examples() -> dict[str, Path]:
    """The documented override files: `{job: helm/examples/<job>.yaml}`."""
    return {p.stem: p for p in sorted(EXAMPLES_DIR.glob("*.yaml"))}


def example_values(*jobs: str) -> dict[str, Any]:
    """The values of the named examples (default: all) merged, with curate enabled as by default: every
    job of the chart, configured."""
    from star1.deploy.rayjob import deep_merge

    values: dict[str, Any] = {}
    for job, path in examples().items():
        if not jobs or job in jobs:
            values = deep_merge(values, yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    return deep_merge(values, {"jobs": {"curate": {"enabled": True}}})


def k8s_renders() -> dict[str, str]:
    """Every k8s/ file: the default rendering (curate), then each example's own job."""
    files = k8s_files(render())
    for job, path in examples().items():
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        mine = k8s_files(render(values), values_file=f"helm/examples/{path.name}")
        if set(mine) != {f"{job}.yaml"}:
            raise ChartError(
                f"{path} must render {job}.yaml alone (disable the other jobs), got {sorted(mine)}"
            )
        files.update(mine)
    return files


def write_k8s(directory: Path = K8S_DIR) -> list[Path]:
    """Re-render k8s/ (defaults + the examples); stale rendered files are removed."""
    files = k8s_renders()
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.yaml"):
        if old.name not in files:
            old.unlink()
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_k8s(directory: Path = K8S_DIR) -> list[str]:
    """Names of k8s/ files that differ from a fresh render (missing, extra or changed)."""
    want = k8s_renders()
    have = {p.name: p.read_text(encoding="utf-8") for p in directory.glob("*.yaml")}
    return sorted(n for n in want.keys() | have.keys() if want.get(n) != have.get(n))


def main(argv: list[str] | None = None) -> int:
    cmd = (argv if argv is not None else sys.argv[1:])[:1]
    if cmd == ["write"]:
        for p in write_k8s():
            print(os.path.relpath(p))
        return 0
    if cmd == ["check"]:
        stale = stale_k8s()
        for name in stale:
            print(f"k8s/{name} differs from a fresh render of helm/star1: run `make k8s`", file=sys.stderr)
        return 1 if stale else 0
    print("usage: python -m star1.deploy.chart write|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
