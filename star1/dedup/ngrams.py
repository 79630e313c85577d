"""Word n-gram self-dedup and decontamination (paper §2.1 step 1).

Words are `\\w+` runs of the NFKC-normalised, case-folded text (so punctuation and spacing do not hide a
duplicate). A text shorter than n words contributes its whole word sequence as its one "n-gram".
Self-dedup is greedy in input order: a text is dropped when it shares an n-gram with an earlier *kept* text
(the reference code drops all but an arbitrary one per shared n-gram; keep-first makes it deterministic).

Keys are a stable 64-bit hash (BLAKE2b) of the n-gram, never Python's `hash()`, which is salted per process
(`PYTHONHASHSEED`); and a text's n-grams are tried in text order, so the collision partner that is recorded
(rejects table, `--explain`) is the same in every process: the owner of the text's first indexed n-gram.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def _key(gram: str) -> int:
    return int.from_bytes(hashlib.blake2b(gram.encode("utf-8", "surrogatepass"), digest_size=8).digest())


def ngram_keys(text: str, n: int) -> list[int]:
    """Stable hashes of the distinct word n-grams of `text`, in order of first occurrence."""
    w = words(text)
    if not w:
        return []
    if len(w) <= n:
        return [_key(" ".join(w))]
    return list(dict.fromkeys(_key(" ".join(w[i : i + n])) for i in range(len(w) - n + 1)))


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
        """Owner of the first n-gram of `text` (in text order) already in the index, else None."""
        for k in ngram_keys(text, self.n):
            who = self._owner.get(k)
            if who is not None:
                return who
        return None
