"""Evaluation commands: `star1 eval`, `star1 benchmarks`, and the eval step at the end of `pipeline`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from star1.cli.common import (
    EXIT_CONFIG,
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
from star1.config import ConfigError, Star1Config

if TYPE_CHECKING:
    from star1.evals.run import EvalResult
    from star1.store import Store


def _needs_ray(cfg: Star1Config) -> bool:
    models = [cfg.eval.model, cfg.eval.guard.model, cfg.eval.refusal.model]
    return any(m is not None and m.engine == "vllm" and m.backend == "ray" for m in models)


def scores_table(results: list[EvalResult]) -> Table:
    """Benchmarks as rows, one column per evaluated model."""
    table = Table(title="eval scores (%)", show_lines=False)
    table.add_column("benchmark")
    table.add_column("metric")
    for r in results:
        table.add_column(f"{r.run_name}\n{r.summary.model}", justify="right")
    names = list(dict.fromkeys(b for r in results for b in r.summary.benchmarks))
    for name in names:
        first = next(r.summary.benchmarks[name] for r in results if name in r.summary.benchmarks)
        arrow = "↑" if first.higher_is_better else "↓"
        cells = []
        for r in results:
            b = r.summary.benchmarks.get(name)
            if b is None or math.isnan(b.value):
                cells.append("—")
                continue
            se = f" ±{b.stderr:.1f}" if b.stderr is not None else ""
            un = f" ({b.unscored} unscored)" if b.unscored else ""
            cells.append(f"{b.value:.1f}{se}{un}")
        table.add_row(name, f"{first.metric} {arrow}", *cells)
    return table


def report(results: list[EvalResult]) -> None:
    console.print(scores_table(results))
    for r in results:
        status = r.manifest.status
        colour = "green" if status == "complete" else "red"
        state = "up to date" if r.skipped else status
        console.print(f"[{colour}]{r.run_name}: {state}[/{colour}] → {r.url()}")
        print(r.url())


def _fail_if_incomplete(results: list[EvalResult]) -> None:
    from star1.stage_run import describe_failures

    bad = [r for r in results if r.manifest.status != "complete"]
    for r in bad:
        console.print(
            f"[red]eval/{r.run_name} is incomplete[/red]: {describe_failures(r.manifest.failures)}; "
            "rerun to retry failed generations (stored ones are re-used)"
        )
    if bad:
        raise typer.Exit(EXIT_INCOMPLETE)


@app.command(name="eval")
def eval_cmd(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    force: ForceOpt = False,
    model: Annotated[
        str | None, typer.Option("--model", help="model path (overrides eval.model.path)")
    ] = None,
    run_name: Annotated[str | None, typer.Option("--run-name", help="folder under eval/")] = None,
    benchmarks: Annotated[
        str | None,
        typer.Option(
            "--benchmarks",
            "-b",
            help="comma-separated names or groups: paper (the paper's 10), safety, overrefusal, "
            "reasoning, all (default: eval.benchmarks)",
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="first N items per benchmark")] = None,
) -> None:
    """Evaluate a model on safety, over-refusal and reasoning benchmarks (results under eval/<run>/)."""
    overrides = list(set_ or [])
    if model:
        overrides.append(f"eval.model.path={model}")
    if benchmarks:
        overrides.append(f"eval.benchmarks=[{benchmarks}]")
    if limit:
        overrides.append(f"eval.limit={limit}")
    cfg = load(config, overrides)
    store = open_store(cfg)
    result = evaluate(cfg, store, run_name, force)
    report([result])
    _fail_if_incomplete([result])


def evaluate(cfg: Star1Config, store: Store, run_name: str | None = None, force: bool = False) -> EvalResult:
    """One eval run with the command line's exits: 2 a config error, 7 an infrastructure failure (the GPUs
    never came, a Ray node was lost), 1 any other error. An incomplete run is returned, not an exit."""
    from star1.evals.items import BenchmarkError
    from star1.evals.run import run_eval

    try:
        if _needs_ray(cfg):
            from star1.ray_utils import init_ray

            console.print(init_ray(cfg.ray))
        return run_eval(
            cfg, store, run_name=run_name, force=force, log=lambda m: console.print(m, highlight=False)
        )
    except ConfigError as e:  # eval.model unset, an unknown benchmark, a bad registry, …
        console.print(f"[red]config error:[/red] {e}")
        raise typer.Exit(EXIT_CONFIG) from None
    except Exception as e:  # Ray's own errors (a node lost) are no RuntimeError: exit 7
        if (code := error_exit(e, (BenchmarkError, FileNotFoundError, RuntimeError))) is None:
            raise
        raise code from None


@app.command(name="benchmarks")
def benchmarks_cmd(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="run config whose eval.registry to list (default: the built-in one)"
        ),
    ] = None,
    set_: SetOpt = None,
) -> None:
    """List the benchmarks of a registry: the built-in one, or with --config the config's eval.registry."""
    from star1.evals.registry import BUILTIN, load_registry
    from star1.evals.run import registry_path

    # without --config: the built-in registry, not the bundled demo's three small benchmarks
    cfg = load(config, ([] if config else ["eval.registry=null"]) + list(set_ or []))
    path = registry_path(cfg)
    try:
        specs = load_registry(path)
    except ConfigError as e:
        console.print(f"[red]config error:[/red] eval.registry: {e}")
        raise typer.Exit(EXIT_CONFIG) from None
    title = f"registry: {path}" if path else f"built-in registry (star1/evals/{BUILTIN.name})"
    table = Table(title=title, title_justify="left")
    table.add_column("name", no_wrap=True, min_width=max((len(n) for n in specs), default=4))
    for col in ("kind", "items", "profile", "max tokens", "scorer", "paper"):
        table.add_column(col)
    for spec in specs.values():
        table.add_row(
            spec.name, spec.kind, str(spec.expected_items or "?"), spec.profile,
            str(spec.max_tokens or (8000 if spec.profile == "safety" else 16384)), spec.scorer,
            "yes" if spec.paper else "",
        )  # fmt: skip
    console.print(table)


