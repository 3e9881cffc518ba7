"""The whole workflow in a real browser: create a task, generate with the scripted LLM server,
review (accept / override / reject with keyboard shortcuts), train a tiny model while the live chart
gains points, compare on the Results page and download an export. Screenshots of every page go to
``artifacts/screenshots/``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time

import pytest
from e2e_helpers import act_and_wait, screenshot, wait_idle
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

TASK = {
    "name": "Support mini",
    "classes": [
        {"name": "card_lost", "description": "The customer lost their card or it was stolen.",
         "examples": ["I lost my card yesterday", "My card was stolen on the bus"]},
        {"name": "exchange_rate", "description": "Questions about currency exchange rates.",
         "examples": ["What exchange rate do you use?", "Is the euro rate good today?"]},
        {"name": "refund_request", "description": "The customer wants money back for a purchase.",
         "examples": ["I want a refund for this order", "How do I get my money back?"]},
    ],
}


def _main(page: Page):
    return page.locator("[data-testid='stMain']")


def _sidebar(page: Page):
    return page.locator("[data-testid='stSidebar']")


def _button(scope, name: str):
    return scope.locator("[data-testid='stButton'] button, [data-testid='stBaseButton-primary'], "
                         "[data-testid='stBaseButton-secondary']").filter(has_text=name).first


def _text_input(scope, label: str):
    return scope.get_by_label(label, exact=True)


def _metric(page: Page, label: str) -> str:
    m = _main(page).locator("[data-testid='stMetric']").filter(
        has=page.locator("[data-testid='stMetricLabel']", has_text=re.compile(rf"^{re.escape(label)}$")))
    return m.first.locator("[data-testid='stMetricValue']").inner_text().strip()


def _count(page: Page, name: str) -> int:
    """A count the review card shows (total, pending, accepted, overridden, rejected)."""
    return int(json.loads(page.locator(".pmx-card").get_attribute("data-counts"))[name])


def _goto(page: Page, base: str, path: str, project: str | None = None) -> None:
    page.goto(f"{base}/{path}" + (f"?project={project}" if project else ""))
    wait_idle(page)


def _nav(page: Page, title: str) -> None:
    _sidebar(page).locator("[data-testid='stSidebarNavLink']").filter(has_text=title).first.click()
    page.wait_for_timeout(300)
    wait_idle(page)


def _select(page: Page, scope, label: str, option: str) -> None:
    box = scope.locator("[data-testid='stSelectbox']").filter(has_text=label).first
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def test_full_workflow(page: Page, app_server, make_fake_llm, shots, tmp_path):
    # the scripted LLM server (tests/conftest.py), answering each call after 0.7 s so that the live
    # progress can be watched; the walk sets one call at a time below (with parallel calls a phase
    # lasts about one call, and a clean-clone CI run saw one state of the 1 s poll before the end)
    fake_llm = make_fake_llm(latency=0.7)
    t0 = time.time()
    base = app_server.url

    # ------------------------------------------------------------------ the demo opens on first start
    _goto(page, base, "")
    expect(_main(page).get_by_role("heading", name="1 · Task")).to_be_visible()
    expect(_sidebar(page)).to_contain_text("Banking support demo")
    screenshot(page, shots / "01_task_demo.png")

    # ------------------------------------------------------------------ a new project, task imported
    sb = _sidebar(page)
    sb.get_by_text("New project").click()
    _text_input(sb, "Name").fill("e2e")
    _text_input(sb, "Name").press("Enter")
    wait_idle(page)
    _button(sb, "Create project").click()
    wait_idle(page)
    expect(sb).to_contain_text("Created project")
    assert "project=e2e" in page.url

    task_file = tmp_path / "support.json"
    task_file.write_text(json.dumps(TASK))
    _main(page).get_by_role("tab").filter(has_text="Import a file").click()
    act_and_wait(page, lambda: page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(
        str(task_file)))
    expect(_main(page)).to_contain_text("3 classes, 6 seed examples")
    act_and_wait(page, _button(_main(page), "Replace the task with this file").click)
    expect(_main(page)).to_contain_text("The task is saved")

    # edit a description in the browser and save
    _main(page).get_by_role("tab").filter(has_text="Edit classes").click()
    desc = _main(page).locator("textarea[aria-label='Description']").nth(2)
    desc.fill("The customer asks for their money back for something they bought.")
    desc.press("Tab")
    wait_idle(page)
    _button(_main(page), "Save task").click()
    wait_idle(page)
    expect(_main(page)).to_contain_text("Saved the task: 3 classes, 6 seeds")
    expect(_main(page).get_by_label("Task name", exact=True)).to_have_value("Support mini")
    screenshot(page, shots / "02_task_saved.png")

    # ------------------------------------------------------------------ generate with the scripted LLM
    _nav(page, "2 · Generate")
    main = _main(page)
    main.get_by_text("Any OpenAI-compatible URL").click()
    wait_idle(page)
    for label, value in (("Base URL", fake_llm.base_url), ("Model", "fake-model")):
        _text_input(main, label).fill(value)
        _text_input(main, label).press("Enter")
        wait_idle(page)
    per_class = _text_input(main, "Examples per class")
    per_class.fill("4")
    per_class.press("Enter")
    wait_idle(page)
    main.get_by_text("How the examples are mixed").click()  # the method's settings, one click away
    group = _text_input(main, "Group size")
    group.fill("3")
    group.press("Enter")
    wait_idle(page)
    expect(main.locator("[data-testid='stPlotlyChart']").first).to_be_visible()
    main.get_by_text("More settings").click()
    parallel = _text_input(main, "Parallel calls")
    parallel.fill("1")
    parallel.press("Enter")
    wait_idle(page)
    _button(main, "Start generating").click()
    # the live panel shows the job and its progress; examples appear while it runs
    expect(main).to_contain_text("Job #", timeout=30_000)
    seen, saw_examples_live = set(), False
    deadline = time.time() + 120
    while time.time() < deadline:
        text = main.inner_text()
        m = re.search(r"(Generating|Relabelling): (\d+) / (\d+)", text)
        if m:
            seen.add((m.group(1), int(m.group(2))))
            if "Latest examples" in text and not saw_examples_live:
                saw_examples_live = True
                screenshot(page, shots / "03_generate_live.png")
        if "Finished: 12 / 12" in text:
            break
        page.wait_for_timeout(250)
    expect(main).to_contain_text("Finished: 12 / 12", timeout=5_000)
    assert len(seen) >= 2, f"the progress never moved: {seen}"
    assert saw_examples_live, "no examples were shown while the job ran"
    wait_idle(page)
    expect(main).to_contain_text("LLM calls")
    assert int(_metric(page, "card_lost")) == 4
    screenshot(page, shots / "04_generate_done.png")

    # ------------------------------------------------------------------ review with shortcuts
    _nav(page, "3 · Review")
    main = _main(page)
    card = page.locator(".pmx-card[data-ready='1']")
    expect(card).to_be_visible(timeout=30_000)
    assert (_count(page, "total"), _count(page, "pending")) == (12, 12)
    screenshot(page, shots / "05_review.png")

    def current_id() -> int:
        cap = main.get_by_text(re.compile(r"^Example #\d+")).first.inner_text()
        return int(re.search(r"#(\d+)", cap).group(1))

    first = current_id()
    main.get_by_role("heading", name="3 · Review").click()  # focus out of any input
    page.keyboard.press("a")  # accept: the next example shows at once
    expect(card).not_to_have_attribute("data-current-id", str(first))
    second = current_id()
    assert second != first
    expect(card.locator(".pmx-saved")).to_contain_text("saved")  # the card says the decision is saved
    page.keyboard.press("o")  # override: the class picker, with type-ahead
    page.keyboard.type("refund")
    page.keyboard.press("Enter")
    expect(card).not_to_have_attribute("data-current-id", str(second))
    third = current_id()
    page.keyboard.press("x")  # reject
    expect(card).not_to_have_attribute("data-current-id", str(third))
    expect(card).to_have_attribute("data-outbox", "0")
    assert (_count(page, "accepted"), _count(page, "overridden"), _count(page, "rejected")) == (1, 1, 1)
    assert _count(page, "pending") == 9
    screenshot(page, shots / "06_review_decided.png")

    # a refresh loses nothing: same project, decisions still there
    page.reload()
    wait_idle(page)
    expect(_sidebar(page)).to_contain_text("e2e")
    expect(page.locator(".pmx-card[data-ready='1']")).to_be_visible(timeout=30_000)
    assert _count(page, "rejected") == 1

    # ------------------------------------------------------------------ train a tiny model, watch the chart
    _nav(page, "4 · Train")
    main = _main(page)
    main.get_by_text("Reviewed · your decisions").click()
    wait_idle(page)
    main.get_by_text("A2 · the LLM relabel").click()
    wait_idle(page)
    main.get_by_text("Fine-tune a transformer").click()  # the default student (SetFit here) has no live curve
    wait_idle(page)
    for label, value in (("Epochs", "1"), ("Minimum steps", "60")):
        _text_input(main, label).fill(value)
        _text_input(main, label).press("Enter")
        wait_idle(page)
    screenshot(page, shots / "07_train_settings.png")
    _button(main, "Start training").click()
    expect(main).to_contain_text("Training job #", timeout=30_000)
    # the chart gains points while the job runs
    counts = []
    deadline = time.time() + 150
    while time.time() < deadline:
        text = main.inner_text()
        m = re.search(r"(\d+) logged steps", text)
        if m:
            counts.append(int(m.group(1)))
            if len(counts) == 3:
                screenshot(page, shots / "08_train_live.png")
        if "See the results and export" in text:
            break
        page.wait_for_timeout(700)
    assert counts and len(set(counts)) >= 2, f"the live chart never grew: {counts}"
    expect(main.get_by_text("See the results and export")).to_be_visible(timeout=30_000)
    expect(main.locator("[data-testid='stPlotlyChart']").first).to_be_visible()
    screenshot(page, shots / "09_train_done.png")

    # ------------------------------------------------------------------ results and export
    _nav(page, "5 · Results")
    main = _main(page)
    # no test set and no held-out rows (generated examples are no measure): the page says so, never a score
    expect(main).to_contain_text("finished without scores")
    expect(main).to_contain_text("Add real labelled texts")
    expect(main.locator("[data-testid='stMetric']").filter(has_text="Accuracy")).to_have_count(0)
    charts = main.locator("[data-testid='stPlotlyChart']").count()
    _button(main, "Draw the map").click()
    wait_idle(page, timeout=120_000)
    expect(main.locator("[data-testid='stPlotlyChart']")).to_have_count(charts + 1, timeout=120_000)
    wait_idle(page)  # the run that drew the map has finished (the export below is current again)
    with page.expect_download() as dl:
        main.get_by_role("button", name="CSV", exact=True).click()
    path = dl.value.path()
    rows = list(csv.DictReader(io.StringIO(open(path, encoding="utf-8").read(), newline="")))
    assert dl.value.suggested_filename == "e2e-dataset.csv"
    assert len(rows) == 6 + 12 - 1  # seeds + generated - the rejected one
    assert {r["source"] for r in rows} == {"seed", "generated"}
    assert sum(r["label"] == "refund_request" and r["review_status"] == "overridden" for r in rows) == 1
    screenshot(page, shots / "10_results.png")
    assert time.time() - t0 < 240, f"the browser workflow took {time.time() - t0:.0f} s"


def test_deep_link_after_a_restart_opens_inside_the_app(page: Page, app_server, shots):
    """The first request of a fresh server is a deep link: the page must still get the sidebar,
    the navigation and the project from the URL."""
    from promptmix_core import projects
    from promptmix_core.demo import DEMO_NAME

    projects.ensure_demo(app_server.projects_dir)  # the server has not created it yet
    _goto(page, app_server.url, "review", project=DEMO_NAME.replace(" ", "+"))
    expect(_main(page).get_by_role("heading", name="3 · Review")).to_be_visible()
    nav = _sidebar(page).locator("[data-testid='stSidebarNavLink']")
    expect(nav).to_have_count(5)
    expect(nav.first).to_contain_text("1 · Task")
    expect(_sidebar(page)).to_contain_text("Banking support demo")
    expect(page.locator(".pmx-card[data-ready='1']")).to_be_visible(timeout=30_000)
    assert _count(page, "total") == 20
    screenshot(page, shots / "11_review_deep_link.png")
