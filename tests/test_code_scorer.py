"""HumanEval as its authors score it, through star1's code scorer: a pass only once `check(entry_point)`
returned, the program not run as `__main__`, stdin empty, output capped; the 164 canonical solutions pass."""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from star1.evals.sandbox import IsolationError, Limits, detect
from star1.evals.sandbox.remote import RemoteSandbox
from star1.evals.scorers.code import CodeJob, CodeScorer, extract_code, program
from tests.conftest import SHARED

DATA = Path(__file__).parent / "data" / "eval"
BENCH = Path(os.environ.get("STAR1_SHARED", SHARED)) / "data" / "benchmarks"

try:
    ISO = detect()
except IsolationError as e:  # pragma: no cover
    pytest.skip(f"no OS isolation here: {e}", allow_module_level=True)

ADD = {
    "prompt": 'def add(a, b):\n    """Add two numbers."""\n',
    "entry_point": "add",
    "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
}
WRONG = "def add(a, b):\n    return a - b\n"
RIGHT = "def add(a, b):\n    return a + b\n"


def scorer(**kw: object) -> CodeScorer:
    return CodeScorer(ISO, Limits(**kw), workers=2)  # type: ignore[arg-type]


def fenced(code: str) -> str:
    return f"<think>write add</think>Here it is:\n```python\n{code}```"


def score(code: str, **kw: object):
    return scorer(**kw).score([CodeJob(fenced(code), ADD)])[0]


def test_right_and_wrong() -> None:
    assert score(RIGHT).verdict == "passed"
    v = score(WRONG)
    assert v.verdict == "failed" and v.score == 0.0 and "AssertionError" in (v.judge_output or "")


@pytest.mark.parametrize(
    "tail",
    [
        "import sys\nsys.exit(0)\n",
        "import os\nos._exit(0)\n",
        "raise SystemExit\n",
        "import unittest\nunittest.main()\n",
        "import atexit, os\natexit.register(lambda: os._exit(0))\nimport sys\nsys.exit(0)\n",
    ],
)
def test_wrong_code_that_exits_early_fails(tail: str) -> None:
    """Exit code 0 before check() returned is not a pass (it was, when passed meant exit code 0)."""
    v = score(WRONG + tail)
    assert v.verdict == "failed" and v.score == 0.0, v


def test_correct_code_with_a_main_block_reading_stdin_passes() -> None:
    code = (
        RIGHT + "\nif __name__ == '__main__':\n    a, b = map(int, input().split())\n    print(add(a, b))\n"
    )
    assert score(code).verdict == "passed"


def test_input_at_module_level_sees_empty_stdin() -> None:
    v = score("x = input()\n" + RIGHT)
    assert v.verdict == "failed" and "EOFError" in (v.judge_output or "")


def test_output_is_capped() -> None:
    v = score(RIGHT + "print('x' * (4 << 20))\n", output_bytes=1 << 20)
    assert v.verdict == "output_limit" and v.score == 0.0


def test_timeout_and_memory() -> None:
    assert score(RIGHT + "while True:\n    pass\n", timeout_s=1).verdict == "timeout"
    assert score(RIGHT + "x = bytearray(2 << 30)\n", memory_mb=256).verdict in ("memory", "failed")


def test_code_extraction() -> None:
    out = "<think>try def add</think>Here:\n```python\nimport math\n\ndef add(a, b):\n    return a + b\n```"
    assert "return a + b" in (extract_code(out, "add") or "")
    assert extract_code("no code here", "add") is None


def test_program_layout() -> None:
    p = program("def f():\n", "def f():\n    return 1\n", "def check(c):\n    assert c() == 1\n", "f")
    assert p.rstrip().endswith("check(f)")


def _humaneval_rows() -> list[dict]:
    path = BENCH / "humaneval" / "HumanEval.jsonl.gz"
    if path.exists():
        text = gzip.decompress(path.read_bytes()).decode()
    else:
        text = (DATA / "code.jsonl").read_text()
    return [json.loads(ln) for ln in text.splitlines() if ln.strip()]


def test_humaneval_canonical_solutions_pass_and_early_exits_fail() -> None:
    rows = _humaneval_rows()
    s = CodeScorer(ISO, Limits(timeout_s=10), workers=2)
    good = s.score([CodeJob(f"```python\n{r['prompt']}{r['canonical_solution']}```", r) for r in rows])
    bad = [(r["task_id"], v.verdict, (v.judge_output or "")[-200:]) for r, v in zip(rows, good, strict=True)]
    bad = [b for b in bad if b[1] != "passed"]
    print(f"HumanEval canonical: {len(rows) - len(bad)}/{len(rows)} pass under {ISO.kind}")
    assert not bad
    assert Counter(v.verdict for v in good) == {"passed": len(rows)}
    # the same solutions, made wrong (body replaced) and followed by an exit before check(): none passes
    wrong = s.score(
        [
            CodeJob(f"```python\n{r['prompt']}    return None\n\nimport sys\nsys.exit(0)\n```", r)
            for r in rows[:20]
        ]
    )
    assert not [v for v in wrong if v.verdict == "passed"]


@pytest.mark.slow
def test_programs_run_as_ray_tasks_on_the_sandbox_resource(ray_local) -> None:
    """With eval.sandbox.ray_resource the driver runs no generated code: each batch is a task that needs the
    resource, and it finds its own node's isolation."""
    remote = RemoteSandbox("star1_sandbox", allow_none=False, want="auto", batch=2)
    iso = remote.probe(wait_s=120)
    assert iso.kind == ISO.kind and "resource star1_sandbox" in iso.detail
    jobs = [CodeJob(fenced(c), ADD) for c in (RIGHT, WRONG, WRONG + "import sys\nsys.exit(0)\n", RIGHT)]
    verdicts = CodeScorer(iso, Limits(), workers=1, remote=remote).score(jobs)
    assert [v.verdict for v in verdicts] == ["passed", "failed", "failed", "passed"]


@pytest.mark.slow
def test_no_sandbox_node_is_a_clear_error(ray_local) -> None:
    with pytest.raises(RuntimeError, match="no Ray node with the resource 'star1_nowhere'"):
        RemoteSandbox("star1_nowhere", allow_none=False, want="auto").probe(wait_s=3)
