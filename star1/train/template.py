"""The chat template used for training: the model's own, with the R1-distill clause that strips reasoning
from assistant turns removed (paper §7).

DeepSeek-R1-Distill templates carry `{% if '</think>' in content %}{% set content =
content.split('</think>')[-1] %}{% endif %}`: rendered as is, an assistant turn loses everything up to
`</think>`, so a model would be trained on answers without their reasoning. The clause is detected (with or
without the surrounding `if`, with or without whitespace control) and removed, with a warning. Whatever the
template, `check_keeps_reasoning` renders a probe conversation and refuses a template that still drops the
reasoning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_Q = r"""['"]</think>['"]"""


def _tag(body: str) -> str:
    """A Jinja statement `{% body %}`, with or without whitespace control."""
    return r"\{%-?\s*" + body + r"\s*-?%\}"


_SPLIT = (
    r"(\w+)\s*=\s*\w+(?:\.\w+|\[['\"]\w+['\"]\])*\.split\(\s*"
    + _Q
    + r"\s*\)\s*\[\s*-1\s*\](?:\.\w+\([^)]*\))*"
)
# `{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}`
IF_CLAUSE = re.compile(
    _tag(r"if\s+" + _Q + r"\s+in\s+[\w.\[\]'\"]+")
    + r"\s*"
    + _tag(r"set\s+" + _SPLIT)
    + r"\s*"
    + _tag(r"endif")
)
# the same without the `if`: `{% set content = content.split('</think>')[-1] %}`
SET_CLAUSE = re.compile(_tag(r"set\s+" + _SPLIT))
PROBE_REASONING = "star1 probe reasoning 7f3a"
PROBE_ANSWER = "star1 probe answer 7f3a"


class TemplateError(ValueError):
    """A chat template that cannot be used for training with reasoning."""


@dataclass(frozen=True)
class PatchedTemplate:
    template: str
    removed: list[str]  # the clauses removed (empty: none found)

    @property
    def patched(self) -> bool:
        return bool(self.removed)


def remove_think_clause(template: str) -> PatchedTemplate:
    """The template without any clause that splits assistant content on `</think>`."""
    removed: list[str] = []
    for pattern in (IF_CLAUSE, SET_CLAUSE):
        removed += [m.group(0) for m in pattern.finditer(template)]
        template = pattern.sub("", template)
    return PatchedTemplate(template, removed)


def has_think_split(template: str) -> bool:
    return re.search(r"split\(\s*" + _Q, template) is not None


def check_keeps_reasoning(render: object, target: str) -> None:
    """`render(target) -> text` must contain the assistant target verbatim, once (reasoning included)."""
    text = render(target)  # type: ignore[operator]
    if text.count(target) != 1 or text.count(PROBE_REASONING) > 1:
        raise TemplateError(
            "the chat template does not keep the assistant turn verbatim (it drops or rewrites the "
            "reasoning); give train.format.chat_template, a Jinja file that renders assistant content as is"
        )
