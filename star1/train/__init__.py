"""Supervised fine-tuning on STAR-1-format data as a Ray Train job (`star1 train`).

`run_train(cfg, store)` validates on the driver and runs a `TorchTrainer` (DDP or DeepSpeed ZeRO-3);
`trained_model(store, run)` gives the exported Hugging Face folder of a finished run. Layout and usage:
docs/train.md. Importing this package imports neither torch nor Ray.
"""

from star1.train.layout import RunLayout, trained_model

__all__ = ["RunLayout", "run_train", "trained_model"]


def __getattr__(name: str):
    if name == "run_train":
        from star1.train.run import run_train

        return run_train
    raise AttributeError(name)
