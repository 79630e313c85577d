"""star1's exit codes: one table for every `star1` command, every `jobs/*.py` entrypoint and the job wrapper
(`star1.deploy.runlog`), so that a code means the same thing wherever it is read — a terminal, a CI step, a
Ray job's status, a KubeRay RayJob, a CronJob's failed-job alert.

| code | name | meaning | retried in place by the job wrapper |
|---|---|---|---|
| 0 | OK | done, up to date, or (compare / nightly) no significant regression | — |
| 1 | ERROR | an error no other code covers (a bug, a failed training run, an unreadable input) | no |
| 2 | CONFIG | bad config or input, found before any work: the message names the field | no |
| 3 | REGRESSION | `compare` / `nightly`: a significant regression | no |
| 4 | INCOMPARABLE | `compare` / `nightly`: the runs cannot be compared (the differing field is named) | no |
| 5 | INCOMPLETE | a stage or eval ended incomplete (provider outage, failed rows); a rerun resumes | yes |
| 6 | CHECKS_FAILED | a stage's output failed its checks (empty, mostly rejected) | no |
| 7 | INFRA | infrastructure: the GPUs asked for never appeared, a Ray node or worker was lost | yes |
| 8 | RECORD_NOT_SHIPPED | the job wrapper could not write the driver log / run record to the store | no |
| 130, 143 | — | interrupted (Ctrl-C) / stopped (SIGTERM: `ray job stop`, a deadline) | no |

Codes 3 and 4 keep what `star1 compare` has always returned. Only INCOMPLETE and INFRA are worth running again
unchanged: every stage resumes from the store, so a retry redoes only what did not finish. A config error, a
regression or a failed check comes back the same however often it is retried.
"""

from __future__ import annotations

import signal
from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    ERROR = 1
    CONFIG = 2
    REGRESSION = 3
    INCOMPARABLE = 4
    INCOMPLETE = 5
    CHECKS_FAILED = 6
    INFRA = 7
    RECORD_NOT_SHIPPED = 8


MEANING: dict[int, str] = {
    Exit.OK: "succeeded",
    Exit.ERROR: "error",
    Exit.CONFIG: "config error",
    Exit.REGRESSION: "regression",
    Exit.INCOMPARABLE: "incomparable runs",
    Exit.INCOMPLETE: "incomplete (a rerun resumes)",
    Exit.CHECKS_FAILED: "failed its checks",
    Exit.INFRA: "infrastructure failure",
    Exit.RECORD_NOT_SHIPPED: "run record not shipped",
}
RETRYABLE = frozenset({Exit.INCOMPLETE, Exit.INFRA})


def meaning(code: int) -> str:
    """What an exit code (or a negative Popen return code: killed by a signal) says, in a few words."""
    if code in MEANING:
        return MEANING[code]
    sig = -code if code < 0 else code - 128 if 128 < code < 160 else None
    if sig is not None:
        try:
            return f"stopped by {signal.Signals(sig).name}"
        except ValueError:
            return f"stopped by signal {sig}"
    return f"exit {code} (not a star1 code)"


def retryable(code: int) -> bool:
    """Whether running the same command again can succeed: an incomplete stage, an infrastructure failure."""
    return code in RETRYABLE
