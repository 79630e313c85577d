"""Ray job entrypoint for the whole curation pipeline (collect → … → export).

ray job submit --address http://HEAD:8265 --working-dir . -- python jobs/pipeline.py --config run.yaml
"""

from __future__ import annotations

import sys

from star1.cli import app

if __name__ == "__main__":
    sys.exit(app(["pipeline", *sys.argv[1:]]))
