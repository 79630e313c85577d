"""Ray job entrypoint for the nightly regression run: evaluate tonight's model, compare it with the baseline,
record verdict, comparison and history in the store; the exit code says which outcome (star1/exits.py).

ray job submit --address http://HEAD:8265 --working-dir . -- python jobs/nightly.py --config nightly.yaml \
    --baseline star1-7b
"""

from __future__ import annotations

import sys

from star1.cli import app

if __name__ == "__main__":
    sys.exit(app(["nightly", *sys.argv[1:]]))
