"""HumanEval: extract the function from the final answer, run prompt + code + tests in the sandbox.

The program is the problem's prompt (its imports and signature), the model's code (which normally redefines
the whole function), the problem's `check` function and `check(entry_point)`, as in human-eval and
simple-evals. Only exit code 0 passes; timeouts and blocked operations are failures with their reason.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from star1.evals.sandbox import run_program
from star1.evals.scorers.common import TRUNCATED_THOUGHT, Verdict, final_answer, thought_unfinished

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL | re.IGNORECASE)


def extract_code(text: str | None, entry_point: str, think_open: bool = False) -> str | None:
    """The fenced block of the final answer that defines `entry_point` (else the first fenced block, else
    the whole answer if it looks like code); None for an output that ended mid-thought."""
    answer = final_answer(text, think_open)
    if not answer:
        return None
    blocks = [b for b in _FENCE.findall(answer) if b.strip()]
    for b in blocks:
        if re.search(rf"\bdef\s+{re.escape(entry_point)}\s*\(", b):
            return b
    if blocks:
        return blocks[0]
    if re.search(r"^\s*(def |return |import |from )", answer, re.MULTILINE):
        return answer
    return None


def program(prompt: str, code: str, test: str, entry_point: str) -> str:
    return f"{prompt}\n{code}\n\n{test}\n\ncheck({entry_point})\n"


@dataclass
class CodeJob:
    output: str | None
    meta: dict[str, Any]
    think_open: bool = False  # the prompt opened a <think> block (see scorers.common)


class CodeScorer:
    def __init__(self, workers: int = 2, timeout_s: float = 3.0, cpu_s: int = 5, memory_mb: int = 1024):
        self.workers, self.timeout_s, self.cpu_s, self.memory_mb = workers, timeout_s, cpu_s, memory_mb

    def _one(self, job: CodeJob) -> Verdict:
        meta = job.meta
        for k in ("prompt", "test", "entry_point"):
            if not meta.get(k):
                return Verdict("no_tests", None, error=f"the item has no '{k}'")
        if not (job.output or "").strip():
            return Verdict("empty_output", 0.0)
        if thought_unfinished(job.output, job.think_open):
            return Verdict(TRUNCATED_THOUGHT, 0.0)
        code = extract_code(job.output, meta["entry_point"], job.think_open)
        if code is None:
            return Verdict("no_code", 0.0)
        res = run_program(
            program(meta["prompt"], code, meta["test"], meta["entry_point"]),
            self.timeout_s,
            self.cpu_s,
            self.memory_mb,
        )
        if res.passed:
            return Verdict("passed", 1.0, code)
        return Verdict(
            res.status if res.status != "failed" else "failed", 0.0, code, judge_output=res.detail[-500:]
        )

    def score(self, jobs: list[CodeJob]) -> list[Verdict]:
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(self._one, jobs))
