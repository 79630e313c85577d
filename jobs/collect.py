"""Ray job entrypoint for the collection stage (what a RayJob's `entrypoint` or `ray job submit` runs).

    ray job submit --address http://HEAD:8265 --working-dir . -- python jobs/collect.py --config run.yaml

Inside a Ray job `RAY_ADDRESS` is set, so star1 joins the cluster instead of starting a local one.
"""

from __future__ import annotations

import sys

from star1.cli import app

if __name__ == "__main__":
    sys.exit(app(["collect", *sys.argv[1:]]))
