"""Status text that agrees with itself, in a real browser (issue 18): the Review page's list below the
card follows the decisions the card saves without a page rerun, so with Status = Pending it never
lists rows that are decided."""

from __future__ import annotations

import re
import time

import pytest
from e2e_helpers import wait_idle
from playwright.sync_api import expect

from synthetic_review import make_review_project

pytestmark = pytest.mark.browser
CARD = ".pmx-card"


def test_pending_list_drops_rows_the_card_decided(app_server, page):
    name = "listed"
    store = make_review_project(app_server.projects_dir / f"{name}.pmx", 2, seed=3)
    assert len(store.matching_ids(review_status="pending")) == 2
    store.close()
    page.goto(f"{app_server.url}/review?project={name}")
    wait_idle(page)
    expect(page.locator(f"{CARD}[data-ready='1']")).to_be_visible(timeout=30_000)
    main = page.locator("[data-testid='stMain']")
    expect(main.get_by_text("Examples shown (2)")).to_be_visible()
    page.locator("[data-testid='stMain'] h1").first.click()  # the keys go to the card
    page.keyboard.press("a")
    page.wait_for_timeout(200)
    page.keyboard.press("a")
    deadline = time.time() + 30
    while page.locator(CARD).get_attribute("data-outbox") != "0" and time.time() < deadline:
        page.wait_for_timeout(100)
    assert page.locator(CARD).get_attribute("data-outbox") == "0"
    # the list rereads the store within a few seconds (no page rerun, no click)
    expect(main.get_by_text("Examples shown (0)")).to_be_visible(timeout=15_000)
    expect(main.get_by_text(re.compile(r"Examples shown \([1-9]"))).to_have_count(0)
