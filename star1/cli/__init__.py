"""`star1` command line: one verb per stage. Configuration errors exit with code 2 before any work starts.

Each area registers its commands on the shared app in a module of its own (`data`, `train`, `report`, …).
"""

from __future__ import annotations

import sys

from star1.cli import data, nightly, report, submit, train  # noqa: F401  (each registers its commands)
from star1.cli import eval as _eval  # noqa: F401  (registers the eval commands)
from star1.cli.common import app

__all__ = ["app", "main"]


@app.command()
def version() -> None:
    """Print the star1 version."""
    from star1 import __version__

    print(__version__)


def main() -> None:  # pragma: no cover
    sys.exit(app())
