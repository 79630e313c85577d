"""The report's plots, drawn with matplotlib (no pyplot state, so safe in threads) and saved as SVG files
that the HTML page embeds: per-benchmark bars with confidence intervals, safety vs reasoning, per-category
safety heatmap, and the trend of each benchmark across the comparison history."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from star1.report.history import HistoryView
from star1.report.scorecard import AVG_KEY, Row, Scorecard

PALETTE = matplotlib.colormaps["tab10"].colors
PUBLISHED_GRAYS = ("#7f7f7f", "#a6a6a6", "#4d4d4d", "#bfbfbf", "#666666")
KIND_TITLES = {"safety": "safety", "overrefusal": "over-refusal", "reasoning": "reasoning"}


def svg(fig: Figure) -> bytes:
    """Deterministic SVG bytes (fixed ids, no date), text kept as text (small, selectable)."""
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "star1", "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    return buf.getvalue()


def row_styles(sc: Scorecard) -> dict[str, dict]:
    """One colour per row, shared by every plot: runs in colour, published rows in grays, hatched."""
    styles, runs, pubs = {}, 0, 0
    for row in sc.rows:
        if row.source == "published":
            styles[row.label] = {"color": PUBLISHED_GRAYS[pubs % len(PUBLISHED_GRAYS)], "hatch": "//"}
            pubs += 1
        else:
            styles[row.label] = {"color": PALETTE[runs % len(PALETTE)], "hatch": None}
            runs += 1
    return styles


def bars(sc: Scorecard) -> bytes:
    cols, rows = sc.benchmark_columns, sc.rows
    styles = row_styles(sc)
    width = 0.8 / max(len(rows), 1)
    fig = Figure(figsize=(min(16.0, max(7.0, 0.3 * len(cols) * max(len(rows), 2) + 2)), 4.6))
    ax = fig.subplots()
    x = np.arange(len(cols))
    for j, row in enumerate(rows):
        vals = [row.values.get(c.key, np.nan) for c in cols]
        lo = [
            v - row.cells[c.key].ci[0] if c.key in row.cells else 0 for v, c in zip(vals, cols, strict=True)
        ]
        hi = [
            row.cells[c.key].ci[1] - v if c.key in row.cells else 0 for v, c in zip(vals, cols, strict=True)
        ]
        has_ci = any(c.key in row.cells for c in cols)
        st = styles[row.label]
        ax.bar(
            x - 0.4 + width * (j + 0.5),
            vals,
            width,
            label=row.mark,
            color=st["color"],
            hatch=st["hatch"],
            edgecolor="white" if st["hatch"] else None,
            yerr=[lo, hi] if has_ci else None,
            capsize=2.5 if has_ci else 0,
            error_kw={"elinewidth": 1, "ecolor": "#222222"},
        )
    ax.set_xticks(x, [c.header for c in cols])
    ax.set_ylim(0, 105)
    ax.set_ylabel("score (%)")
    ax.set_title(f"Per benchmark, with {sc.confidence:.0%} confidence intervals (runs)", fontsize=11)
    _kind_separators(ax, [c.kind for c in cols])
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(
        fontsize=8, ncols=min(len(rows), 4), loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False
    )
    return svg(fig)


def _kind_separators(ax, kinds: list[str]) -> None:
    start = 0
    for i in range(1, len(kinds) + 1):
        if i == len(kinds) or kinds[i] != kinds[start]:
            ax.text(
                (start + i - 1) / 2,
                101,
                KIND_TITLES.get(kinds[start], kinds[start]),
                ha="center",
                va="bottom",
                fontsize=9,
                color="#555555",
            )
            if i < len(kinds):
                ax.axvline(i - 0.5, color="#999999", linestyle=":", linewidth=1)
            start = i


def scatter(sc: Scorecard) -> bytes | None:
    """Average safety against average reasoning, one point per row that has both."""
    pts = [r for r in sc.rows if AVG_KEY["safety"] in r.values and AVG_KEY["reasoning"] in r.values]
    if not pts:
        return None
    styles = row_styles(sc)
    fig = Figure(figsize=(7.2, 4.6))
    ax = fig.subplots()
    for row in pts:
        x, y = row.values[AVG_KEY["reasoning"]], row.values[AVG_KEY["safety"]]
        pub = row.source == "published"
        ax.scatter(
            x,
            y,
            s=70,
            marker="s" if pub else "o",
            facecolors="none" if pub else styles[row.label]["color"],
            edgecolors=styles[row.label]["color"],
            linewidths=1.8,
            zorder=3,
            label=_short(row),
        )
    xs = [r.values[AVG_KEY["reasoning"]] for r in pts]
    ys = [r.values[AVG_KEY["safety"]] for r in pts]
    ax.set_xlim(max(0, min(xs) - 8), min(100, max(xs) + 12))
    ax.set_ylim(max(0, min(ys) - 8), min(102, max(ys) + 6))
    ax.set_xlabel("average reasoning (%)")
    ax.set_ylabel("average safety (%)")
    ax.set_title("Safety vs reasoning (● run, □ published)", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return svg(fig)


def _short(row: Row) -> str:
    return row.mark if len(row.mark) <= 28 else row.mark[:26] + "…"


def heatmap(sc: Scorecard) -> bytes | None:
    """Safety per harm category: one line per (benchmark, category), one column per run row."""
    cols = [c for c in sc.benchmark_columns if c.kind == "safety"]
    runs = [
        r for r in sc.rows if any(r.cells.get(c.key) and r.cells[c.key].summary.by_category for c in cols)
    ]
    lines: list[tuple[str, str, str]] = []
    for c in cols:
        cats = sorted({k for r in runs if c.key in r.cells for k in r.cells[c.key].summary.by_category})
        lines += [(c.key, c.label, cat) for cat in cats]
    if not lines:
        return None
    data = np.full((len(lines), len(runs)), np.nan)
    for i, (key, _, cat) in enumerate(lines):
        for j, r in enumerate(runs):
            cell = r.cells.get(key)
            if cell and cat in cell.summary.by_category:
                data[i, j] = cell.summary.by_category[cat]
    fig = Figure(figsize=(max(4.5, 1.3 * len(runs) + 3.5), max(2.5, 0.32 * len(lines) + 1.4)))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#eeeeee")
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0, vmax=100, aspect="auto")
    for i in range(len(lines)):
        for j in range(len(runs)):
            v = data[i, j]
            ax.text(
                j,
                i,
                "—" if math.isnan(v) else f"{v:.0f}",
                ha="center",
                va="center",
                fontsize=7.5,
                color="#222222",
            )
    ax.set_xticks(range(len(runs)), [_short(r) for r in runs], rotation=20, ha="right", fontsize=8)
    ax.set_yticks(range(len(lines)), [f"{label} · {cat}" for _, label, cat in lines], fontsize=8)
    ax.set_title("Safety by harm category (% safe)", fontsize=11)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    return svg(fig)


def _span(values: list[float | None], least: float = 10.0) -> tuple[float, float]:
    """y-limits that show at least `least` points, so noise does not look like a cliff."""
    vals = [v for v in values if v is not None]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 100.0)
    pad = max(0.0, least - (hi - lo)) / 2 + 1.0
    lo, hi = lo - pad, hi + pad
    if lo < 0:
        lo, hi = 0.0, hi - lo
    if hi > 101:
        lo, hi = max(0.0, lo - (hi - 101)), 101.0
    return lo, hi


def trend(h: HistoryView, titles: dict[str, str] | None = None) -> bytes | None:
    """One panel per benchmark: the candidate's value per comparison over time, the baseline dashed,
    significant regressions as red ▼, improvements green ▲, incomparable gray ✗."""
    if not h.entries:
        return None
    titles = titles or {}
    names = h.benchmarks
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(5.2 * ncols, 2.5 * nrows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax, name in zip(axes, names, strict=False):
        pts = [(datetime.fromtimestamp(e.at, UTC), e.points[name]) for e in h.entries if name in e.points]
        xs = [t for t, _ in pts]
        ax.plot(
            xs,
            [p.value if p.value is not None else np.nan for _, p in pts],
            "-o",
            color="#1f77b4",
            markersize=3.5,
            linewidth=1.2,
            label="candidate",
        )
        ax.plot(
            xs,
            [p.baseline_value if p.baseline_value is not None else np.nan for _, p in pts],
            "--",
            color="#999999",
            linewidth=1,
            label="baseline",
        )
        for verdict, marker, color in (
            ("regression", "v", "#d62728"),
            ("improvement", "^", "#2ca02c"),
            ("incomparable", "x", "#555555"),
        ):
            sel = [(t, p.value) for t, p in pts if p.verdict == verdict and p.value is not None]
            if sel:
                ax.scatter(
                    [t for t, _ in sel],
                    [v for _, v in sel],
                    marker=marker,
                    s=60,
                    color=color,
                    zorder=4,
                    label=verdict,
                )
        ax.set_title(titles.get(name, name), fontsize=10)
        ax.set_ylim(*_span([p.value for _, p in pts] + [p.baseline_value for _, p in pts]))
        ax.grid(alpha=0.3)
        ax.tick_params(axis="x", labelsize=7, rotation=20)
        ax.tick_params(axis="y", labelsize=8)
        ax.legend(fontsize=7, loc="best")
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    fig.suptitle("Trend per benchmark (candidate runs over time)", fontsize=11)
    return svg(fig)
