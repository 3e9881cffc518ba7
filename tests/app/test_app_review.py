"""3 · Review: accept / override / reject / undo one by one, bulk actions, filters, conflicts."""

from __future__ import annotations

from app_helpers import by_key, texts

from promptmix_core import projects
from promptmix_core.demo import DEMO_NAME

REVIEW = "pages/3_review.py"
DEMO = DEMO_NAME


def _click(at, key):
    by_key(at.button, key).click()
    at.run()
    assert not at.exception, at.exception


def _current_id(at) -> int:
    cap = next(c.value for c in at.caption if c.value.startswith("Example #"))
    return int(cap.split("#")[1].split(" ")[0])


def test_review_page_shows_counts_and_the_first_example(make_app, demo_store):
    at = make_app(REVIEW)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Generated"] == "20" and metrics["Pending"] == "20" and metrics["Relabel agrees"] == "75%"
    first = demo_store.list_examples()[0]
    assert _current_id(at) == first.id
    assert first.text.split()[0] in texts(at)
    assert "Written for" in texts(at) and "card_lost_or_stolen" in texts(at)
    # the list of examples below
    assert len(at.dataframe) == 1


def test_accept_reject_override_undo(make_app, demo_store):
    at = make_app(REVIEW)
    ids = [e.id for e in demo_store.list_examples()]
    _click(at, "rv_accept")
    assert demo_store.get_example(ids[0]).review_status == "accepted"
    assert _current_id(at) == ids[1]  # moved on to the next pending example
    assert "Accepted example" in texts(at)

    _click(at, "rv_reject")
    assert demo_store.get_example(ids[1]).review_status == "rejected"
    assert _current_id(at) == ids[2]

    by_key(at.selectbox, f"rv_override::{DEMO}::{ids[2]}").select("transfer_not_received")
    _click(at, "rv_override")
    ex = demo_store.get_example(ids[2])
    assert ex.review_status == "overridden" and ex.review_label == "transfer_not_received"
    assert ex.final_label == "transfer_not_received"

    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Accepted"], metrics["Rejected"], metrics["Overridden"], metrics["Pending"]) == ("1", "1", "1", "17")

    # undo: show all, go back to the first example, set it to pending again
    by_key(at.selectbox, "rv_status::" + DEMO).select("All")
    at.run()
    assert _current_id(at) == ids[3]
    _click(at, "rv_prev")
    _click(at, "rv_prev")
    _click(at, "rv_prev")
    assert _current_id(at) == ids[0]
    _click(at, "rv_undo")
    assert demo_store.get_example(ids[0]).review_status == "pending"
    _click(at, "rv_next")
    assert _current_id(at) == ids[1]


def test_conflict_is_reported_and_nothing_is_overwritten(make_app, demo_store):
    at = make_app(REVIEW)
    first = demo_store.list_examples()[0]
    # another tab decides on the same example after this page loaded it
    demo_store.review(first.id, "rejected", expected_version=first.version)
    _click(at, "rv_accept")
    assert any("changed in another tab" in e.value for e in at.error)
    assert demo_store.get_example(first.id).review_status == "rejected"


def test_bulk_accept_where_the_relabel_agrees(make_app, demo_store):
    at = make_app(REVIEW)
    agree = [e.id for e in demo_store.list_examples(relabel_status="agree")]
    _click(at, "rv_bulk_agree")
    assert all(demo_store.get_example(i).review_status == "accepted" for i in agree)
    assert demo_store.count_examples()["accepted"] == len(agree) == 15
    assert f"Accepted {len(agree)} examples" in texts(at)
    # the rest: accept everything the filters show
    _click(at, "rv_bulk_shown")
    assert demo_store.count_examples()["reviewed"] == 20
    assert "Everything is reviewed" in texts(at)


def test_filters_and_search(make_app, demo_store):
    at = make_app(REVIEW)
    by_key(at.selectbox, "rv_agree::" + DEMO).select("Relabel differs")
    at.run()
    assert "Examples shown (5)" in texts(at)
    by_key(at.selectbox, "rv_agree::" + DEMO).select("Any")
    by_key(at.selectbox, "rv_class::" + DEMO).select("exchange_rate")
    at.run()
    shown = int(texts(at).split("Examples shown (")[1].split(")")[0])
    expected = len(demo_store.list_examples(label="exchange_rate"))
    assert shown == expected > 4
    by_key(at.selectbox, "rv_class::" + DEMO).select("All classes")
    by_key(at.text_input, "rv_search::" + DEMO).input("airline")
    at.run()
    assert "Examples shown (1)" in texts(at)
    assert "airline" in texts(at)
    by_key(at.text_input, "rv_search::" + DEMO).input("no such words anywhere")
    at.run()
    assert "No examples match these filters" in texts(at)


def test_empty_state_without_examples(make_app, projects_dir):
    from promptmix_core.demo import create_demo

    projects_dir.mkdir(parents=True, exist_ok=True)
    create_demo(projects.project_path("fresh", projects_dir), with_examples=False).close()
    at = make_app(REVIEW, project="fresh")
    assert "Nothing to review yet" in texts(at)


def test_llm_text_is_shown_literally(make_app, demo_store):
    """Markdown or HTML in generated text must not render as links, images or markup."""
    job = demo_store.create_job("generate", {}, status="done")
    evil = "**bold** [click](http://evil.example) <img src=x onerror=alert(1)> $x^2$ :red[red]"
    demo_store.add_examples([{"job_id": job, "slot": "x", "text": evil, "norm_text": "evil",
                              "intended_label": "exchange_rate", "mixed_with": "refund_not_showing", "alpha": 0.7}])
    at = make_app(REVIEW)
    by_key(at.text_input, "rv_search::" + DEMO).input("click")
    at.run()
    shown = [m.value for m in at.markdown if "click" in m.value]
    assert shown and all(r"\*\*bold\*\*" in v and r"\[click\]" in v and r"\<img" in v and r"\$" in v for v in shown)


def test_filters_are_kept_per_project(make_app, demo_store, projects_dir):
    """A class filter of one project never leaks into another project with other classes."""
    from promptmix_core.task import ClassSpec, Task

    other = projects.create_project("other", projects_dir, task=Task("t", [ClassSpec("pos", "", ["good"]),
                                                                            ClassSpec("neg", "", ["bad"])]))
    job = other.create_job("generate", {}, status="done")
    other.add_examples([{"job_id": job, "slot": "1", "text": "fine", "norm_text": "fine", "intended_label": "pos",
                         "mixed_with": "neg", "alpha": 0.8}])
    at = make_app(REVIEW)
    by_key(at.selectbox, "rv_class::" + DEMO).select("exchange_rate")
    at.run()
    by_key(at.sidebar.selectbox, "sb_project").select("other")
    at.run()
    assert not at.exception
    assert by_key(at.selectbox, "rv_class::other").value == "All classes"
    assert "Examples shown (1)" in texts(at)
