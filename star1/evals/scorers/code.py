"""HumanEval: extract the function from the final answer, run prompt + code + tests in the sandbox.

The program is the problem's prompt (its imports and signature), the model's code (which normally redefines
the whole function), the problem's `check` function and `check(entry_point)`, as in human-eval and
simple-evals. As in human-eval, it runs as a module that is not `__main__` (a solution's own
`if __name__ == "__main__":` block stays off), with stdin empty, and passes only when `check(entry_point)`
returned (the sandbox's completion marker), never on an exit code alone: `sys.exit(0)` or `unittest.main()`
before the tests end fails. Timeouts, blocked operations and output floods are failures with their reason.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from star1.evals.sandbox import Isolation, Limits, SandboxResult, run_program
from star1.evals.sandbox.remote import RemoteSandbox
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
    """Score code jobs: each program in the sandbox under `isolation`, in `workers` threads here, or as Ray
    tasks on the sandbox nodes when `remote` is given."""

    def __init__(
        self,
        isolation: Isolation,
        limits: Limits | None = None,
        workers: int = 2,
        remote: RemoteSandbox | None = None,
    ) -> None:
        self.isolation, self.limits, self.workers = isolation, limits or Limits(), workers
        self.remote = remote

    def _prepare(self, job: CodeJob) -> Verdict | tuple[str, str]:
        """A verdict when there is nothing to run, else (code, program)."""
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
        return code, program(meta["prompt"], code, meta["test"], meta["entry_point"])

    def score(self, jobs: list[CodeJob]) -> list[Verdict]:
        prepared = [self._prepare(j) for j in jobs]
        todo = [p for p in prepared if isinstance(p, tuple)]
        programs = [prog for _, prog in todo]
        if self.remote is not None:
            results = iter(self.remote.run(programs, self.limits, self.workers))
        else:
            with ThreadPoolExecutor(self.workers) as pool:
                done = list(pool.map(lambda c: run_program(c, self.limits, self.isolation), programs))
            results = iter(done)
        return [p if isinstance(p, Verdict) else _verdict(p[0], next(results)) for p in prepared]


def _verdict(code: str, res: SandboxResult) -> Verdict:
    if res.passed:
        return Verdict("passed", 1.0, code)
    if res.status == "error":  # the sandbox itself failed: not the model's fault, never a silent 0
        return Verdict("sandbox_error", None, code, error=res.detail[-500:])
    return Verdict(res.status, 0.0, code, judge_output=res.detail[-500:])
