"""Where a training run's outputs live in the store, and how a reader (e.g. `star1 eval`) finds a finished
model:

    train/<run>/manifest.json          the run's manifest (stage "train/<run>"), written last
    train/<run>/model/                 the fine-tuned model in Hugging Face format (safetensors, config,
                                       tokenizer, chat_template.jinja that keeps reasoning)
    train/<run>/metrics.json           every logged step (loss, lr, tokens/s, MFU) and restart events
    train/<run>/data/tokens.parquet    the tokenized training set the workers read
    train/checkpoints/<run>/           Ray Train's run folder: checkpoint_NNNNNN/, its snapshot
                                       (`train.checkpoint.storage_path` moves it elsewhere)
"""

from __future__ import annotations

from dataclasses import dataclass

from star1.config import CHECKPOINTS_DIR
from star1.manifest import read_manifest
from star1.stage_run import IncompleteInput
from star1.store import Store

CHECKPOINTS_ROOT = f"train/{CHECKPOINTS_DIR}"  # Ray Train's storage_path unless train.checkpoint.storage_path


@dataclass(frozen=True)
class RunLayout:
    run: str

    @property
    def stage(self) -> str:
        return f"train/{self.run}"

    @property
    def model(self) -> str:
        return f"train/{self.run}/model"

    @property
    def metrics(self) -> str:
        return f"train/{self.run}/metrics.json"

    @property
    def tokens(self) -> str:
        return f"train/{self.run}/data/tokens.parquet"


def trained_model(store: Store, run: str) -> str:
    """URI of the model folder of a finished run; raise when the run is missing or did not finish."""
    layout = RunLayout(run)
    m = read_manifest(store, layout.stage)
    if m is None:
        raise FileNotFoundError(f"no training run '{run}' in {store.uri} (run `star1 train` first)")
    if m.status != "complete":
        raise IncompleteInput(f"training run '{run}' did not finish; rerun `star1 train` to resume it")
    return store.url(layout.model)
