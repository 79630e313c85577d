"""Benchmark constructions that are more than a filter: records in, records out (with added fields).

Each returns (records, dropped) where `dropped` counts the records left out, by reason.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

LETTERS = "ABCDEFGHIJKLMNOP"

# The 11 OpenAI-moderation categories the WildChat toxic set is balanced over (recipe §8.1).
WILDCHAT_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "self-harm",
    "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence", "violence/graphic",
)  # fmt: skip

Records = list[dict[str, Any]]


class TransformError(ValueError):
    """A record the construction cannot read (names the field)."""


def _truthy(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.strip().lower() == "true")


def wildchat_toxic(records: Records, per_category: int = 100) -> tuple[Records, Counter[str]]:
    """Toxic, English, single-turn conversations whose last moderation entry is flagged; label = argmax
    moderation category; the top `per_category` per label by that score (ties: file order)."""
    dropped: Counter[str] = Counter()
    by_label: dict[str, list[tuple[float, int, dict[str, Any]]]] = {c: [] for c in WILDCHAT_CATEGORIES}
    for i, rec in enumerate(records):
        for key in ("toxic", "turn", "language", "conversation", "openai_moderation"):
            if key not in rec:
                raise TransformError(f"wildchat_toxic: record {i + 1} has no field '{key}'")
        if not _truthy(rec["toxic"]):
            dropped["not_toxic"] += 1
            continue
        if int(rec["turn"]) != 1:
            dropped["multi_turn"] += 1
            continue
        if str(rec["language"]).lower() != "english":
            dropped["not_english"] += 1
            continue
        moderation = rec["openai_moderation"] or []
        if not moderation or not moderation[-1].get("flagged"):
            dropped["not_flagged"] += 1
            continue
        scores = moderation[-1].get("category_scores") or {}
        label = max(WILDCHAT_CATEGORIES, key=lambda c: float(scores.get(c) or 0.0))
        first = next((t.get("content") for t in rec["conversation"] if t.get("role") == "user"), None)
        if not first:
            dropped["no_user_turn"] += 1
            continue
        by_label[label].append(
            (float(scores.get(label) or 0.0), i, {**rec, "first_turn": first, "moderation_category": label})
        )
    out: Records = []
    for label in WILDCHAT_CATEGORIES:
        ranked = sorted(by_label[label], key=lambda t: (-t[0], t[1]))
        out.extend(r for _, _, r in ranked[:per_category])
        dropped["below_top_per_category"] += max(0, len(ranked) - per_category)
    return out, dropped


def _options_text(options: list[Any]) -> str:
    return "\n".join(f"{LETTERS[i]}) {o}" for i, o in enumerate(options))


def mcq_shuffle(
    records: Records, correct: str, incorrect: list[str], seed: int = 0
) -> tuple[Records, Counter[str]]:
    """Permute the options of each question with one seeded RNG drawn row by row in file order (as
    simple-evals does for GPQA); adds `options` (lettered text), `answer_letter`, `permutation`."""
    rng = random.Random(seed)
    out: Records = []
    for i, rec in enumerate(records):
        missing = [c for c in (correct, *incorrect) if c not in rec]
        if missing:
            raise TransformError(f"mcq_shuffle: record {i + 1} has no field(s) {missing}")
        choices = [rec[correct], *(rec[c] for c in incorrect)]
        perm = rng.sample(range(len(choices)), len(choices))
        shuffled = [choices[j] for j in perm]
        out.append(
            {
                **rec,
                "options": _options_text([str(c).strip() for c in shuffled]),
                "answer_letter": LETTERS[perm.index(0)],
                "permutation": perm,
            }
        )
    return out, Counter()


def wildchat_prefilter(batch: pa.Table, offset: int = 0) -> tuple[pa.Table, Counter[str]]:
    """`wildchat_toxic`'s cheap tests (toxic, single-turn, English), column-wise on an Arrow batch, so the
    ~97% of WildChat-1M they drop never become Python objects. Same tests in the same order, so the drop
    counts and the result are those of `wildchat_toxic` alone; a column of another type than expected is
    left to the row code."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for key in ("toxic", "turn", "language", "conversation", "openai_moderation"):
        if key not in batch.column_names:
            raise TransformError(f"wildchat_toxic: record {offset + 1} has no field '{key}'")
    toxic, turn, lang = batch["toxic"], batch["turn"], batch["language"]
    if not (pa.types.is_integer(turn.type) and pa.types.is_string(lang.type)):
        return batch, Counter()
    if pa.types.is_boolean(toxic.type):
        is_toxic = pc.fill_null(toxic, False)
    elif pa.types.is_string(toxic.type):
        is_toxic = pc.fill_null(pc.equal(pc.utf8_lower(pc.utf8_trim_whitespace(toxic)), "true"), False)
    else:
        return batch, Counter()
    single = pc.fill_null(pc.equal(turn, 1), True)  # a null turn reaches the row code, which fails on it
    english = pc.fill_null(pc.equal(pc.utf8_lower(lang), "english"), False)

    def count(mask: Any) -> int:
        return int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)

    dropped: Counter[str] = Counter()
    dropped["not_toxic"] += count(pc.invert(is_toxic))
    dropped["multi_turn"] += count(pc.and_(is_toxic, pc.invert(single)))
    dropped["not_english"] += count(pc.and_(pc.and_(is_toxic, single), pc.invert(english)))
    return batch.filter(pc.and_(pc.and_(is_toxic, single), english)), +dropped


def mcq_list(records: Records, options: str = "options") -> tuple[Records, Counter[str]]:
    """A list-of-options field → lettered `options_text` (MMLU-Pro: up to 10 options, A–J)."""
    out: Records = []
    for i, rec in enumerate(records):
        opts = rec.get(options)
        if not isinstance(opts, list | tuple) or not opts:
            raise TransformError(f"mcq_list: record {i + 1}: '{options}' is not a non-empty list")
        out.append({**rec, "options_text": _options_text(list(opts))})
    return out, Counter()


TRANSFORMS: dict[str, Callable[..., tuple[Records, Counter[str]]]] = {
    "wildchat_toxic": wildchat_toxic,
    "mcq_shuffle": mcq_shuffle,
    "mcq_list": mcq_list,
}

# column-wise early filters a transform may have: (Arrow batch, rows before it) → (kept rows, dropped counts)
PREFILTERS: dict[str, Callable[[pa.Table, int], tuple[pa.Table, Counter[str]]]] = {
    "wildchat_toxic": wildchat_prefilter,
}
