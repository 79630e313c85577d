"""What scorers share: the per-sample verdict, and the final answer of a thinking model's output."""

from __future__ import annotations

import re
from dataclasses import dataclass

_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)


@dataclass
class Verdict:
    """`score` in [0, 1] (higher is better) or None = unscored, with the reason in `error`."""

    verdict: str
    score: float | None
    answer: str | None = None
    judge_output: str | None = None
    p_unsafe: float | None = None
    error: str | None = None


def final_answer(text: str | None) -> str:
    """The part after the reasoning: text after the last `</think>`; an unterminated `<think>` (the model
    ran out of tokens while thinking) has no answer; text without think tags is all answer."""
    if not text:
        return ""
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        return text[closes[-1].end() :].strip()
    if _THINK_OPEN.search(text):
        return ""
    return text.strip()


def unscored(verdict: str, error: str, **kw: object) -> Verdict:
    return Verdict(verdict=verdict, score=None, error=error, **kw)  # type: ignore[arg-type]
