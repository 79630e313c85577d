"""What every tracker backend implements, and the helpers they share. Backends are called from one
background thread each (`sender.Sender`), never from a training step."""

from __future__ import annotations

import re
from typing import Literal, Protocol

Status = Literal["FINISHED", "FAILED", "KILLED"]
STATUSES: tuple[str, ...] = ("FINISHED", "FAILED", "KILLED")

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_SECRET_QUERY = re.compile(r"(?i)([?&](?:token|key|password|secret|sig|signature)[^=&]*=)[^&\s]+")


def redact(text: str) -> str:
    """`text` with credentials in URLs (user:password@, ?token=…) replaced by `***`."""
    return _SECRET_QUERY.sub(r"\1***", _USERINFO.sub(r"\g<scheme>***@", text))


class Backend(Protocol):
    """One tracker. `where` names it in messages (no secrets); `start` opens a new run or reopens
    `resume_id` and returns the tracker's run id."""

    name: str
    where: str

    def start(self, resume_id: str | None) -> str: ...

    def logged_steps(self) -> dict[str, int]:
        """On a resumed run: the last step the tracker holds per metric key, where it can tell ({})."""
        ...

    def resume_at(self, step: int) -> None:
        """A resumed run's next metric step (after everything `logged_steps` and the run's record hold)."""
        ...

    def log_params(self, params: dict[str, str]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def log_link(self, name: str, uri: str) -> None: ...

    def log_text(self, name: str, text: str) -> None: ...

    def sync(self) -> None:
        """Make what was logged durable/visible (flush files, upload them); called now and then."""
        ...

    def end(self, status: Status) -> None: ...
