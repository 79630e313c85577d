"""The 8 STAR-1 safety categories and their policies (markdown beside this module, hashed into manifests)."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

HERE = Path(__file__).parent
OTHER = "Other"
# Exact label strings, in the paper's order, with the policy file of each.
CATEGORIES: dict[str, str] = {
    "Harassment / Hate / Discrimination": "harassment.md",
    "Sexual / Adult": "sexual.md",
    "Violence / Physical Harm": "violence.md",
    "Self-Harm": "self_harm.md",
    "Illicit / Criminal Behavior": "illicit.md",
    "Misinformation / Disinformation": "misinformation.md",
    "Privacy / Personal Data": "privacy.md",
    "Intellectual Property": "intellectual_property.md",
}
SEPARATOR = "\n---\n"


@cache
def policy(category: str) -> str:
    if category not in CATEGORIES:
        raise KeyError(f"no policy for category {category!r} (known: {list(CATEGORIES)})")
    return (HERE / CATEGORIES[category]).read_text(encoding="utf-8").strip()


def policies_for(categories: list[str]) -> str:
    """The policies of `categories` in label order (first label first), joined by `---`; 'Other' has none."""
    return SEPARATOR.join(policy(c) for c in categories if c != OTHER)


def policies_hash() -> str:
    h = hashlib.sha256()
    for name in CATEGORIES.values():
        h.update((HERE / name).read_bytes())
    return h.hexdigest()[:16]
