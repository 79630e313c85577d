"""What each model-driven stage asks and how it reads the answer. Plain objects, no Ray, no I/O.

A task turns a row into an `Ask` (or raises `Reject` to skip it with a reason) and parses the model's text
into new fields (raising `ParseError` to trigger a bounded re-ask, or `Reject`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from star1 import prompts
from star1.llm.client import Completion
from star1.llm.parse import ParseError, parse_categories, parse_scores, split_think
from star1.policies import CATEGORIES, OTHER, policies_for, policies_hash
from star1.sources.load import prompt_id
from star1.stages.select_rows import SCORE_KEYS

BENIGN_SOURCE = "benign_rewrite"
BENIGN_KEYS = ("Content_Safety_Compliance", "Quality_of_Thinking_Process", "Compliance_Degree")


class Reject(Exception):
    """Skip a row with a reason (a control-flow signal, not a failure)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass
class Ask:
    messages: list[dict[str, str]]
    schema: dict[str, Any] | None = None  # JSON schema for structured output, when the task has one
    require_stop: bool = False  # reject completions cut off by max_tokens


def reasoning_response(done: Completion) -> dict[str, Any]:
    """`<think>\n…\n</think>\n\nanswer` from the content (inline thinking, as R1 through NIM returns it) or
    rebuilt from the reasoning field a server returned beside it (DeepSeek's API, vLLM's reasoning parsers),
    with which form was used."""
    text, source = done.text, "inline"
    if done.reasoning and "<think>" not in text:
        text, source = f"<think>\n{done.reasoning.strip()}\n</think>\n\n{text.strip()}", "reasoning_field"
    try:
        split_think(text)
    except ParseError as e:
        raise Reject("no_think_block", str(e)) from None
    return {"response": text, "reasoning_source": source}


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _score_schema(keys: tuple[str, ...], lo: int, hi: int) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(keys),
        "properties": {k: {"type": "integer", "minimum": lo, "maximum": hi} for k in keys},
    }


@dataclass
class Task:
    name: ClassVar[str]
    role: ClassVar[str]
    templates: ClassVar[tuple[str, ...]]
    format_hint: ClassVar[str] = "the requested format"
    uses_policies: ClassVar[bool] = False
    options: dict[str, Any] = field(default_factory=dict)

    def template_hash(self) -> str:
        extra = policies_hash() if self.uses_policies else ""
        return prompts.template_hash(*self.templates) + extra

    def ask(self, row: dict[str, Any]) -> Ask:  # pragma: no cover - abstract
        raise NotImplementedError

    def parse(self, row: dict[str, Any], done: Completion) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError


class ClassifyTask(Task):
    name, role, templates = "classify", "classifier", ("classify", "definitions")
    format_hint = 'a JSON object {"categories": [...]} with category names copied exactly'
    SCHEMA: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["categories"],
        "properties": {
            "categories": {
                "type": "array",
                "minItems": 1,
                "maxItems": 8,
                "items": {"type": "string", "enum": [*CATEGORIES, OTHER]},
            }
        },
    }

    def ask(self, row: dict[str, Any]) -> Ask:
        text = prompts.render(
            "classify",
            instruction=row["prompt"],
            definitions=prompts.template("definitions").template.strip(),
        )
        return Ask(_user(text), self.SCHEMA)

    def parse(self, row: dict[str, Any], done: Completion) -> dict[str, Any]:
        strip = self.options.get("other", "drop") == "strip"
        return {"category": parse_categories(done.text, list(CATEGORIES), OTHER, strip_other=strip)}


class GenerateTask(Task):
    name, role, templates, uses_policies = "generate", "generator", ("generate",), True

    def ask(self, row: dict[str, Any]) -> Ask:
        if OTHER in row["category"] and self.options.get("other", "drop") == "drop":
            raise Reject("other_category", "labelled 'Other': the paper drops such items (curate.other)")
        cats = [c for c in row["category"] if c != OTHER]
        if not cats:
            raise Reject("only_other", "labelled only 'Other': no policy to reason with")
        return Ask(
            _user(prompts.render("generate", instruction=row["prompt"], policies=policies_for(cats))),
            require_stop=True,
        )

    def parse(self, row: dict[str, Any], done: Completion) -> dict[str, Any]:
        return reasoning_response(done)


class ScoreTask(Task):
    name, role, templates, uses_policies = "score", "judge", ("score",), True
    format_hint = "only the JSON object with the three integer scores from 0 to 10"

    def ask(self, row: dict[str, Any]) -> Ask:
        thinking, answer = split_think(row["response"])
        text = prompts.render(
            "score",
            instruction=row["prompt"],
            thinking=thinking,
            answer=answer,
            policies=policies_for(row["category"]),
        )
        return Ask(_user(text), _score_schema(SCORE_KEYS, 0, 10))

    def parse(self, row: dict[str, Any], done: Completion) -> dict[str, Any]:
        return {"score": parse_scores(done.text, list(SCORE_KEYS), 0, 10)}


class RewriteTask(Task):
    name, role, templates = "benign_rewrite", "rewriter", ("rewrite",)

    def ask(self, row: dict[str, Any]) -> Ask:
        return Ask(_user(prompts.render("rewrite", instruction=row["prompt"])), require_stop=True)

    def parse(self, row: dict[str, Any], done: Completion) -> dict[str, Any]:
        out = done.text.strip().strip('"').strip()
        if not out:
            raise ParseError("empty rewrite")
        meta = json.dumps(
            {"original_id": row["id"], "original_source": row["source"], "original_prompt": row["prompt"]},
            ensure_ascii=False,
        )
        return {
            "id": prompt_id(BENIGN_SOURCE, out),
            "source": BENIGN_SOURCE,
            "prompt": out,
            "source_meta": meta,
        }


class BenignAnswerTask(Task):
    """The raw benign question, no policies (paper §4.3)."""

    name, role, templates = "benign_generate", "generator", ()

    def ask(self, row: dict[str, Any]) -> Ask:
        return Ask(_user(row["prompt"]), require_stop=True)

    def parse(self, row: dict[str, Any], done: Completion) -> dict[str, Any]:
        return reasoning_response(done)


class BenignScoreTask(Task):
    name, role, templates = "benign_score", "judge", ("benign_score",)
    format_hint = "only the JSON object with the three integer scores from 1 to 5"

    def ask(self, row: dict[str, Any]) -> Ask:
        thinking, answer = split_think(row["response"])
        text = prompts.render("benign_score", instruction=row["prompt"], thinking=thinking, answer=answer)
        return Ask(_user(text), _score_schema(BENIGN_KEYS, 1, 5))

    def parse(self, row: dict[str, Any], done: Completion) -> dict[str, Any]:
        scores = parse_scores(done.text, list(BENIGN_KEYS), 1, 5)
        if min(scores.values()) < self.options.get("threshold", 5):  # paper §4.3: keep only all-5 samples
            raise Reject("benign_below_5", json.dumps(scores))
        return {"benign_score": scores}


TASKS: dict[str, type[Task]] = {
    t.name: t for t in (ClassifyTask, GenerateTask, ScoreTask, RewriteTask, BenignAnswerTask, BenignScoreTask)
}
