"""Word n-gram self-dedup and decontamination (paper §2.1 step 1).

Words are `\\w+` runs of the NFKC-normalised, case-folded text (so punctuation and spacing do not hide a
duplicate). A text shorter than n words contributes its whole word sequence as its one "n-gram".
Self-dedup is greedy in input order: a text is dropped when it shares an n-gram with an earlier *kept* text
(the reference code drops all but an arbitrary one per shared n-gram; keep-first makes it deterministic).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def ngram_keys(text: str, n: int) -> set[int]:
    """Hashes of the word n-grams of `text` (consistent within one process)."""
    w = words(text)
    if not w:
        return set()
    if len(w) <= n:
        return {hash(" ".join(w))}
    return {hash(" ".join(w[i : i + n])) for i in range(len(w) - n + 1)}


def self_dedup(texts: Sequence[str], n: int) -> dict[int, int]:
    """Greedy keep-first: map each dropped index to the index of the earlier kept text it overlaps."""
    owner: dict[int, int] = {}
    dropped: dict[int, int] = {}
    for i, text in enumerate(texts):
        keys = ngram_keys(text, n)
        hit = next((owner[k] for k in keys if k in owner), None)
        if hit is not None:
            dropped[i] = hit
            continue
        for k in keys:
            owner[k] = i
    return dropped


class NgramIndex:
    """The running 'test pool' of n-grams (eval sets, then each source's survivors) with their owners."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._owner: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._owner)

    def add(self, texts: Iterable[str], owners: Iterable[int]) -> None:
        for text, who in zip(texts, owners, strict=True):
            for k in ngram_keys(text, self.n):
                self._owner.setdefault(k, who)

    def match(self, text: str) -> int | None:
        """Owner of the first n-gram of `text` already in the index, else None."""
        for k in ngram_keys(text, self.n):
            who = self._owner.get(k)
            if who is not None:
                return who
        return None
