"""Report commands: `report` (the scorecard of eval runs, or the history's trend) and `compare` (the
regression gate: exit 0 no regression, 3 significant regression, 4 incomparable runs, 2 bad input)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError

from star1.cli.common import ConfigOpt, SetOpt, app, console, load, open_store
from star1.config import Star1Config

if TYPE_CHECKING:
    from star1.report.compare import Comparison
    from star1.store import Store

RunsArg = Annotated[
    list[str] | None,
    typer.Argument(help="eval runs: folder paths or URIs (local, s3://), or run names under <store>/eval/"),
]
OutOpt = Annotated[
    str | None, typer.Option("--out", help="folder or s3:// URI for the files (default: <store>/report/…)")
]


def track_comparison(cfg: Star1Config, store: Store, c: Comparison, files: dict[str, str]) -> None:
    """The comparison and the trend in the experiment tracker; a history that cannot be read back for it is
    a warning, never a changed verdict."""
    from star1.report.tracking import log_comparison

    try:
        log_comparison(cfg, store, c, files)
    except (OSError, ValueError) as e:
        console.print(f"[yellow]tracking: comparison not logged:[/yellow] {e}", highlight=False)


def _fail(e: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {e}", highlight=False)
    return typer.Exit(2)


@app.command()
def report(
    runs: RunsArg = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    history: Annotated[
        bool, typer.Option("--history", help="plot the trend of the comparison history instead")
    ] = False,
    reference: Annotated[
        str | None,
        typer.Option("--reference", "-r", help="row the deltas are taken against (default: first)"),
    ] = None,
    published: Annotated[
        list[str] | None,
        typer.Option(
            "--published", "-p", help="paper rows: a key (7b-star1), a size (7b) or 'all'; repeatable"
        ),
    ] = None,
    name: Annotated[
        str, typer.Option("--name", help="report folder name under <store>/report/")
    ] = "scorecard",
    out: OutOpt = None,
    title: Annotated[str | None, typer.Option("--title")] = None,
) -> None:
    """Table 1 of eval runs (Markdown on stdout, HTML page with plots in the store), or with --history the
    trend of every recorded comparison."""
    from star1.report.render import render_history, render_scorecard
    from star1.report.runs import RunError
    from star1.store import Store

    cfg = load(config, set_)
    store = open_store(cfg)
    try:
        target = Store.from_uri(out) if out else None
        if history:
            if runs:
                raise ValueError("--history takes no RUN arguments (it reads the history in the store)")
            text, page = render_history(store, cfg=cfg.report, out=target, title=title or "star1 history")
        else:
            if not runs and not (published or cfg.report.published):
                raise ValueError("give at least one RUN (or --published rows)")
            text, page = render_scorecard(
                store,
                runs or [],
                cfg=cfg.report,
                reference=reference,
                published=published,
                name=name,
                out=target,
                title=title or "star1 scorecard",
            )
            if target is None:
                from star1.report.tracking import link_scorecard

                link_scorecard(cfg, store, list(runs or []), page)
    except (RunError, ValueError, OSError) as e:
        raise _fail(e) from None
    print(text)
    console.print(f"[green]html:[/green] {page}", highlight=False)


@app.command()
def compare(
    baseline: Annotated[str, typer.Argument(help="the last good eval run (path, URI or run name)")],
    candidate: Annotated[str, typer.Argument(help="the eval run to judge (path, URI or run name)")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    alpha: Annotated[float | None, typer.Option("--alpha", help="significance level (report.alpha)")] = None,
    min_effect: Annotated[
        float | None,
        typer.Option("--min-effect", help="smallest drop in points that counts (report.min_effect)"),
    ] = None,
    correction: Annotated[
        str | None, typer.Option("--correction", help="holm | bonferroni | fdr_bh | none (report.correction)")
    ] = None,
    resamples: Annotated[int | None, typer.Option("--resamples", help="bootstrap resamples, ≥ 1000")] = None,
    benchmark: Annotated[
        list[str] | None, typer.Option("--benchmark", "-b", help="compare only these benchmarks; repeatable")
    ] = None,
    no_history: Annotated[bool, typer.Option("--no-history", help="do not record this comparison")] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the comparison as JSON here")
    ] = None,
) -> None:
    """Paired significance test of CANDIDATE against BASELINE on every benchmark; exit 0 = no regression,
    3 = a significant regression, 4 = incomparable runs (which field differs is printed), 2 = bad input."""
    from star1.report import history, markdown
    from star1.report.compare import GateSettings, compare_runs
    from star1.report.runs import RunError, open_run

    cfg = load(config, set_)
    store = open_store(cfg)
    options = {
        "alpha": alpha,
        "min_effect": min_effect,
        "correction": correction,
        "bootstrap_resamples": resamples,
    }
    try:
        for key, value in options.items():
            if value is not None:
                setattr(cfg.report, key, value)  # validated like the config file
    except ValidationError as e:
        err = e.errors()[0]
        raise _fail(ValueError(f"report.{err['loc'][0]}: {err['msg']}")) from None
    try:
        settings = GateSettings.from_config(cfg.report, only=tuple(benchmark) if benchmark else None)
        result = compare_runs(open_run(baseline, store), open_run(candidate, store), settings)
    except (RunError, ValueError, OSError) as e:
        raise _fail(e) from None
    print(markdown.comparison(result))
    if json_out:
        json_out.write_text(json.dumps(result.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    if not no_history:
        try:
            url = history.append(store, result, cfg.report.folder)
        except (ValueError, OSError) as e:
            raise _fail(
                RuntimeError(f"verdict {result.outcome}, but the history was not written: {e}")
            ) from None
        console.print(f"history: {url}", highlight=False)
        track_comparison(cfg, store, result, {"history": url})
    color = {"ok": "green", "regression": "red", "incomparable": "yellow"}[result.outcome]
    console.print(f"[{color}]{result.outcome}[/{color}] (exit {result.exit_code})", highlight=False)
    raise typer.Exit(result.exit_code)
