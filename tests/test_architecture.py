"""The import contracts in pyproject.toml hold, catch the violations they exist for, and match
docs/architecture.md."""

from __future__ import annotations

import ast
import pkgutil
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import star1

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
DOC = (REPO / "docs" / "architecture.md").read_text()
LINT = (
    "import sys; from importlinter.cli import lint_imports; "
    "sys.exit(lint_imports(no_cache=True, no_logo=True))"
)


def lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-c", LINT], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_import_contracts_hold():
    r = lint(REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken" in r.stdout


# (module to edit, line planted inside a function so only a static reader sees it, contract id)
VIOLATIONS = [
    ("star1/evals/metrics.py", "import star1.train.run", "evals"),
    ("star1/evals/run.py", "from star1.stages import runner", "evals"),
    ("star1/stages/export.py", "from star1.train.layout import RunLayout", "stages"),
    ("star1/stages/select_rows.py", "import star1.evals.results", "stages"),
    ("star1/train/loop.py", "from star1.evals import metrics", "train"),
    ("star1/report/scorecard.py", "from star1.evals.run import run_eval", "report"),
    ("star1/deploy/submit.py", "import star1.pipeline", "deploy"),
    ("star1/store.py", "import star1.cli", "core"),
    ("star1/config/eval.py", "from star1.report import render", "core"),
    ("star1/stage_run.py", "import star1.stages.runner", "core"),
    ("star1/manifest.py", "from star1.llm import client", "core"),
]


@pytest.fixture(scope="module")
def code_copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("arch")
    shutil.copytree(REPO / "star1", root / "star1", ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.mark.parametrize(
    ("module", "line", "contract"), VIOLATIONS, ids=[f"{v[2]}:{v[1]}" for v in VIOLATIONS]
)
def test_a_planted_import_breaks_its_contract(code_copy, module, line, contract):
    path = code_copy / module
    original = path.read_text()
    path.write_text(original + f"\n\ndef _planted() -> None:\n    {line}  # noqa\n")
    try:
        r = lint(code_copy)
    finally:
        path.write_text(original)
    name = next(c["name"] for c in CONTRACTS if c["id"] == contract)
    out = " ".join(r.stdout.split())  # the report wraps long contract names
    assert r.returncode == 1, out
    assert f"{name} BROKEN" in out, out
    importer = module.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    assert importer in out  # the report names the offending module


def test_the_documented_layers_are_the_contract():
    block = DOC.split("## Layers", 1)[1].split("```", 2)[1]
    documented = [line.strip() for line in block.strip().splitlines()]
    layers = next(c for c in CONTRACTS if c["id"] == "layers")["layers"]
    assert documented == layers


def test_every_package_is_placed_and_described():
    """A new top-level package or module has to find its layer and its paragraph."""
    layered = {m.strip() for layer in next(c for c in CONTRACTS if c["id"] == "layers")["layers"] for m in
               re.split(r"[|:]", layer)}  # fmt: skip
    top = {f"star1.{m.name}" for m in pkgutil.iter_modules(star1.__path__)} - {"star1.__main__", "star1.data"}
    assert top == layered, f"unplaced: {sorted(top - layered)}; gone: {sorted(layered - top)}"
    for module in top:
        assert f"`{module.removeprefix('star1.')}`" in DOC, f"docs/architecture.md does not describe {module}"


def _defined_names(path: Path) -> set[str]:
    """Names a module binds at its top level (defs, classes, assignments, imports)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.If | ast.Try):  # TYPE_CHECKING blocks, optional imports
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import | ast.ImportFrom):
                    names.update((a.asname or a.name).split(".")[0] for a in sub.names)
    return names


def _module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def test_every_star1_import_resolves_even_inside_functions():
    """Lazy imports (inside functions) escape `import star1.x` checks; a move that misses one fails here."""
    broken = []
    for folder in ("star1", "tests", "bench", "jobs", "scripts"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    targets = [(a.name, None) for a in node.names if a.name.startswith("star1")]
                elif (
                    isinstance(node, ast.ImportFrom)
                    and node.level == 0
                    and (node.module or "").startswith("star1")
                ):
                    targets = [(node.module, a.name) for a in node.names]
                else:
                    continue
                for module, name in targets:
                    where = f"{path.relative_to(REPO)}:{node.lineno}"
                    file = _module_file(module)
                    if file is None:
                        broken.append(f"{where}: no module {module}")
                    elif name and name != "*" and _module_file(f"{module}.{name}") is None:
                        if name not in _defined_names(file):
                            broken.append(f"{where}: {module} has no {name}")
    assert not broken, "\n".join(broken)
