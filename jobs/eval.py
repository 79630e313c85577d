"""Ray job entrypoint for an evaluation run (vLLM engines on the cluster's GPUs with `backend: ray`).

ray job submit --address http://HEAD:8265 --working-dir . -- python jobs/eval.py --config eval.yaml \
    --set eval.model.path=s3://models/star1-7b --run-name star1-7b
"""

from __future__ import annotations

import sys

from star1.cli import app

if __name__ == "__main__":
    sys.exit(app(["eval", *sys.argv[1:]]))
