"""The review card in a real browser, on projects of 2,000 generated examples: keys typed faster than
the server answers all land (checked through ``promptmix export``), undo works whatever the filter
shows, a refresh or a closed tab loses nothing, only another tab's change is a conflict, and the time
from key to the next card is measured in the browser and printed. Screenshots at 1280 and 1024 px go
to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_helpers import wait_idle
from playwright.sync_api import Page, expect

from promptmix_core.store import ProjectStore
from synthetic_review import make_review_project

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
N = 2000
CARD = ".pmx-card"


def _project(server, name: str) -> tuple[Path, list[int], list[str]]:
    path = server.projects_dir / f"{name}.pmx"
    store = make_review_project(path, N, seed=len(name))
    ids = store.matching_ids(review_status="pending")
    classes = store.load_task().class_names
    store.close()
    return path, ids, classes


def _open(page: Page, server, name: str) -> None:
    page.goto(f"{server.url}/review?project={name}")
    wait_idle(page)
    expect(page.locator(f"{CARD}[data-ready='1']")).to_be_visible(timeout=30_000)


def _card(page: Page):
    return page.locator(CARD)


def _wait_saved(page: Page, timeout: float = 30.0) -> None:
    """Until the card has no decision waiting for the server."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if _card(page).get_attribute("data-outbox") == "0":
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"decisions still waiting: {_card(page).get_attribute('data-outbox')}")


def _current(page: Page) -> int:
    return int(_card(page).get_attribute("data-current-id"))


def _export(path: Path, tmp_path: Path) -> dict[int, dict]:
    """The project's data set through the command line, by example id (pending ones included)."""
    out = tmp_path / f"export-{time.time_ns()}.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "promptmix_core.cli", "export", str(path), "--out", str(out), "--labels", "reviewed",
         "--pending", "a2", "--no-seeds"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    return {r["example_id"]: r for r in rows}


def _statuses(path: Path, ids: list[int]) -> list[str]:
    store = ProjectStore(path, create=False)
    try:
        return [store.get_example(i).review_status for i in ids]
    finally:
        store.close()


def _select(page: Page, label: str, option: str) -> None:
    main = page.locator("[data-testid='stMain']")
    main.locator("[data-testid='stSelectbox']").filter(has_text=label).first.click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def _truncated(page: Page) -> list[str]:
    """Texts cut off with an ellipsis (or clipped) in the main area, the card included."""
    return page.evaluate("""() => {
      const out = [];
      const visit = (root) => {
        for (const el of root.querySelectorAll('*')) {
          if (el.shadowRoot) visit(el.shadowRoot);
          if (!el.childElementCount && el.textContent.trim() && el.closest('[data-testid="stDataFrame"]') === null) {
            const st = getComputedStyle(el);
            const clips = st.textOverflow === 'ellipsis' || st.overflowX === 'hidden';
            if (clips && el.scrollWidth > el.clientWidth + 1) out.push(el.textContent.trim().slice(0, 60));
          }
        }
      };
      visit(document.querySelector('[data-testid="stMain"]'));
      return out;
    }""")


def _timings(page: Page) -> list[float]:
    return page.evaluate("() => window.__pmxReview.timings.slice()")


