"""`star1 train`: fine-tune on the exported dataset (or any STAR-1-format files) as a Ray Train job."""

from __future__ import annotations

from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from star1.cli.common import (
    EXIT_CONFIG,
    ConfigOpt,
    ForceOpt,
    SetOpt,
    app,
    console,
    error_exit,
    load,
    open_store,
)


def describe(snap: dict[str, Any]) -> str:
    last = snap.get("last") or {}
    if not last:
        return f"train (attempt {snap.get('attempts', 0)}, starting workers)"
    mfu = last.get("mfu")
    ckpt = snap.get("registered")
    tps = last["tokens_per_s_per_worker"]
    return (
        f"train loss {last['loss']:.4f} lr {last['lr']:.2e} {tps:.0f} tok/s/worker"
        + (f" MFU {mfu:.1%}" if mfu is not None else "")
        + (f" ckpt {ckpt}" if ckpt else "")
    )


@app.command()
def train(config: ConfigOpt = None, set_: SetOpt = None, force: ForceOpt = False) -> None:
    """Fine-tune a model on STAR-1-format data (Ray Train); a rerun with the same run name resumes."""
    from star1.train.errors import TrainFailed, TrainSetupError
    from star1.train.run import run_train

    cfg = load(config, set_)
    if cfg.train is None:
        console.print("[red]config error:[/red] no 'train' section")
        raise typer.Exit(2)
    store = open_store(cfg)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("train (preparing)", total=None)

        def progress(snap: dict[str, Any]) -> None:
            bar.update(task, completed=snap["step"], total=snap["total"], description=describe(snap))

        try:
            result = run_train(cfg, store, force=force, log=lambda m: console.print(m, highlight=False),
                               progress=progress)  # fmt: skip
        except TrainSetupError as e:
            console.print(f"[red]error:[/red] {e}")
            raise typer.Exit(EXIT_CONFIG) from None
        except Exception as e:  # the GPUs never came, a node was lost: exit 7; anything else as it is
            if (code := error_exit(e, (TrainFailed,), "failed")) is None:
                raise
            raise code from None
    print(result.url("model"))
