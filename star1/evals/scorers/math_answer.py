"""Math answers: the last `\\boxed{}` of the final answer (fallbacks: "final answer is", "Answer:", and for
integer answers the last number), checked against the gold answer with Math-Verify. An output that ended
mid-thought has no answer (`truncated_thought`, 0), whatever its scratchpad holds.

Math-Verify's timeouts are signal based and fail silently off the main thread (in Ray workers every answer
scores zero), so verification runs in a pool of processes (`pebble`): each check runs on its worker's main
thread, and a check that exceeds the outer timeout has its worker killed. Timeouts and unparseable gold
answers are unscored and counted; they never score as wrong.
"""

from __future__ import annotations

import multiprocessing
import re
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from star1.evals.scorers.common import TRUNCATED_THOUGHT, Verdict, final_answer, thought_unfinished, unscored

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOXED_BARE = re.compile(r"\\boxed +([^\s$]+)")
_FALLBACKS = (
    re.compile(r"final answer is[:\s]*\$?([^\n]+?)\$?\s*(?:\.|$)", re.IGNORECASE | re.MULTILINE),
    re.compile(r"^\s*\**answer\**\s*[:：]\s*\$?([^\n]+?)\$?\s*\.?\s*$", re.IGNORECASE | re.MULTILINE),
    re.compile(r"\banswer is[:\s]*\$?([^\n]+?)\$?\s*(?:\.|$)", re.IGNORECASE | re.MULTILINE),
)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{…}` / `\\fbox{…}` with balanced braces (or `\\boxed 5`)."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    for start in reversed(starts):
        depth, i = 1, start
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[start : i - 1].strip()
    bare = _BOXED_BARE.findall(text)
    return bare[-1].strip() if bare else None


def extract(text: str | None, integer: bool = False, think_open: bool = False) -> tuple[str | None, str]:
    """(answer, method): boxed, a phrase fallback, the last number (integer answers), or (None, 'none')."""
    answer = final_answer(text, think_open)
    if not answer:
        return None, "none"
    boxed = last_boxed(answer)
    if boxed:
        return boxed, "boxed"
    for i, rx in enumerate(_FALLBACKS):
        hits = rx.findall(answer)
        if hits:
            return hits[-1].strip().rstrip("."), f"phrase{i}"
    if integer:
        lines = [ln for ln in answer.splitlines() if ln.strip()]
        nums = _NUMBER.findall(lines[-1]) if lines else []
        if nums:
            return nums[-1].replace(",", ""), "last_number"
    return None, "none"


def _as_int(s: str) -> int | None:
    s = s.strip().strip("$").replace(",", "")
    s = re.sub(r"^\\text\{(.*)\}$", r"\1", s).strip()
    return int(s) if re.fullmatch(r"-?\d+", s) else None


def verify_pair(gold: str, pred: str, timeout_s: int = 5) -> tuple[bool | None, str | None]:
    """(equal, error) — runs in a worker process's main thread, where Math-Verify's alarms work."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    g = parse(f"${gold}$", extraction_config=configs, parsing_timeout=timeout_s)
    if not g:
        return None, "gold_unparsed"
    p = parse(f"${pred}$", extraction_config=configs, parsing_timeout=timeout_s)
    if not p:
        p = parse(f"\\boxed{{{pred}}}", parsing_timeout=timeout_s)
    if not p:
        return False, "answer_unparsed"
    return bool(verify(g, p, timeout_seconds=timeout_s)), None


@dataclass
class MathJob:
    gold: str | None
    output: str | None
    think_open: bool = False  # the prompt opened a <think> block (see scorers.common)


class MathScorer:
    """Score many outputs with a pool of verification processes (`workers`, `timeout_s` each)."""

    def __init__(self, workers: int = 2, timeout_s: float = 10.0, integer: bool = False) -> None:
        self.workers, self.timeout_s, self.integer = workers, timeout_s, integer

    def score(self, jobs: list[MathJob]) -> list[Verdict]:
        from pebble import ProcessPool

        out: list[Verdict | None] = [None] * len(jobs)
        pending: dict[int, tuple[str, str]] = {}
        for i, job in enumerate(jobs):
            if not job.gold:
                out[i] = unscored("no_gold", "the item has no gold answer")
                continue
            if not (job.output or "").strip():
                out[i] = Verdict("empty_output", 0.0, None, error=None)
                continue
            if thought_unfinished(job.output, job.think_open):
                out[i] = Verdict(TRUNCATED_THOUGHT, 0.0)
                continue
            pred, _ = extract(job.output, self.integer, job.think_open)
            if pred is None:
                out[i] = Verdict("no_answer", 0.0, None)
                continue
            gi, pi = _as_int(job.gold), _as_int(pred)
            if self.integer and gi is not None:
                out[i] = Verdict("correct" if gi == pi else "wrong", float(gi == pi), pred)
                continue
            pending[i] = (job.gold, pred)
        if pending:
            inner = max(1, int(self.timeout_s) // 2)
            ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold threads
            with ProcessPool(max_workers=self.workers, context=ctx) as pool:
                futures = {
                    i: pool.schedule(verify_pair, args=(g, p, inner), timeout=self.timeout_s)
                    for i, (g, p) in pending.items()
                }
                for i, fut in futures.items():
                    pred = pending[i][1]
                    try:
                        ok, err = fut.result()
                    except FutureTimeout:
                        out[i] = unscored(
                            "verify_timeout", f"math-verify exceeded {self.timeout_s:g} s", answer=pred
                        )
                        continue
                    except Exception as e:  # a crash inside math-verify: unscored, with the reason
                        out[i] = unscored("verify_error", f"{type(e).__name__}: {e}"[:300], answer=pred)
                        continue
                    if ok is None:
                        out[i] = unscored(
                            "gold_unparsed", f"math-verify cannot parse gold {pending[i][0]!r}", answer=pred
                        )
                    elif err == "answer_unparsed":
                        out[i] = Verdict("answer_unparsed", 0.0, pred)
                    else:
                        out[i] = Verdict("correct" if ok else "wrong", float(ok), pred)
        return [v for v in out if v is not None]