def test_forty_keys_50ms_apart_all_land(page: Page, module_server, tmp_path, shots):
    path, ids, classes = _project(module_server, "fast keys")
    store = ProjectStore(path, create=False)
    label = {r["id"]: r["label"] for r in store.export_rows()}
    relabelled = {r["id"]: r["relabel_status"] for r in store.export_rows()}
    store.close()
    page.set_viewport_size({"width": 1280, "height": 1000})
    _open(page, module_server, "fast+keys")
    assert _current(page) == ids[0]
    main = page.locator("[data-testid='stMain']")
    main.get_by_text("Bulk actions", exact=True).click()  # its buttons too
    wait_idle(page)
    main.locator("[data-testid='stButton'] button").filter(has_text="could not relabel").click()  # and the question
    wait_idle(page)
    expect(main).to_contain_text("Reject 128 pending examples the LLM could not relabel?")
    assert _truncated(page) == [], "nothing may be cut off at 1280 px"
    page.screenshot(path=str(shots / "review_card_1280.png"), full_page=True)
    main.locator("[data-testid='stButton'] button").filter(has_text="Cancel").click()
    wait_idle(page)
    page.locator("[data-testid='stMain'] h1").first.click()  # the keys go to the card

    keys = ["a", "x", "1", "a", "3", " ", "x", "2", "Enter", "5"] * 4
    expected: dict[int, tuple[str, str | None]] = {}
    for i, k in enumerate(keys):
        page.keyboard.press(k)
        if k in ("a", " ", "Enter"):
            expected[ids[i]] = ("accepted", label[ids[i]])
        elif k == "x":
            expected[ids[i]] = ("rejected", None)
        else:
            expected[ids[i]] = ("overridden", classes[int(k) - 1])
        page.wait_for_timeout(50)
    # every key moved the card on (the last one may still sit in the browser's input queue for a moment)
    expect(_card(page)).to_have_attribute("data-current-id", str(ids[40]), timeout=5_000)
    _wait_saved(page)
    assert _card(page).get_attribute("data-saved") == "40"
    expect(_card(page).locator(".pmx-msg .pmx-bad")).to_have_count(0)
    expect(page.locator("[data-testid='stMain']")).not_to_contain_text("changed in another tab")

    rows = _export(path, tmp_path)
    for ex_id, (status, lab) in expected.items():
        if status == "rejected":
            assert ex_id not in rows, f"rejected #{ex_id} was exported"
        else:
            assert rows[ex_id]["review_status"] == status and rows[ex_id]["label"] == lab, (ex_id, rows[ex_id])
    assert sum(r["review_status"] != "pending" for r in rows.values()) == 32  # 40 minus 8 rejected
    # pending ones carry the LLM relabel (those it could not relabel are left out, as on the Results page)
    pending_kept = [i for i in ids[40:] if relabelled[i] != "unparseable"]
    assert sorted(i for i, r in rows.items() if r["review_status"] == "pending") == pending_kept

    t = _timings(page)
    assert len(t) == 40
    print(f"\nkey to next card over {len(t)} keys typed 50 ms apart: median {statistics.median(t):.1f} ms, "
          f"p95 {sorted(t)[int(0.95 * len(t)) - 1]:.1f} ms, max {max(t):.1f} ms; "
          f"server time of the last answer {_card(page).get_attribute('data-server-ms')} ms")

    page.set_viewport_size({"width": 1024, "height": 900})
    page.wait_for_timeout(500)
    card_box = _card(page).bounding_box()
    assert card_box and card_box["x"] + card_box["width"] <= 1024
    page.screenshot(path=str(shots / "review_card_1024.png"))


def test_undo_after_a_filter_hides_the_example(page: Page, module_server, tmp_path):
    path, ids, classes = _project(module_server, "undo")
    store = ProjectStore(path, create=False)
    job = store.list_jobs()[0].id
    evil = ('**bold** [click](http://evil.example) <img src=x onerror="window.__pwned=1"> '
            "<script>window.__pwned=2</script> $x^2$")
    store.add_examples([{"job_id": job, "slot": "evil", "text": evil, "norm_text": "evil one",
                         "intended_label": classes[0], "mixed_with": classes[1], "alpha": 0.7}])
    rows = {r["id"]: r for r in store.export_rows()}
    store.close()
    _open(page, module_server, "undo")
    page.keyboard.press("a")
    page.keyboard.press("x")
    expect(_card(page)).to_have_attribute("data-current-id", str(ids[2]))  # both left the "Pending" view
    _wait_saved(page)
    # a class filter that shows neither of them
    hidden = next(c for c in classes if all(c not in (rows[i]["intended_label"], rows[i]["llm_label"],
                                                      rows[i]["mixed_with"]) for i in ids[:2]))
    _select(page, "Class", hidden)
    expect(_card(page)).not_to_have_attribute("data-current-id", str(ids[2]))
    assert _current(page) not in ids[:2]

    page.keyboard.press("u")  # undoes the reject of the second one, shown although the filter hides it
    expect(_card(page)).to_have_attribute("data-current-id", str(ids[1]), timeout=5_000)
    expect(_card(page).locator(".pmx-reasons")).to_contain_text("outside the current filter")
    _wait_saved(page)
    page.keyboard.press("u")  # and again: the accept of the first one
    expect(_card(page)).to_have_attribute("data-current-id", str(ids[0]))
    _wait_saved(page)
    store = ProjectStore(path, create=False)
    assert [store.get_example(i).review_status for i in ids[:2]] == ["pending", "pending"]
    store.close()
    page.keyboard.press("u")
    expect(_card(page).locator(".pmx-msg")).to_contain_text("Nothing to undo")

    # LLM text in the card is text, never markup
    _select(page, "Class", "All classes")
    search = page.locator("[data-testid='stMain']").get_by_label("Search text", exact=True)
    search.fill("click")
    search.press("Enter")
    wait_idle(page)
    expect(_card(page).locator(".pmx-text")).to_have_text(evil)
    assert page.evaluate("() => document.querySelector('[data-testid=stBidiComponentIsolated]')"
                         ".shadowRoot.querySelectorAll('img, a, script:not([src])').length") == 0
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.__pwned === undefined")


