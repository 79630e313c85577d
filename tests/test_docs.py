"""The docs say what is true: every `star1 …` command line in README.md and docs/*.md parses (its command
exists and so does every option it uses), its `--set` overrides name real config fields, and the numbers the
help text states match the registry."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from star1.cli import app
from star1.cli.common import DEMO_CONFIG

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_OPERATORS = {";", "&&", "||", "|", "&", ">", ">>", "<", "(", ")"}
runner = CliRunner()


def star1_lines(path: Path) -> list[tuple[str, str]]:
    """(file:line, command) for each line of a fenced code block that runs `star1` (a leading `$ ` prompt is
    dropped, `\\`-continued lines are joined)."""
    out: list[tuple[str, str]] = []
    in_block, pending, start = False, "", 0
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if raw.lstrip().startswith("```"):
            in_block, pending = not in_block, ""
            continue
        if not in_block:
            continue
        line = raw.strip()
        if not pending:
            start = n
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        line = line.removeprefix("$ ")
        if line.startswith("star1 "):
            out.append((f"{path.relative_to(ROOT)}:{start}", line))
    return out


def argv(command: str) -> list[str]:
    """The words `star1` gets: shell-split, comments dropped, up to the first shell operator; `[--opt x]`
    (an optional part, as docs write it) counts as written."""
    lex = shlex.shlex(command, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    words: list[str] = []
    for w in lex:
        if w in SHELL_OPERATORS:
            break
        words.append(w.removeprefix("[").removesuffix("]"))
    assert words[0] == "star1", command
    return [w for w in words[1:] if w]


README_LINES = star1_lines(ROOT / "README.md")
ALL_LINES = [x for p in DOCS for x in star1_lines(p)]


def test_the_readme_has_its_commands():
    assert len(README_LINES) >= 15, README_LINES  # the parser found them
    verbs = {"collect", "pipeline", "score", "--verbose", "train", "eval", "benchmarks", "report", "compare"}
    assert {argv(c)[0] for _, c in README_LINES} >= verbs | {"submit"}


@pytest.mark.parametrize("where,command", ALL_LINES, ids=[w for w, _ in ALL_LINES])
def test_documented_command_parses(where, command):
    """The line's own words plus `--help`: click parses every option before the eager `--help` prints, so a
    renamed command or option fails here (exit 2, "No such option") while missing files do not matter."""
    r = runner.invoke(app, [*argv(command), "--help"])
    assert r.exit_code == 0, f"{where}: `{command}` does not parse:\n{r.output}"
    assert "Usage:" in r.output


def _overrides(words: list[str]) -> list[str]:
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--set"]


SET_LINES = [(w, c) for w, c in ALL_LINES if _overrides(argv(c))]


@pytest.mark.parametrize("where,command", SET_LINES, ids=[w for w, _ in SET_LINES])
def test_documented_overrides_name_real_fields(where, command):
    """Applied to the bundled demo config (with the paper's effective batch, as the docs' run.yaml has),
    every documented `--set` names an existing field and a valid value."""
    from star1.config import ConfigError, load_config

    try:
        load_config(DEMO_CONFIG, ["train.recipe.effective_batch=128", *_overrides(argv(command))])
    except ConfigError as e:
        pytest.fail(f"{where}: `{command}`: {e}")


def test_argv_reads_docs_notation():
    assert argv("star1 collect -c run.yaml --force   # redo") == ["collect", "-c", "run.yaml", "--force"]
    assert argv('star1 compare "$A" B -c x.yaml; rc=$?') == ["compare", "$A", "B", "-c", "x.yaml"]
    assert argv("star1 submit ray j.py [--logs-to s3://b/_runs]") == ["submit", "ray", "j.py", "--logs-to",
                                                                      "s3://b/_runs"]  # fmt: skip


def test_a_renamed_option_fails_the_check():
    r = runner.invoke(app, ["collect", "-c", "run.yaml", "--no-such-option", "x", "--help"])
    assert r.exit_code == 2 and "No such option" in r.output
    r = runner.invoke(app, ["no-such-command", "--help"])
    assert r.exit_code == 2


def test_the_paper_group_size_is_what_the_help_says():
    from star1.config.eval import EvalConfig
    from star1.evals.registry import resolve

    n = len(resolve(["paper"]))
    assert n == 10  # the paper's Table 1: 4 safety, XSTest, 5 reasoning
    assert f"paper (the paper's {n})" in EvalConfig.model_fields["benchmarks"].description
    r = runner.invoke(app, ["eval", "--help"], env={"COLUMNS": "200"})
    assert f"paper (the paper's {n})" in r.output
    assert all(f"{k}," in r.output or f"{k} " in r.output for k in ("safety", "overrefusal", "reasoning"))


def test_readme_names_existing_files():
    """Paths the README points a reader at exist (demo config, registries, entrypoints, docs)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    top = r"(?:star1|configs|jobs|helm|k8s|scripts|docs|bench)"
    paths = set(re.findall(rf"(?<![\w/.:-]){top}/[\w./-]*\.(?:yaml|yml|py|md|json|sh|toml)\b", text))
    paths |= set(re.findall(r"\]\(((?:docs|k8s)/[\w./-]+)\)", text))
    assert len(paths) >= 10, paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, missing
