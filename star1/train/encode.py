"""Records → token ids with the loss span, through the model's (patched) chat template (paper §7).

Target: `<think>\\n{reasoning}\\n</think>\\n\\n{answer}` (`reasoning: keep`),
`<think>\\n\\n</think>\\n\\n{answer}` (`empty`, the "w/o think" ablation on reasoning models) or
`{answer}` (`drop`, instruct models). The conversation is rendered whole; the text before the target is the
prompt, the target and whatever the template closes the turn with (end-of-turn token) is the completion.
They are tokenized separately (what the model sees at inference is the prompt tokenized alone) and the loss
covers the completion tokens only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from star1.config import FormatConfig
from star1.train.data import Record
from star1.train.template import PROBE_ANSWER, PROBE_REASONING, TemplateError, check_keeps_reasoning

TOKENS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("input_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("n_prompt", pa.int32(), nullable=False),  # loss on input_ids[n_prompt:]
        pa.field("truncated", pa.bool_(), nullable=False),
    ]
)


def target_text(reasoning: str | None, answer: str, mode: str) -> str:
    if mode == "drop":
        return answer
    if mode == "empty" or reasoning is None:
        return f"<think>\n\n</think>\n\n{answer}"
    return f"<think>\n{reasoning}\n</think>\n\n{answer}"


@dataclass
class EncodeStats:
    records: int = 0
    samples: int = 0
    truncated: int = 0
    rejected: Counter = field(default_factory=Counter)
    tokens: int = 0
    label_tokens: int = 0
    lengths: list[int] = field(default_factory=list)

    def as_counts(self) -> dict[str, Any]:
        ls = sorted(self.lengths)

        def pct(q: float) -> int:
            return ls[min(len(ls) - 1, int(q * len(ls)))] if ls else 0

        return {
            "in": self.records,
            "out": self.samples,
            "rejected": dict(self.rejected),
            "truncated": self.truncated,
            "tokens": self.tokens,
            "label_tokens": self.label_tokens,
            "length": {"p50": pct(0.5), "p95": pct(0.95), "max": ls[-1] if ls else 0},
        }


class Formatter:
    """Renders and tokenizes records for one tokenizer + template + format settings."""

    def __init__(self, tokenizer: Any, template: str, fmt: FormatConfig) -> None:
        self.tok, self.template, self.fmt = tokenizer, template, fmt
        probe = target_text(PROBE_REASONING, PROBE_ANSWER, fmt.reasoning)
        check_keeps_reasoning(lambda t: self.render("probe question", t), probe)

    def messages(self, question: str) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.fmt.system_prompt}] if self.fmt.system_prompt else []
        return [*system, {"role": "user", "content": question}]

    def render(self, question: str, target: str) -> str:
        msgs = [*self.messages(question), {"role": "assistant", "content": target}]
        return self.tok.apply_chat_template(msgs, chat_template=self.template, tokenize=False)

    def split(self, question: str, target: str) -> tuple[str, str]:
        """(prompt text, completion text) of one conversation."""
        text = self.render(question, target)
        at = text.rfind(target)  # the assistant turn is the last thing rendered
        if at < 0:
            raise TemplateError("the chat template rewrote an assistant turn; cannot locate the target")
        return text[:at], text[at:]

    def encode(self, records: list[Record]) -> tuple[pa.Table, EncodeStats]:
        """The TOKENS table of the usable samples and the counts (truncated, rejected by reason)."""
        stats = EncodeStats(records=len(records))
        pairs = [
            self.split(r.question, target_text(r.reasoning, r.answer, self.fmt.reasoning)) for r in records
        ]
        prompts = self.tok([p for p, _ in pairs], add_special_tokens=False)["input_ids"]
        completions = self.tok([c for _, c in pairs], add_special_tokens=False)["input_ids"]
        rows: dict[str, list] = {f.name: [] for f in TOKENS}
        limit = self.fmt.max_length
        for rec, p_ids, c_ids in zip(records, prompts, completions, strict=True):
            ids, n_prompt, truncated = list(p_ids) + list(c_ids), len(p_ids), False
            if len(ids) > limit:
                if self.fmt.truncation == "drop":
                    stats.rejected["too_long"] += 1
                    continue
                truncated = True
                if self.fmt.truncation == "left":  # paper: keep the last max_length tokens
                    cut = len(ids) - limit
                    ids, n_prompt = ids[cut:], max(0, n_prompt - cut)
                else:
                    ids = ids[:limit]
            if len(ids) - max(n_prompt, 1) <= 0:
                stats.rejected["no_completion_tokens"] += 1
                continue
            stats.samples += 1
            stats.truncated += truncated
            stats.tokens += len(ids)
            stats.label_tokens += len(ids) - max(n_prompt, 1)
            stats.lengths.append(len(ids))
            for k, v in (("id", rec.id), ("source", rec.source), ("input_ids", ids),
                         ("n_prompt", n_prompt), ("truncated", truncated)):  # fmt: skip
                rows[k].append(v)
        return pa.Table.from_pydict(rows, schema=TOKENS), stats
