"""`star1 report`: the scorecard of one or more eval runs, and the trend of the comparison history, as
Markdown (returned, for terminals and pull requests) and a self-contained HTML page with its plots, written
to the store:

    <folder>/<name>/scorecard.md | scorecard.html | scorecard.json | plots/*.svg
    <folder>/trend/trend.md | trend.html | plots/trend.svg

`render_scorecard(store, runs)` is what a pipeline calls at its end; `render_history(store)` is the nightly
job's last step after `star1 compare`.
"""

from __future__ import annotations

from collections.abc import Sequence

from star1.config.report import ReportConfig
from star1.report import history, html, markdown, plots, scorecard
from star1.report.published import select_published
from star1.report.runs import EvalRun, open_run
from star1.store import Store


def load_runs(runs: Sequence[str | Store | EvalRun], store: Store | None = None) -> list[EvalRun]:
    """RUN arguments (paths, URIs, run names under `<store>/eval/`, stores or open runs) as open runs."""
    return [r if isinstance(r, EvalRun) else open_run(r, store) for r in runs]


def render_scorecard(
    store: Store,
    runs: Sequence[str | Store | EvalRun],
    *,
    cfg: ReportConfig | None = None,
    reference: str | None = None,
    published: Sequence[str] | None = None,
    name: str = "scorecard",
    out: Store | None = None,
    title: str = "star1 scorecard",
) -> tuple[str, str]:
    """Render the scorecard of `runs` (plus the paper's rows chosen by `published`), write its Markdown, HTML,
    JSON and plots under `<out or store/cfg.folder/name>/`, and return (Markdown, URL of the HTML page)."""
    cfg = cfg or ReportConfig()
    target = out or store.child(cfg.folder, name)
    opened = load_runs(runs, store)
    pub = select_published(list(published if published is not None else cfg.published))
    sc = scorecard.build(opened, pub, reference or cfg.reference, cfg.confidence)
    text = markdown.scorecard(sc, title)
    figures = [
        ("bars", f"Per-benchmark scores with {sc.confidence:.0%} confidence intervals", plots.bars(sc)),
        ("scatter", "Average safety vs average reasoning", plots.scatter(sc)),
        ("heatmap", "Safety by harm category", plots.heatmap(sc)),
    ]
    shown = [html.Plot(n, cap, svg) for n, cap, svg in figures if svg is not None]
    for p in shown:
        target.write_bytes(f"plots/{p.name}.svg", p.svg)
    target.write_bytes("scorecard.md", text.encode())
    target.write_json("scorecard.json", scorecard_json(sc))
    target.write_bytes("scorecard.html", html.scorecard_page(sc, shown, title).encode())
    return text, target.url("scorecard.html")


def render_history(
    store: Store, *, cfg: ReportConfig | None = None, out: Store | None = None, title: str = "star1 history"
) -> tuple[str, str]:
    """The history's trend: Markdown (returned) and an HTML page with one panel per benchmark."""
    cfg = cfg or ReportConfig()
    target = out or store.child(cfg.folder, "trend")
    view = history.view(history.read(store, cfg.folder))
    if not view.entries:
        raise ValueError(
            f"no comparisons recorded under {store.url(cfg.folder + '/history')}: run `star1 compare`"
        )
    text = markdown.history(view)
    svg = plots.trend(view, view.labels)
    if svg is not None:
        target.write_bytes("plots/trend.svg", svg)
    target.write_bytes("trend.md", text.encode())
    target.write_bytes("trend.html", html.history_page(view, svg, title).encode())
    return text, target.url("trend.html")


def scorecard_json(sc: scorecard.Scorecard) -> dict:
    """The scorecard's numbers, for machines (what the Markdown and HTML show)."""
    return {
        "reference": sc.reference,
        "confidence": sc.confidence,
        "columns": [c.__dict__ for c in sc.columns],
        "rows": [
            {
                "label": r.label,
                "model": r.model,
                "source": r.source,
                "uri": r.run.uri if r.run else None,
                "published_key": r.published_key,
                "synthetic": r.synthetic,
                "values": r.values,
                "deltas": r.deltas,
                "ci": {k: list(c.ci) for k, c in r.cells.items()},
            }
            for r in sc.rows
        ],
        "notes": sc.notes,
    }