def test_a_refresh_or_a_closed_tab_loses_nothing(page: Page, module_server, tmp_path):
    path, ids, _classes = _project(module_server, "refresh")
    _open(page, module_server, "refresh")
    for _ in range(12):
        page.keyboard.press("x")
        page.wait_for_timeout(30)
    page.reload()  # at once, whatever is still on its way
    expect(page.locator(f"{CARD}[data-ready='1']")).to_be_visible(timeout=30_000)
    _wait_saved(page)
    said = _card(page).locator(".pmx-msg").inner_text()  # what the card said, should a decision be missing
    assert _statuses(path, ids[:13]) == ["rejected"] * 12 + ["pending"], said

    # the queue continues where the decisions left it
    expect(_card(page)).to_have_attribute("data-current-id", str(ids[12]))
    for _ in range(8):
        page.keyboard.press("a")
        page.wait_for_timeout(30)
    context = page.context
    page.close()  # the tab is closed right after the keys
    again = context.new_page()
    _open(again, module_server, "refresh")
    _wait_saved(again)
    assert _statuses(path, ids[:21]) == ["rejected"] * 12 + ["accepted"] * 8 + ["pending"]
    rows = _export(path, tmp_path)
    assert [rows[i]["review_status"] for i in ids[12:20]] == ["accepted"] * 8
    assert sum(r["review_status"] != "pending" for r in rows.values()) == 8
    again.close()


def test_only_another_tab_is_a_conflict(page: Page, module_server, tmp_path):
    path, ids, _classes = _project(module_server, "two tabs")
    _open(page, module_server, "two+tabs")
    other = page.context.new_page()  # a second tab: its own tab id, the same browser
    _open(other, module_server, "two+tabs")
    other.keyboard.press("x")
    _wait_saved(other)
    page.keyboard.press("a")  # this tab loaded #1 before the other tab rejected it
    _wait_saved(page)
    expect(_card(page).locator(".pmx-msg .pmx-bad")).to_contain_text(f"Example #{ids[0]} was changed in another tab")
    store = ProjectStore(path, create=False)
    assert store.get_example(ids[0]).review_status == "rejected"
    # back to it: it shows the other tab's decision, and deciding again now is fine; so are many keys of
    # one tab on one example
    page.keyboard.press("k")
    expect(_card(page).locator(".pmx-decision")).to_contain_text("Rejected")
    for k in ("a", "k", "x", "k", "2"):
        page.keyboard.press(k)
        page.wait_for_timeout(20)
    _wait_saved(page)
    ex = store.get_example(ids[0])
    assert (ex.review_status, ex.review_label) == ("overridden", _classes[1])
    expect(_card(page).locator(".pmx-msg .pmx-bad")).to_have_count(1)
    store.close()
    other.close()


def _set_judge(path: Path, values: dict[int, tuple[str, float]]) -> None:
    """The student judge's suggestions, written straight into the project file."""
    import sqlite3

    conn = sqlite3.connect(path)
    conn.executemany("UPDATE examples SET judge_label = ?, judge_confidence = ? WHERE id = ?",
                     [(lab, conf, i) for i, (lab, conf) in values.items()])
    conn.commit()
    conn.close()


