"""What every `star1` command shares: the app, the console, config and store loading with clean exits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from star1.config import ConfigError, Star1Config, load_config
from star1.exits import Exit

# the exit codes commands use (the whole table, and which codes are retried: star1/exits.py)
EXIT_ERROR, EXIT_CONFIG, EXIT_INCOMPLETE, EXIT_FAILED, EXIT_INFRA = (
    Exit.ERROR, Exit.CONFIG, Exit.INCOMPLETE, Exit.CHECKS_FAILED, Exit.INFRA
)  # fmt: skip

app = typer.Typer(add_completion=False, no_args_is_help=True, help="STAR-1-style safety data, on Ray.")
console = Console(stderr=True, soft_wrap=True)  # long lines (paths) are not cut into pieces
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "data" / "demo" / "demo.yaml"

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="run config YAML (default: bundled demo)")
]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="override, e.g. --set collect.tfidf_threshold=0.5")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="redo even if the stored manifest is current")]


def _print_version(value: bool) -> None:
    if value:
        from star1 import __version__

        print(__version__)
        raise typer.Exit()


@app.callback()
def _global_options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="show Ray's own output here instead of in a log file")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="print the version and exit"),
    ] = False,
) -> None:
    """STAR-1-style safety data, on Ray."""
    if not verbose:
        from star1.ray_utils import quiet_ray

        quiet_ray()


def load(path: Path | None, overrides: list[str] | None) -> Star1Config:
    """The run config (default: the bundled demo); a bad config exits with code 2 before any work."""
    try:
        return load_config(path or DEMO_CONFIG, overrides)
    except ConfigError as e:
        console.print(f"[red]config error:[/red] {e}")
        raise typer.Exit(EXIT_CONFIG) from None


def open_store(cfg: Star1Config):
    """The config's artifact store; a bad store URI exits with code 2."""
    from star1.store import Store

    try:
        return Store.from_uri(cfg.store.uri, cfg.store.endpoint_url, cfg.store.region)
    except (ValueError, OSError) as e:
        console.print(f"[red]store error:[/red] {e}")
        raise typer.Exit(EXIT_CONFIG) from None


def error_exit(
    e: BaseException, expected: tuple[type[BaseException], ...], label: str = "error"
) -> typer.Exit | None:
    """The exit for an error a command did not handle itself, its message printed: 7 for a failure of the
    cluster rather than of the work (the GPUs never came, a Ray node or worker was lost: the job wrapper
    retries those), 1 for an `expected` error, None for anything else (re-raise it: a bug keeps its
    traceback)."""
    from star1.ray_utils import is_infra_error

    if is_infra_error(e):
        console.print(f"[red]infrastructure failure:[/red] {type(e).__name__}: {e}", highlight=False)
        return typer.Exit(EXIT_INFRA)
    if isinstance(e, expected):
        console.print(f"[red]{label}:[/red] {e}", highlight=False)
        return typer.Exit(EXIT_ERROR)
    return None
