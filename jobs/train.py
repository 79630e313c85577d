"""Ray job entrypoint for fine-tuning (`star1 train`): a TorchTrainer on the cluster the job runs in.

ray job submit --address http://HEAD:8265 --working-dir . -- python jobs/train.py --config run.yaml
Resubmitting with the same train.run_name resumes from the run's last checkpoint.
"""

from __future__ import annotations

import sys

from star1.cli import app

if __name__ == "__main__":
    sys.exit(app(["train", *sys.argv[1:]]))
