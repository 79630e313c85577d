"""The self-contained HTML pages (jinja2 templates in `templates/`): inline CSS, plots embedded as
base64 SVG images, no script and no network access, so a page opens offline and from an S3 download."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from star1 import __version__
from star1.report import markdown as md
from star1.report.history import HistoryView
from star1.report.plots import KIND_TITLES
from star1.report.scorecard import Scorecard


@dataclass(frozen=True)
class Plot:
    name: str
    caption: str
    svg: bytes

    @property
    def b64(self) -> str:
        return base64.b64encode(self.svg).decode("ascii")


def tone(delta: float, higher_is_better: bool) -> str:
    r = round(delta, 1)
    if r == 0:
        return "same"
    return "better" if (r > 0) == higher_is_better else "worse"


@cache
def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=md.num, signed=md.signed, pval=md.pval, when=md.when, tone=tone)
    return env


def _common(title: str) -> dict:
    return {"title": title, "version": __version__, "generated": md.when(time.time())}


def scorecard_page(sc: Scorecard, plots: list[Plot], title: str) -> str:
    groups: list[tuple[str, int]] = []
    for c in sc.columns:
        if groups and groups[-1][0] == c.kind:
            groups[-1] = (c.kind, groups[-1][1] + 1)
        else:
            groups.append((c.kind, 1))
    detail = [
        {
            "col": col,
            "row": row,
            "s": row.cells[col.key].summary,
            "ci": row.cells[col.key].ci,
            "method": row.cells[col.key].ci_method,
        }
        for row in sc.rows
        for col in sc.benchmark_columns
        if col.key in row.cells
    ]
    return (
        _env()
        .get_template("scorecard.html.j2")
        .render(
            **_common(title),
            sc=sc,
            groups=groups,
            kind_titles={k: v.capitalize() for k, v in KIND_TITLES.items()},
            plots=plots,
            detail=detail,
            pct=f"{sc.confidence:.0%}",
            synthetic=any(r.synthetic for r in sc.rows),
        )
    )


def history_page(view: HistoryView, plot: bytes | None, title: str) -> str:
    return (
        _env()
        .get_template("history.html.j2")
        .render(
            **_common(title),
            view=view,
            entries=list(reversed(view.entries)),
            plot=base64.b64encode(plot).decode("ascii") if plot else None,
            marks=md.TREND_MARKS,
        )
    )
