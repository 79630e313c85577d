"""Data commands: `collect`, one verb per curation stage, `benign`, `pipeline`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from star1.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_INCOMPLETE,
    ConfigOpt,
    ForceOpt,
    SetOpt,
    app,
    console,
    error_exit,
    load,
    open_store,
)
from star1.config import ConfigError
from star1.sources.readers import SourceError


@app.command()
def collect(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    force: ForceOpt = False,
    explain: Annotated[
        str | None, typer.Option("--explain", help="show why prompt ID was kept or dropped")
    ] = None,
) -> None:
    """Build the deduplicated, decontaminated prompt pool from the configured sources."""
    cfg = load(config, set_)
    store = open_store(cfg)
    if explain:
        from star1.stages.collect import explain as explain_row

        try:
            found = explain_row(store, explain)
        except FileNotFoundError as e:
            console.print(f"[red]{e}[/red]")
            raise typer.Exit(1) from None
        print(json.dumps(found, indent=2, ensure_ascii=False, default=str))
        if not any(found[k] for k in ("kept", "rejected", "eval")):
            raise typer.Exit(1)
        return
    if cfg.collect is None:
        console.print("[red]config error:[/red] no 'collect' section")
        raise typer.Exit(2)

    from star1.stages.collect import run_collect

    console.print(f"collect → {store.uri}")
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, int] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done, total=total)

        try:
            result = run_collect(
                cfg,
                store,
                force=force,
                use_ray=cfg.ray.enabled,
                log=lambda m: console.print(m, highlight=False),
                progress=progress,
            )
        except ConfigError as e:  # an unknown source, a name both source and eval set, …
            console.print(f"[red]config error:[/red] {e}")
            raise typer.Exit(EXIT_CONFIG) from None
        except SourceError as e:
            console.print(f"[red]error:[/red] {e}")
            raise typer.Exit(1) from None
    c = result.manifest.counts["total"]
    state = "up to date" if result.skipped else "done"
    console.print(f"[green]{state}[/green]: {c['read']} in, {c['kept']} kept, {c['rejected']} rejected")
    print(result.url("pool"))


def _run_stages(
    names: list[str], config: Path | None, set_: list[str] | None, force: bool, accept_failures: bool = False
) -> dict:
    from star1.llm.client import LLMCallError
    from star1.pipeline import run_steps
    from star1.stage_run import StageFailed, StageIncomplete

    cfg = load(config, [*(set_ or []), *(["curate.accept_failures=1.0"] if accept_failures else [])])
    store = open_store(cfg)
    try:
        return run_steps(
            names, cfg, store, force, cfg.ray.enabled, lambda m: console.print(m, highlight=False)
        )
    except StageIncomplete as e:
        console.print(f"[yellow]incomplete:[/yellow] {e}")
        raise typer.Exit(EXIT_INCOMPLETE) from None
    except StageFailed as e:
        console.print(f"[red]failed:[/red] {e}")
        raise typer.Exit(EXIT_FAILED) from None
    except ConfigError as e:  # an unconfigured role, an unknown source, a training setup error, …
        console.print(f"[red]config error:[/red] {e}")
        raise typer.Exit(EXIT_CONFIG) from None
    except Exception as e:  # Ray's own errors (a node lost, a worker killed) are no RuntimeError: exit 7
        expected = (SourceError, FileNotFoundError, LLMCallError, RuntimeError, TimeoutError)
        if (code := error_exit(e, expected)) is None:
            raise
        raise code from None


AcceptOpt = Annotated[
    bool,
    typer.Option(
        "--accept-failures", help="record rows whose calls failed (outages, limits) as rejects and finish"
    ),
]


def _stage_command(name: str, doc: str) -> None:
    def command(
        config: ConfigOpt = None, set_: SetOpt = None, force: ForceOpt = False, accept: AcceptOpt = False
    ) -> None:
        result = _run_stages([name], config, set_, force, accept)[name]
        print(result.url())

    command.__doc__ = doc
    app.command(name=name.replace("_", "-"))(command)


_stage_command("classify", "Label each pooled prompt with its safety categories (multi-label, ordered).")
_stage_command("generate", "Generate policy-grounded <think> reasoning + answer for each labelled prompt.")
_stage_command("score", "Judge each sample on safety, policy relevance and reasoning accuracy (0-10).")
_stage_command("select", "Keep all-top-score samples and prune to N for source/category diversity.")
_stage_command("export", "Write STAR-1-format JSON/Parquet and a dataset card.")


@app.command()
def benign(
    config: ConfigOpt = None, set_: SetOpt = None, force: ForceOpt = False, accept: AcceptOpt = False
) -> None:
    """Benign add-on: rewrite selected prompts into harmless look-alikes, answer, judge (keep all-5)."""
    from star1.stages.runner import BENIGN

    print(_run_stages(list(BENIGN), config, set_, force, accept)["benign_score"].url())


@app.command()
def pipeline(
    config: ConfigOpt = None, set_: SetOpt = None, force: ForceOpt = False, accept: AcceptOpt = False
) -> None:
    """Run every stage in order, skipping those whose manifests are current; stop at the first stage that
    is incomplete or fails its checks (exit 5 / 6)."""
    from star1.pipeline import step_names

    cfg = load(config, set_)
    results = _run_stages(step_names(cfg), config, set_, force, accept)
    store = results["export"].store
    # stdout: one path per artifact, for scripts; the console (stderr) already named them
    console.print(f"[green]dataset[/green]: {store.url('export/star1.json')} (card: export/README.md)")
    print(store.url("export/star1.json"))
    if "train" in results:
        print(results["train"].url("model"))
    from star1.cli.eval import pipeline_evals

    pipeline_evals(load(config, set_), store, force)  # base (+ fine-tuned) model scores, when configured
    from star1.pipeline import tracking_line

    if line := tracking_line(cfg, store):
        console.print(line, highlight=False, soft_wrap=True)