def pipeline_evals(cfg: Star1Config, store: Store, force: bool = False) -> None:
    """The eval step at the end of `star1 pipeline` (when `eval.pipeline` is set and enabled)."""
    if cfg.eval.pipeline is None or not cfg.eval.pipeline.enabled:
        return
    from star1.evals.items import BenchmarkError
    from star1.pipeline import evaluate_models

    try:
        if _needs_ray(cfg):
            from star1.ray_utils import init_ray

            console.print(init_ray(cfg.ray))
        results = evaluate_models(cfg, store, force, log=lambda m: console.print(m, highlight=False))
    except ConfigError as e:
        console.print(f"[red]config error:[/red] {e}")
        raise typer.Exit(EXIT_CONFIG) from None
    except Exception as e:
        if (code := error_exit(e, (BenchmarkError, FileNotFoundError, RuntimeError), "eval error")) is None:
            raise
        raise code from None
    for r in results:  # the scorecard below shows the scores
        colour = "green" if r.manifest.status == "complete" else "red"
        state = "up to date" if r.skipped else r.manifest.status
        console.print(f"[{colour}]eval {r.run_name}: {state}[/{colour}] → {r.url()}")
    _fail_if_incomplete(results)
    scorecard(cfg, store, results)


def scorecard(cfg: Star1Config, store: Store, results: list[EvalResult]) -> None:
    """The pipeline's last word: the scorecard of its eval runs (deltas against the first, the base model),
    printed as Markdown, with the path of the HTML page."""
    from star1.pipeline import scorecard as pipeline_scorecard

    rendered = pipeline_scorecard(cfg, store, results)
    if rendered is None:
        return
    text, url = rendered
    headline = text.split("\n### ", 1)[0].rstrip()  # the per-benchmark intervals are in the files
    print(headline)
    console.print(f"[green]scorecard[/green]: {url} (Markdown with confidence intervals beside it)")
