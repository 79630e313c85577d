"""The HTML pages render in a real browser: headless Chromium (the Debian package) opens the scorecard and
the trend page offline, every table and plot has a size on screen, no request leaves the machine, and the
screenshot is not blank. Skipped where /usr/bin/chromium is not installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from PIL import Image

from star1.report import history
from star1.report.compare import GateSettings, compare_runs
from star1.report.render import render_history, render_scorecard
from star1.report.runs import open_run
from star1.store import Store
from tests.eval_runs import three_runs

CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "screenshot_report.py"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium: apt-get install -y chromium")


def _script():
    spec = importlib.util.spec_from_file_location("screenshot_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    store = Store.from_uri(str(tmp_path_factory.mktemp("store")))
    dirs = three_runs(store)
    _, card = render_scorecard(store, dirs, published=["7b-star1"])
    alpha, beta, gamma = (open_run(d) for d in dirs)
    for cand in (beta, gamma):
        history.append(store, compare_runs(alpha, cand, GateSettings(resamples=1000, only=("strongreject",))))
    _, trend = render_history(store)
    return Path(card), Path(trend)


@pytest.fixture(scope="module")
def browser():
    with _script().Chromium(str(CHROMIUM)) as b:
        yield b


def test_scorecard_renders_its_tables_and_plots_in_chromium(pages, browser, tmp_path):
    card, _ = pages
    seen = browser.render(card, tmp_path / "card.png")
    assert seen["requests"] == []  # offline: nothing but the file itself
    tables = {t["cls"]: t for t in seen["tables"]}
    assert tables["scorecard"]["rows"] == 2 + 4  # two header lines, three runs and one published row
    assert tables["scorecard"]["w"] > 600 and tables["scorecard"]["h"] > 100
    assert [i["alt"] for i in seen["images"]] == [
        "Per-benchmark scores with 95% confidence intervals",
        "Average safety vs average reasoning",
        "Safety by harm category",
    ]
    for img in seen["images"]:
        assert img["complete"] and img["natural_w"] > 300 and img["natural_h"] > 200, img
        assert img["w"] > 300 and img["h"] > 200, img  # laid out on the page, not collapsed
    shot = Image.open(tmp_path / "card.png").convert("RGB")
    assert shot.width == 1400 and shot.height >= seen["height"] - 1
    assert len(shot.getcolors(maxcolors=1 << 20)) > 200  # tables, text and plots, not a blank page


def test_trend_page_renders_in_chromium(pages, browser, tmp_path):
    _, trend = pages
    seen = browser.render(trend, tmp_path / "trend.png")
    assert seen["requests"] == []
    (table,) = seen["tables"]
    assert table["cls"] == "history" and table["rows"] == 1 + 2
    (img,) = seen["images"]
    assert img["complete"] and img["natural_w"] > 300 and img["h"] > 150
    assert (tmp_path / "trend.png").stat().st_size > 10_000
