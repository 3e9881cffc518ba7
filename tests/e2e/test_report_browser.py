"""The report file in Chromium with the network cut off: no request leaves it, no script error, the
charts draw, and the numbers on the page are the store's."""

from __future__ import annotations

import pytest
from report_project import TEST_SET, build_report_project

from promptmix_core.cli import main
from promptmix_core.scores import run_scores


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report-browser")
    store = build_report_project(folder / "banking.pmx")
    out = folder / "report.html"
    assert main(["report", str(store.path), "--out", str(out)]) == 0
    yield store, out
    store.close()


def test_report_opens_offline_draws_and_matches_the_store(report_file, page, shots):
    store, out = report_file
    outside, errors = [], []

    def guard(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(out.as_uri())
    page.wait_for_selector(".js-plotly-plot .main-svg")
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 3")
    page.screenshot(path=str(shots / "report-1280.png"), full_page=True)

    assert outside == [] and errors == []
    # every chart drew an SVG with marks in it
    n_charts = page.locator(".chart").count()
    assert n_charts >= 3 and page.locator(".js-plotly-plot .main-svg").count() >= n_charts
    assert page.locator(".js-plotly-plot .bars path, .js-plotly-plot .hm image, .js-plotly-plot .heatmaplayer *").count() > 0

    text = page.locator("main").inner_text()
    assert "Banking support" in text
    for c in store.load_task().class_names:
        assert c in text
    counts = store.count_examples()
    assert (f"People reviewed {counts['reviewed']} of {counts['total']} generated examples: {counts['accepted']} "
            f"accepted as labelled, {counts['overridden']} moved to another class, {counts['rejected']} rejected") in text
    rows = page.locator("table.runs tbody tr")
    runs = sorted(store.list_runs(), key=lambda r: r.id)
    assert rows.count() == len(runs)
    for i, run in enumerate(runs):
        s = run_scores(run.final_metrics)
        cells = rows.nth(i).locator("td")
        assert cells.nth(0).inner_text().startswith(f"#{run.id}")
        assert cells.nth(3).inner_text().splitlines() == [f"{s['accuracy']:.1%}", f"on {len(TEST_SET)} test texts"]
        assert cells.nth(4).inner_text() == f"{s['macro_f1']:.1%}"
        assert cells.nth(5).inner_text() == "no control recorded"
    # the chart's bars carry the same accuracies
    bar_text = page.locator(".chart").nth(1).locator(".bartext").evaluate_all("els => els.map(e => e.textContent)")
    assert sorted(bar_text) == sorted(f"{run_scores(r.final_metrics)['accuracy']:.1%}" for r in runs)


def test_report_prints_to_pdf(report_file, page, tmp_path):
    _store, out = report_file
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://") else route.abort())
    page.goto(out.as_uri())
    page.wait_for_selector(".js-plotly-plot .main-svg")
    pdf = tmp_path / "report.pdf"
    page.emulate_media(media="print")
    page.pdf(path=str(pdf), format="A4", print_background=True)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and data.count(b"/Type /Page") - data.count(b"/Type /Pages") >= 3
