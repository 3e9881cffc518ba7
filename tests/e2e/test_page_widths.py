"""Every page reads whole from 1024 px up: no metric value, widget label, button label or chosen
filter value is cut short (an ellipsis, or text wider than its box), at 1024 and at 1440 px.

The project has three runs (three score cards side by side on Results), two reviewers' decisions and
a test set: what a real project shows, not an empty page."""

from __future__ import annotations

import pytest
from e2e_helpers import wait_idle
from playwright.sync_api import expect
from report_project import build_report_project

# url path (the Task page is the default, at the root) and the page's title
PAGES = [("", "1 · Task"), ("generate", "2 · Generate"), ("review", "3 · Review"), ("train", "4 · Train"),
         ("results", "5 · Results")]
NAME = "Widths"

# Returns {checked: what was looked at, cut: [...]}. Elements whose text is cut with an ellipsis
# (or hidden overflow inside a metric, a widget label or a chip) and text inputs / selects whose
# value (or placeholder) is wider than the box it has, measured with the input's own font.
CHECK = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  const cut = [];
  let checked = 0;
  const ctx = document.createElement('canvas').getContext('2d');
  const shown = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  for (const el of main.querySelectorAll('*')) {
    if (!shown(el) || el.tagName === 'INPUT' || el.tagName === 'TEXTAREA') continue;
    const cs = getComputedStyle(el);
    const inWidget = el.closest('[data-testid="stMetric"], [data-testid="stWidgetLabel"], [data-baseweb="tag"]');
    if (cs.textOverflow !== 'ellipsis' && !(inWidget && (cs.overflow === 'hidden' || cs.overflowX === 'hidden'))) continue;
    const text = (el.innerText || '').trim();
    if (!text) continue;
    checked++;
    if (el.scrollWidth > el.clientWidth + 1) cut.push(`${text.slice(0, 60)} (needs ${el.scrollWidth}px, has ${el.clientWidth}px)`);
  }
  for (const el of main.querySelectorAll('input[type="text"], input[type="search"], input[role="combobox"]')) {
    if (!shown(el)) continue;
    const text = el.value || el.placeholder || '';
    if (!text) continue;
    checked++;
    const cs = getComputedStyle(el);
    ctx.font = `${cs.fontStyle} ${cs.fontWeight} ${cs.fontSize} ${cs.fontFamily}`;
    const need = ctx.measureText(text).width;
    const has = el.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
    if (need > has + 1) cut.push(`input "${text.slice(0, 60)}" (needs ${Math.round(need)}px, has ${Math.round(has)}px)`);
  }
  const metrics = main.querySelectorAll('[data-testid="stMetricValue"]').length;
  return {checked, metrics, cut};
}"""


@pytest.fixture
def project(app_server):
    store = build_report_project(app_server.projects_dir / f"{NAME}.pmx")
    run = store.list_runs()[0]  # a third, weaker run: three score cards on the Results page
    third = store.create_run(run.config, name="seeds only, for comparison")
    store.update_run(third, status="done", device="cpu",
                     final_metrics={**run.final_metrics, "test_accuracy": 0.64, "test_macro_f1": 0.58})
    store.close()
    return app_server


@pytest.mark.parametrize("width", [1024, 1440])
def test_no_page_cuts_a_value_or_label_short(project, page, width):
    page.set_viewport_size({"width": width, "height": 1000})
    seen = {}
    for name, title in PAGES:
        page.goto(f"{project.url}/{name}?project={NAME}")
        expect(page.locator("[data-testid='stMain'] h1").first).to_have_text(title)
        wait_idle(page)
        page.wait_for_timeout(700)
        out = page.evaluate(CHECK)
        for _ in range(30):  # a cold first run can paint its title before its widgets: wait for them
            if out["checked"] > 0:
                break
            page.wait_for_timeout(500)
            wait_idle(page)
            out = page.evaluate(CHECK)
        seen[name or "task"] = out
    problems = {p: o["cut"] for p, o in seen.items() if o["cut"]}
    assert not problems, f"at {width} px: {problems}"
    # the check looked at real content: metrics on Task and Results, filters on Review
    assert seen["task"]["metrics"] >= 4 and seen["results"]["metrics"] >= 6
    assert all(o["checked"] > 0 for o in seen.values()), seen
    assert seen["review"]["checked"] >= 5  # the five filters
