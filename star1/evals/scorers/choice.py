"""Multiple choice (GPQA, MMLU-Pro): the chosen letter from a thinking model's final answer.

Reasoning is removed first (a letter in the scratchpad is not an answer; an output that ended mid-thought
has none: `truncated_thought`, 0). Then, last match wins, in order of trust: `Answer: X` (any case, bold,
parentheses), `\\boxed{X}`, "the answer is (X)", "option X", a final line that is only the letter. A bare
article "A" in prose never counts.
"""

from __future__ import annotations

import re

from star1.evals.scorers.common import TRUNCATED_THOUGHT, Verdict, final_answer, thought_unfinished


def _patterns(letters: str) -> list[re.Pattern[str]]:
    L = f"[{letters}]"
    return [
        re.compile(rf"answer\s*(?:is)?\s*[:：]\s*\**\s*\(?\\?(?:text\{{)?({L})\b", re.IGNORECASE),
        re.compile(rf"\\boxed\{{\s*(?:\\text\{{)?\(?({L})\)?\}}?\s*\}}"),
        re.compile(
            rf"answer\s+(?:is|would be|should be)\s*[:：]?\s*\**\s*(?:option\s+)?\(?({L})\)?(?![\w'])",
            re.IGNORECASE,
        ),
        re.compile(rf"\b(?:option|choice)\s+\(?({L})\)?\s+is\s+(?:correct|right)", re.IGNORECASE),
        re.compile(rf"^\s*\**\(?({L})\)?[.)]?\**\s*$", re.MULTILINE),
    ]


def extract_letter(text: str | None, n_options: int = 4, think_open: bool = False) -> str | None:
    answer = final_answer(text, think_open)
    if not answer:
        return None
    letters = "ABCDEFGHIJKLMNOP"[:n_options]
    for rx in _patterns(letters):
        hits = rx.findall(answer)
        if hits:
            return hits[-1].upper()
    return None


def score_choice(
    output: str | None, gold: str | None, n_options: int = 4, think_open: bool = False
) -> Verdict:
    if not gold:
        return Verdict("no_gold", None, error="the item has no gold letter")
    if not (output or "").strip():
        return Verdict("empty_output", 0.0)
    if thought_unfinished(output, think_open):
        return Verdict(TRUNCATED_THOUGHT, 0.0)
    letter = extract_letter(output, n_options, think_open)
    if letter is None:
        return Verdict("no_answer", 0.0)
    ok = letter == gold.strip().upper()
    return Verdict("correct" if ok else "wrong", float(ok), letter)
