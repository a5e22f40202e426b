"""`backtest --report` as an analyst sees it: the page opened from disk in Chromium,
its figures drawn by plotly with no network, and what they and the tables show
agreeing with report.json."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from streams.generate import generate_log
from streams.report import FIGURES
from tests.browser.helpers import requested_urls
from tests.helpers import cli, stricter_policy

pytestmark = pytest.mark.browser

# Each figure's traces, as plotly holds them on its div: name, meta (the side or the
# series it shows), x, y.
TRACES = """
return [...document.querySelectorAll('.js-plotly-plot')].map(div => ({
    id: div.id, title: div.layout.title.text,
    drawn_title: (div.querySelector('.gtitle') || {}).textContent,
    points: div.querySelectorAll('g.point').length,
    traces: div.data.map(t => ({type: t.type, name: t.name, meta: t.meta,
                                x: Array.from(t.x), y: Array.from(t.y)}))}));
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A backtest of a stricter policy, written with --report: the folder, and its JSON."""
    tmp = tmp_path_factory.mktemp("report")
    log = tmp / "log.jsonl"
    with log.open("wb") as out:
        generate_log(out, seed=5, users=300, days=120)
    folder = tmp / "report"
    done = cli("backtest", str(log), "--policy", str(stricter_policy(tmp)), "--report",
               str(folder))
    assert done.returncode == 0, done.stderr
    data = json.loads((folder / "report.json").read_bytes())
    assert data["users_differing"] > 0 and data["warning_to_action_days"]  # something to see
    return folder, data


@pytest.fixture(scope="module")
def page(browser: WebDriver, report: tuple[Path, dict[str, Any]]) -> dict[str, Any]:
    """The page opened from disk once plotly has drawn every figure: its figures by
    div id, and the URLs it requested."""
    folder, _ = report
    requested_urls(browser)  # empty the log of what came before
    browser.get((folder / "index.html").as_uri())
    ids = list(FIGURES)
    WebDriverWait(browser, 60).until(lambda d: d.execute_script(
        "return arguments[0].every(id => document.querySelector('#' + id + ' .main-svg'))",
        ids))
    figures = {f["id"]: f for f in browser.execute_script(TRACES)}
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    return {"figures": figures, "resources": resources, "requested": requested_urls(browser)}


def test_the_page_draws_three_figures_with_their_titles(page: dict[str, Any]):
    figures = page["figures"]
    assert list(figures) == list(FIGURES)
    for div_id, title in FIGURES.items():
        assert figures[div_id]["title"] == title
        assert figures[div_id]["drawn_title"] == title  # in the SVG: plotly drew it


def test_the_page_fetches_nothing(page: dict[str, Any], report: tuple[Path, dict[str, Any]]):
    folder, _ = report
    assert all(url.startswith(("file:", "data:")) for url in page["resources"]), page["resources"]
    # Chrome's own record of every request, the page's included.
    assert page["requested"] == [(folder / "index.html").as_uri()], page["requested"]


def _traces(figure: dict[str, Any], meta: str) -> list[dict[str, Any]]:
    return [t for t in figure["traces"] if t["meta"] == meta]


def test_decisions_per_day_add_up_to_the_report(page: dict[str, Any],
                                                report: tuple[Path, dict[str, Any]]):
    _, data = report
    figure = page["figures"]["by-day"]
    for side in ("baseline", "policy"):
        drawn = {t["name"]: sum(t["y"]) for t in _traces(figure, side) if t["y"]}
        totals: Counter[str] = Counter()
        for row in data["decisions"]:
            totals[row["action"]] += row[side]
        assert drawn == +totals, side
        days = {x for t in _traces(figure, side) for x in t["x"]}
        assert days == {r["day"] for r in data["decisions_by_day"] if r[side]}, side
    # One bar drawn per day, action and side with a decision.
    assert figure["points"] == sum(1 for r in data["decisions_by_day"]
                                   for side in ("baseline", "policy") if r[side])


def test_the_differing_users_bars_are_the_report_s(page: dict[str, Any],
                                                   report: tuple[Path, dict[str, Any]]):
    _, data = report
    figure = page["figures"]["differing"]
    [by_reason] = _traces(figure, "reason")
    assert dict(zip(by_reason["y"], by_reason["x"], strict=True)) == {
        r["reason"]: r["users"] for r in data["users_differing_by_reason"]}
    [by_move] = _traces(figure, "status_move")
    assert sum(by_move["x"]) == data["users_differing"] > 0
    assert dict(zip(by_move["y"], by_move["x"], strict=True)) == {
        f"{m['from']} -> {m['to']}": m["users"] for m in data["status_moves"]}


def test_the_warning_to_action_histogram_counts_every_warning(
        page: dict[str, Any], report: tuple[Path, dict[str, Any]]):
    _, data = report
    figure = page["figures"]["warning-to-action"]
    for side in ("baseline", "policy"):
        [trace] = _traces(figure, side)
        assert trace["type"] == "histogram"
        assert dict(zip(trace["x"], trace["y"], strict=True)) == {
            r["days"]: r[side] for r in data["warning_to_action_days"]}
        assert sum(trace["y"]) > 0


def test_the_summary_table_shows_the_report_s_deltas(browser: WebDriver, page: dict[str, Any],
                                                     report: tuple[Path, dict[str, Any]]):
    _, data = report
    shown = {}
    for row in browser.find_elements(By.CSS_SELECTOR, "#decisions tr[data-action]"):
        cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
        shown[row.get_attribute("data-action"), row.get_attribute("data-reason")] = cells
    expected = {(r["action"], r["reason"]): [r["action"], r["reason"], f"{r['baseline']:,}",
                                             f"{r['policy']:,}", f"{r['delta']:+,}"]
                for r in data["decisions"]}
    assert shown == expected
    assert any(r["delta"] for r in data["decisions"])  # the stricter policy closes more
    assert browser.find_element(By.ID, "policy").text == data["policy"] == "strict"
    moves = browser.find_elements(By.CSS_SELECTOR, "#status-moves tr td:last-child")
    assert [int(m.text.replace(",", "")) for m in moves] == [
        m["users"] for m in data["status_moves"]]
