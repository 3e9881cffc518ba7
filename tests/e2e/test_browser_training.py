"""Training on what the reviewer decided, scored on an uploaded test set, in a real browser: the Train
page defaults to the reviewed labels, a test set is uploaded and checked, a quick student and a tiny
fine-tuning run are scored on it (accuracy, confusion matrix over every class), the live accuracy
axis stays within 0-100 %, and "Try the model" classifies a typed text and a file of texts.
Screenshots go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import csv
import io
import re
import time

import pytest
from e2e_helpers import act_and_wait, screenshot, wait_idle
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

CLASSES = ["card_lost_or_stolen", "declined_card_payment", "transfer_not_received", "exchange_rate",
           "refund_not_showing"]
TEST_CSV = """text,label
Somebody took my wallet with the card inside,card_lost_or_stolen
I can't find my bank card anywhere,card_lost_or_stolen
The shop refused my card at checkout,declined_card_payment
My payment at the restaurant did not go through,declined_card_payment
The money I sent to my sister never arrived,transfer_not_received
My transfer from last week is still missing,transfer_not_received
What rate do you use to convert pounds to euros?,exchange_rate
How much is one dollar in yen with you?,exchange_rate
The shop says it refunded me but I see nothing,refund_not_showing
Where is the refund for my returned shoes?,refund_not_showing
Hello there,greeting
"""


def _main(page: Page):
    return page.locator("[data-testid='stMain']")


def _button(scope, name: str):
    return scope.locator("[data-testid='stButton'] button, [data-testid='stBaseButton-primary'], "
                         "[data-testid='stBaseButton-secondary']").filter(has_text=name).first


def _metric(page: Page, label: str) -> str:
    m = _main(page).locator("[data-testid='stMetric']").filter(
        has=page.locator("[data-testid='stMetricLabel']", has_text=re.compile(rf"^{re.escape(label)}$")))
    return m.first.locator("[data-testid='stMetricValue']").inner_text().strip()


def _start_and_wait(page: Page, timeout_s: float = 240) -> list[list[str]]:
    """Start training and wait for that job to finish; returns the accuracy-axis tick labels seen
    while it ran."""
    main = _main(page)
    _button(main, "Start training").click()
    expect(main).to_contain_text("Started training job #", timeout=30_000)
    job = re.search(r"Started training job #(\d+)", main.inner_text()).group(1)
    expect(main.get_by_role("heading", name=f"Training job #{job}")).to_be_visible(timeout=30_000)
    ticks_seen = []
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        acc = main.locator("[data-testid='stPlotlyChart']").filter(has_text="Validation accuracy")
        if acc.count():
            try:
                ticks_seen.append(acc.first.locator("g.ytick text").all_text_contents())
            except Exception:  # noqa: BLE001 - the chart was being redrawn
                pass
        if main.get_by_text("See the results and export").count():
            break
        page.wait_for_timeout(700)
    expect(main.get_by_text("See the results and export")).to_be_visible(timeout=30_000)
    wait_idle(page)
    return ticks_seen


def _percent(ticks: list[str]) -> list[float]:
    return [float(t.replace("%", "").replace("\u2212", "-")) for t in ticks if t.strip()]


def test_train_on_review_score_on_test_set_and_try_the_model(page: Page, app_server, shots, tmp_path):
    from promptmix_core import projects
    from promptmix_core.demo import DEMO_NAME

    projects.ensure_demo(app_server.projects_dir)
    store = projects.open_project(DEMO_NAME, app_server.projects_dir)
    ex = store.list_examples()
    store.review(ex[0].id, "rejected")
    store.review(ex[1].id, "overridden", label="exchange_rate")
    store.review(ex[2].id, "accepted")
    base = app_server.url
    page.goto(f"{base}/train?project={DEMO_NAME.replace(' ', '+')}")
    wait_idle(page)
    main = _main(page)

    # ------------------------------------------------------------------ the review decides by default
    expect(main.get_by_role("radio", name=re.compile(r"^Reviewed"))).to_be_checked()
    expect(main.get_by_role("radio", name="Leave them out")).to_be_checked()
    expect(main).to_contain_text("Left out: 1 rejected · 17 pending (left out)")
    # the pending ones follow a visible choice: A2 brings them back
    main.get_by_text("A2 · the LLM relabel").click()
    wait_idle(page)
    expect(main).to_contain_text("Left out: 1 rejected")
    expect(main).not_to_contain_text("pending (left out)")

    # ------------------------------------------------------------------ upload a test set, checked row by row
    main.get_by_text("Test set · none yet").click()
    f = tmp_path / "real-test.csv"
    f.write_text(TEST_CSV)
    act_and_wait(page, lambda: main.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(f)))
    expect(main).to_contain_text("10 usable rows of 11")
    expect(main).to_contain_text("row 12: 'greeting' is not a class of the task")
    act_and_wait(page, _button(main, "Use the 10 usable rows as the test set").click)
    expect(main).to_contain_text("Saved the test set: 10 labelled examples")
    expect(main).to_contain_text("scored on 10 real labelled examples")
    screenshot(page, shots / "20_train_reviewed_test_set.png")

    # ------------------------------------------------------------------ the quick student, in seconds
    main.get_by_text("Quick student: MiniLM embeddings").click()
    wait_idle(page)
    _start_and_wait(page, 180)
    assert _metric(page, "Tested on") == "10"
    expect(main).to_contain_text("Scores on test set.")
    screenshot(page, shots / "21_train_quick_student_done.png")

    # ------------------------------------------------------------------ a tiny fine-tuning run, live chart
    main.get_by_text("Fine-tune a transformer").click()
    wait_idle(page)
    for label, value in (("Epochs", "1"), ("Minimum steps", "8")):
        main.get_by_label(label, exact=True).fill(value)
        main.get_by_label(label, exact=True).press("Enter")
        wait_idle(page)
    expect(main).to_contain_text("8 steps = 2 epochs over")
    expect(main).to_contain_text("Minimum steps 8 raises the 1 epoch you asked for to 2")
    _start_and_wait(page, 240)
    # no real validation rows: a score on held-out generated examples is not a measure, so it is not charted
    expect(main.locator("[data-testid='stPlotlyChart']").filter(has_text="Loss").first).to_be_visible()
    expect(main).to_contain_text("No validation chart")
    assert _metric(page, "Tested on") == "10"
    expect(main).to_contain_text("Seeds-only control")  # the run beside its seeds-only control
    expect(main.get_by_text(re.compile(r"reviewed · 8 steps = 2 epochs")).first).to_be_visible()  # named after its plan
    screenshot(page, shots / "22_train_finetune_done.png")

    # ------------------------------------------------------------------ results: test scores over every class
    page.goto(f"{base}/results?project={DEMO_NAME.replace(' ', '+')}")
    wait_idle(page)
    main = _main(page)
    expect(main).to_contain_text("on 10 test examples")
    expect(main).to_contain_text("Scores on 10 test examples, over all 5 classes")
    heat = main.locator("[data-testid='stPlotlyChart']").filter(has=page.locator("g.heatmaplayer")).first
    expect(heat).to_be_visible()
    y_labels = heat.locator("g.ytick text").all_text_contents()
    assert sorted(y_labels) == sorted(CLASSES), y_labels

    # ------------------------------------------------------------------ try the model
    main.get_by_label("Text", exact=True).fill("Someone stole my card on the bus, please block it")
    main.get_by_label("Text", exact=True).press("Tab")
    wait_idle(page)
    _button(main, "Classify").click()
    wait_idle(page, timeout=120_000)
    expect(main).to_contain_text("Predicted class:", timeout=120_000)
    bars = main.locator("[data-testid='stPlotlyChart']").filter(has_text="probability").first
    expect(bars).to_be_visible()
    assert sorted(bars.locator("g.ytick text").all_text_contents()) == sorted(CLASSES)
    texts_file = tmp_path / "texts.csv"
    texts_file.write_text("text\nmy card is gone\nthe transfer did not arrive\nwhat is the euro rate\n")
    act_and_wait(page, lambda: main.locator("[data-testid='stFileUploaderDropzoneInput']").last.set_input_files(
        str(texts_file)))
    act_and_wait(page, _button(main, "Classify 3 texts").click, timeout=120_000)
    expect(main).to_contain_text("Classified 3 texts.", timeout=120_000)
    screenshot(page, shots / "23_results_try_the_model.png")
    with page.expect_download() as dl:
        main.get_by_role("button", name="Predictions (CSV)").click()
    rows = list(csv.DictReader(io.StringIO(open(dl.value.path(), encoding="utf-8").read(), newline="")))
    assert [r["text"] for r in rows] == ["my card is gone", "the transfer did not arrive", "what is the euro rate"]
    assert set(rows[0]) == {"text", "label", "confidence", *CLASSES}
    assert all(r["label"] in CLASSES for r in rows)
    store.close()
