"""`star1 nightly`: the regression job in one command — evaluate tonight's model into one run name, compare it
with the baseline, record the verdict, the comparison and the history in the store, and exit with a code
that says which of pass / regression / config error / infrastructure failure happened (star1/exits.py).

    star1 nightly -c nightly.yaml            # runs nightly-<UTC date>, baseline from report.baseline
    star1 nightly -c nightly.yaml --baseline star1-7b --date 2026-11-30

The date is taken once: `--date`, else the day the job started (`STAR1_RUN_STARTED_AT`, which the job wrapper
sets for every attempt, so a retry after midnight evaluates into the same run), else today in UTC.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from typing import Annotated

import typer

from star1.cli.common import (
    EXIT_CONFIG,
    EXIT_ERROR,
    EXIT_INCOMPLETE,
    EXIT_INFRA,
    ConfigOpt,
    ForceOpt,
    SetOpt,
    app,
    console,
    load,
    open_store,
)
from star1.cli.eval import evaluate


def night(day: str | None) -> date:
    """The night's date: --date, else the job's start (STAR1_RUN_STARTED_AT), else today, all in UTC."""
    if day:
        return date.fromisoformat(day)
    started = os.environ.get("STAR1_RUN_STARTED_AT")
    if started:
        return datetime.fromisoformat(started).astimezone(UTC).date()
    return datetime.now(UTC).date()


@app.command()
def nightly(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline", help="the last good eval run (default: $STAR1_BASELINE, else report.baseline)"
        ),
    ] = None,
    day: Annotated[
        str | None,
        typer.Option("--date", help="YYYY-MM-DD (default: the day the job started, UTC)"),
    ] = None,
    run_name: Annotated[
        str | None, typer.Option("--run-name", help="tonight's eval run (default: <prefix>-<date>)")
    ] = None,
    prefix: Annotated[str, typer.Option("--prefix", help="run name prefix")] = "nightly",
    force: ForceOpt = False,
) -> None:
    """Evaluate tonight's model, compare it with the baseline and record the verdict; exit 0 no regression,
    3 regression, 4 incomparable, 2 config error, 5 incomplete eval, 7 infrastructure failure."""
    from star1.report import markdown
    from star1.report import nightly as record
    from star1.report.compare import GateSettings, compare_runs
    from star1.report.runs import RunError, open_run

    cfg = load(config, set_)
    base = baseline or os.environ.get("STAR1_BASELINE") or cfg.report.baseline
    try:
        when = night(day).isoformat()
    except ValueError as e:
        console.print(f"[red]config error:[/red] --date / STAR1_RUN_STARTED_AT: {e}")
        raise typer.Exit(EXIT_CONFIG) from None
    name = run_name or f"{prefix}-{when}"
    if not base:
        console.print(
            "[red]config error:[/red] no baseline: set report.baseline in the config, STAR1_BASELINE or "
            "--baseline (the eval run tonight's is compared with)"
        )
        raise typer.Exit(EXIT_CONFIG)
    store = open_store(cfg)
    status = {"run_name": name, "date": when, "baseline": base}

    def give_up(code: int, why: str) -> typer.Exit:
        """Record the night's outcome (as far as the store can be written) and exit with `code`."""
        try:
            record.write_status(store, cfg.report, {**status, "outcome": record.outcome_of(code),
                                                    "exit_code": code, "error": why})  # fmt: skip
        except Exception as e:  # the store may be what failed; the exit code still says what happened
            console.print(f"[yellow]could not record the night's outcome:[/yellow] {e}", highlight=False)
        return typer.Exit(code)

    try:  # before hours of GPU time: a baseline that is not there is a config error
        baseline_run = open_run(base, store)
    except (RunError, FileNotFoundError) as e:
        console.print(f"[red]config error:[/red] baseline {base}: {e}", highlight=False)
        raise give_up(EXIT_CONFIG, f"baseline {base}: {e}") from None
    except OSError as e:  # the store did not answer: worth a retry
        console.print(f"[red]infrastructure failure:[/red] reading baseline {base}: {e}", highlight=False)
        raise give_up(EXIT_INFRA, f"reading baseline {base}: {e}") from None
    console.print(f"nightly {name}: evaluating, then comparing with {base}", highlight=False)
    try:
        result = evaluate(cfg, store, name, force)
    except typer.Exit as e:
        raise give_up(e.exit_code, "the eval failed (its message is in the driver log)") from None
    if result.manifest.status != "complete":
        from star1.stage_run import describe_failures

        why = describe_failures(result.manifest.failures)
        console.print(
            f"[yellow]eval/{name} is incomplete[/yellow]: {why}; a rerun resumes it", highlight=False
        )
        raise give_up(EXIT_INCOMPLETE, f"eval/{name} incomplete: {why}")
    try:
        settings = GateSettings.from_config(cfg.report)
        comparison = compare_runs(baseline_run, open_run(name, store), settings)
    except (RunError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}", highlight=False)
        raise give_up(EXIT_ERROR, str(e)) from None
    print(markdown.comparison(comparison))
    try:
        written = record.write_verdict(store, cfg.report, comparison, when)
    except OSError as e:  # the verdict is known but not stored: a retry (the eval is up to date) stores it
        console.print(f"[red]infrastructure failure:[/red] writing the verdict: {e}", highlight=False)
        raise typer.Exit(EXIT_INFRA) from None
    from star1.cli.report import track_comparison

    files = {k: written[k] for k in ("comparison", "history", "trend") if written.get(k)}
    track_comparison(cfg, store, comparison, files)
    if written.get("trend_error"):
        console.print(f"[yellow]trend page not redrawn:[/yellow] {written['trend_error']}", highlight=False)
    named = ", ".join(written["regressions"]) or "; ".join(comparison.problems)
    verdict = f"{store.url(record.folder(cfg.report, name))}/nightly.json"
    colour = {"ok": "green", "regression": "red", "incomparable": "yellow"}[comparison.outcome]
    console.print(
        f"[{colour}]nightly {name} vs {base}: {comparison.outcome}[/{colour}]"
        + (f" ({named})" if comparison.outcome != "ok" and named else "")
        + f" (exit {comparison.exit_code}); verdict: {verdict}",
        highlight=False,
    )
    raise typer.Exit(comparison.exit_code)