def test_both_suggestions_show_and_a_bulk_accept_is_undone_after_a_reload(page: Page, module_server, shots):
    path, ids, classes = _project(module_server, "judges")
    store = ProjectStore(path, create=False)
    rows = {r["id"]: r for r in store.export_rows()}
    store.close()
    agree = next(i for i in ids if rows[i]["relabel_status"] == "agree")
    differ = next(i for i in ids if rows[i]["relabel_status"] == "changed")
    other = next(c for c in classes if c not in (rows[differ]["llm_label"], rows[differ]["intended_label"]))
    _set_judge(path, {agree: (rows[agree]["llm_label"], 0.93), differ: (other, 0.41)})
    page.set_viewport_size({"width": 1280, "height": 1000})
    _open(page, module_server, "judges")
    card = _card(page)
    page.locator("[data-testid='stMain'] h1").first.click()  # the keys go to the card
    while _current(page) != agree:
        page.keyboard.press("j")
    expect(card.locator(".pmx-relabel")).to_contain_text(rows[agree]["llm_label"])
    expect(card.locator(".pmx-judge")).to_contain_text(rows[agree]["llm_label"])
    expect(card.locator(".pmx-judge")).to_contain_text("confidence 0.93")
    expect(card.locator(".pmx-agree")).to_contain_text("LLM and judge agree")
    expect(card.locator(".pmx-accept-what")).to_contain_text(f"saved as {rows[agree]['llm_label']}")
    page.screenshot(path=str(shots / "review_card_judges_agree.png"))
    while _current(page) != differ:
        page.keyboard.press("j" if ids.index(differ) > ids.index(_current(page)) else "k")
    expect(card.locator(".pmx-judge")).to_contain_text(other)
    expect(card.locator(".pmx-agree")).to_contain_text("LLM and judge disagree")
    expect(card.locator(".pmx-agree")).to_contain_text(f"the judge says {other}")
    expect(card.locator(".pmx-accept-what")).to_contain_text(f"saved as {rows[differ]['llm_label']} (LLM relabel)")
    page.screenshot(path=str(shots / "review_card_judges_disagree.png"))
    # an example nobody judged says so
    page.keyboard.press("j")
    expect(card.locator(".pmx-judge")).to_contain_text("not judged yet")

    # a bulk accept, then a reload: U on the card still undoes it as one step, as the page said
    main = page.locator("[data-testid='stMain']")
    main.get_by_text("Bulk actions", exact=True).click()
    wait_idle(page)
    main.locator("[data-testid='stButton'] button").filter(has_text="where the relabel agrees").click()
    wait_idle(page)
    main.locator("[data-testid='stButton'] button").filter(has_text="Yes, accept").click()
    wait_idle(page)
    expect(main).to_contain_text("Press U on the card")
    n_bulk = sum(1 for s in _statuses(path, ids) if s == "accepted")
    assert n_bulk > 100
    expect(card.locator(".pmx-undo-what")).to_contain_text(f"Undo the bulk accept of {n_bulk:,} examples")
    page.reload()
    expect(page.locator(f"{CARD}[data-ready='1']")).to_be_visible(timeout=30_000)
    wait_idle(page)
    expect(card.locator(".pmx-undo-what")).to_contain_text(f"Undo the bulk accept of {n_bulk:,} examples")
    page.locator("[data-testid='stMain'] h1").first.click()
    page.keyboard.press("u")
    _wait_saved(page)
    deadline = time.time() + 30
    while time.time() < deadline and "accepted" in _statuses(path, ids):
        page.wait_for_timeout(200)
    assert "accepted" not in _statuses(path, ids)


def test_the_first_request_after_a_server_start_can_be_a_deep_link(page: Page, app_server):
    """A link to the Review page of a project, opened as the very first request of a fresh server,
    opens that page inside the app's shell (no 'Page not found', no raw file names in the sidebar)."""
    path, ids, _classes = _project(app_server, "deep link")
    page.goto(f"{app_server.url}/review?project=deep+link")
    wait_idle(page)
    expect(page.locator(f"{CARD}[data-ready='1']")).to_be_visible(timeout=30_000)
    expect(page.locator("[data-testid='stMain'] h1").first).to_have_text("3 · Review")
    assert _current(page) == ids[0]
    page.wait_for_timeout(1000)
    body = page.locator("body")
    expect(body).not_to_contain_text("Page not found")
    nav = page.locator("[data-testid='stSidebarNav']")
    expect(nav).to_contain_text("3 · Review")
    expect(nav).not_to_contain_text("review card")
    expect(page.locator("[data-testid='stSidebar']")).to_contain_text("deep link")
