"""3 · Review: the card's queue and counts, decisions sent by the card (accept / override / reject /
undo), conflicts, bulk actions with confirmation and undo, filters, the paged list.

AppTest cannot run the card's JavaScript, so these tests speak its protocol: they read the data the
page gives the card and set the state the card sends (``sync``); the browser tests
(``tests/e2e/test_review_card.py``) press the real keys.
"""

from __future__ import annotations

import json

from app_helpers import by_key, texts
from app_session import card_data

from promptmix_core import projects
from promptmix_core.demo import DEMO_NAME

REVIEW = "app_pages/3_review.py"
DEMO = DEMO_NAME
CARD = f"rv_card::{DEMO}"


def _click(at, key):
    by_key(at.button, key).click()
    at.run()
    assert not at.exception, at.exception


class Card:
    """Plays the browser side of the card: keeps the queue window and sends operations."""

    def __init__(self, at, tab="tab-A", key=CARD):
        self.at, self.tab, self.key = at, tab, key
        self.req, self.n, self.items, self.outbox = 0, 0, [], []
        self.qid = None
        self.uid = card_data(at)["project_uid"]  # the project's identity: the card sends it with every batch
        self.take(card_data(at))
        self.send()  # the card says hello at once: the page learns the tab's id


    def take(self, data):
        page = data.get("page")
        if page and page["qid"] != self.qid:
            self.qid, self.items = page["qid"], page["items"]
        acks = data.get("acks") or {}
        self.outbox = [op for op in self.outbox if op["cid"] not in acks]
        self.data = data
        return data

    def item(self, i=0):
        return self.items[i]

    def send(self, *ops, want=None):
        for op in ops:
            self.n += 1
            op = {"cid": f"c{self.tab}{self.n}", "tab": self.tab, **op}
            self.outbox.append(op)
        self.req += 1
        self.at.session_state[self.key] = {"sync": {
            "project": DEMO, "uid": self.uid, "inst": "inst-1", "tab": self.tab, "req": self.req, "qid": self.qid, "want": want,
            "ops": list(self.outbox)}}
        self.at.run()
        assert not self.at.exception, self.at.exception
        return self.take(card_data(self.at))

    def decide(self, ex, action, label=None):
        data = self.send({"id": ex["id"], "action": action, "label": label, "base": ex["version"]})
        return data["acks"][f"c{self.tab}{self.n}"]

    def undo(self, unit):
        data = self.send({"undo": unit})
        return data["acks"][f"c{self.tab}{self.n}"]


def test_review_page_shows_counts_and_the_first_example(make_app, demo_store):
    at = make_app(REVIEW)
    data = card_data(at)
    counts = data["counts"]  # the card shows them, moving with each key
    assert counts["total"] == 20 and counts["total"] - counts["reviewed"] == 20
    assert counts["agree"] / counts["relabelled"] == 0.75
    first = demo_store.list_examples()[0]
    card = data["page"]["items"][0]
    assert card["id"] == first.id and card["text"] == first.text
    assert card["intended_label"] == "card_lost_or_stolen" and card["mixed_with"] == first.mixed_with
    assert card["alpha"] == first.alpha and card["llm_label"] == first.llm_label and card["llm_raw"] == first.llm_raw
    # the card says in words what Accept saves
    assert card["accept_label"] == first.label and card["accept_source"].startswith("LLM relabel")
    assert [c["id"] for c in data["page"]["items"]] == [e.id for e in demo_store.list_examples()]
    assert data["classes"] == demo_store.load_task().class_names and data["order"] == "pending"
    # the list of examples below, one page of it
    assert len(at.dataframe) == 1 and "Examples shown (20)" in texts(at)


def test_accept_reject_override_undo(make_app, demo_store):
    at = make_app(REVIEW)
    card = Card(at)
    ids = [e.id for e in demo_store.list_examples()]
    assert card.decide(card.item(0), "accepted")["ok"]
    assert demo_store.get_example(ids[0]).review_status == "accepted"
    assert card.decide(card.item(1), "rejected")["ok"]
    assert demo_store.get_example(ids[1]).review_status == "rejected"
    assert card.decide(card.item(2), "overridden", "transfer_not_received")["ok"]
    ex = demo_store.get_example(ids[2])
    assert ex.review_status == "overridden" and ex.review_label == "transfer_not_received"
    assert ex.final_label == "transfer_not_received"

    counts = card.data["counts"]
    assert (counts["accepted"], counts["rejected"], counts["overridden"], counts["total"] - counts["reviewed"]) == (1, 1, 1, 17)
    # the tab's history, newest first: what U undoes
    assert [h["example_id"] for h in card.data["history"]] == [ids[2], ids[1], ids[0]]

    # undo, repeatedly, whatever the filter shows: the filter now shows none of these examples
    by_key(at.selectbox, "rv_agree::" + DEMO).select("Relabel failed")
    at.run()
    for unit in [h["unit"] for h in card.data["history"]]:
        res = card.undo(unit)
        assert res["ok"] and res["rows"][0]["review_status"] == "pending"
    assert all(demo_store.get_example(i).review_status == "pending" for i in ids[:3])
    assert card.data["history"] == []
    assert card.data["counts"]["reviewed"] == 0


def test_a_resent_batch_is_not_applied_twice(make_app, demo_store):
    at = make_app(REVIEW)
    card = Card(at)
    first = card.item(0)
    card.outbox = [{"cid": "same", "tab": card.tab, "id": first["id"], "action": "rejected", "base": 0}]
    card.send()
    card.outbox = [{"cid": "same", "tab": card.tab, "id": first["id"], "action": "rejected", "base": 0}]
    data = card.send()
    assert data["acks"]["same"]["dup"]
    assert demo_store.get_example(first["id"]).version == 1


def test_conflict_is_reported_and_nothing_is_overwritten(make_app, demo_store):
    at = make_app(REVIEW)
    card = Card(at)
    first = demo_store.list_examples()[0]
    # another tab decides on the same example after this page loaded it
    demo_store.review(first.id, "rejected", expected_version=first.version)
    res = card.decide(card.item(0), "accepted")
    assert res["conflict"] and res["current"]["status"] == "rejected"
    assert demo_store.get_example(first.id).review_status == "rejected"
    # keys of one tab never conflict with each other, even on one example and before any answer
    second = card.item(1)
    data = card.send({"id": second["id"], "action": "accepted", "base": 0},
                     {"id": second["id"], "action": "rejected", "base": 0},
                     {"id": second["id"], "action": "overridden", "label": "exchange_rate", "base": 0})
    assert all(r["ok"] for r in data["acks"].values())
    assert demo_store.get_example(second["id"]).review_label == "exchange_rate"


def test_bulk_accept_where_the_relabel_agrees(make_app, demo_store):
    at = make_app(REVIEW)
    card = Card(at)
    agree = [e.id for e in demo_store.list_examples(relabel_status="agree")]
    _click(at, "rv_bulk_agree")
    # it asks first, with the count
    assert demo_store.count_examples()["accepted"] == 0
    assert "Accept 15 pending examples where the relabel agrees?" in texts(at)
    _click(at, "rv_bulk_confirm")
    assert all(demo_store.get_example(i).review_status == "accepted" for i in agree)
    assert demo_store.count_examples()["accepted"] == len(agree) == 15
    assert f"Accepted {len(agree)} examples" in texts(at)
    # one step to undo, from the card's history (U) or the button
    card.take(card_data(at))
    assert card.data["history"][0]["bulk"] and card.data["history"][0]["n"] == 15
    _click(at, "rv_bulk_undo")
    assert demo_store.count_examples()["accepted"] == 0 and "Undid the bulk action: 15 examples" in texts(at)
    _click(at, "rv_bulk_agree")
    _click(at, "rv_bulk_cancel")
    assert demo_store.count_examples()["accepted"] == 0
    _click(at, "rv_bulk_agree")
    _click(at, "rv_bulk_confirm")
    res = Card(at).undo(card_data(at)["history"][0]["unit"])
    assert res["ok"] and res["bulk"] and res["n"] == 15 and demo_store.count_examples()["accepted"] == 0
    # the rest: accept everything the filters show
    _click(at, "rv_bulk_shown")
    _click(at, "rv_bulk_confirm")
    assert demo_store.count_examples()["reviewed"] == 20
    assert "Everything is reviewed" in texts(at)


def test_filters_and_search(make_app, demo_store):
    at = make_app(REVIEW)
    by_key(at.selectbox, "rv_agree::" + DEMO).select("Relabel differs")
    at.run()
    assert "Examples shown (5)" in texts(at)
    data = card_data(at)
    assert len(data["page"]["items"]) == 5 and all(c["relabel_status"] == "changed" for c in data["page"]["items"])
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
    assert "airline" in card_data(at)["page"]["items"][0]["text"]
    by_key(at.text_input, "rv_search::" + DEMO).input("no such words anywhere")
    at.run()
    assert "No examples match these filters" in texts(at)


def test_most_informative_order_says_why(make_app, demo_store):
    at = make_app(REVIEW)
    by_key(at.selectbox, "rv_order::" + DEMO).select("informative")
    at.run()
    assert not at.exception
    items = card_data(at)["page"]["items"]
    changed = {e.id for e in demo_store.list_examples(relabel_status="changed")}
    assert {c["id"] for c in items[:5]} == changed
    assert all(c["reasons"][0]["code"] == "relabel_differs" for c in items[:5])
    assert all(not c["reasons"] for c in items[5:])
    assert "Nearest class" in texts(at) or "nearest class" in texts(at)


def test_a_row_of_the_list_opens_in_the_card(make_app, demo_store):
    at = make_app(REVIEW)
    ids = [e.id for e in demo_store.list_examples()]
    at.session_state["rv_focus"] = {"seq": 1, "id": ids[7]}
    at.run()
    focus = card_data(at)["focus"]
    assert focus["seq"] == 1 and focus["row"]["id"] == ids[7]
    # once the card has shown it, it is not opened again (say, when the page is opened again)
    at.session_state[CARD] = {"sync": {"project": DEMO, "uid": card_data(at)["project_uid"], "inst": "i", "tab": "t", "req": 1,
                                       "qid": card_data(at)["qid"], "want": None, "ops": [], "focus_seen": 1}}
    at.run()
    assert card_data(at)["focus"] is None


def test_empty_state_without_examples(make_app, projects_dir):
    from promptmix_core.demo import create_demo

    projects_dir.mkdir(parents=True, exist_ok=True)
    create_demo(projects.project_path("fresh", projects_dir), with_examples=False).close()
    at = make_app(REVIEW, project="fresh")
    assert "Nothing to review yet" in texts(at)


def test_llm_text_is_shown_literally(make_app, demo_store):
    """Markdown or HTML in generated text must not render as links, images or markup: the card puts it
    in the page as text (tested in the browser), and nothing here renders it as Markdown."""
    job = demo_store.create_job("generate", {}, status="done")
    evil = "**bold** [click](http://evil.example) <img src=x onerror=alert(1)> $x^2$ :red[red]"
    demo_store.add_examples([{"job_id": job, "slot": "x", "text": evil, "norm_text": "evil",
                              "intended_label": "exchange_rate", "mixed_with": "refund_not_showing", "alpha": 0.7}])
    at = make_app(REVIEW)
    by_key(at.text_input, "rv_search::" + DEMO).input("click")
    at.run()
    assert card_data(at)["page"]["items"][0]["text"] == evil
    shown = [m.value for m in at.markdown if "click" in m.value]
    assert all(r"\*\*bold\*\*" in v and r"\[click\]" in v and r"\<img" in v and r"\$" in v for v in shown)


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
    assert card_data(at)["project"] == "other" and card_data(at)["classes"] == ["pos", "neg"]


def test_bulk_reject_of_examples_flagged_as_junk(make_app, demo_store):
    ids = [e.id for e in demo_store.list_examples()]
    demo_store.set_flags({ids[0]: "meta-text", ids[1]: "near-copy of a seed", ids[2]: "too short"})
    demo_store.review(ids[2], "accepted")  # decided already: left alone
    at = make_app(REVIEW)
    _click(at, "rv_bulk_flagged")
    assert "Reject 2 pending examples flagged as junk?" in texts(at)
    _click(at, "rv_bulk_confirm")
    assert [demo_store.get_example(i).review_status for i in ids[:3]] == ["rejected", "rejected", "accepted"]
    _click(at, "rv_bulk_undo")
    assert [demo_store.get_example(i).review_status for i in ids[:3]] == ["pending", "pending", "accepted"]


def test_a_bulk_action_applies_to_exactly_the_examples_it_asked_about(make_app, demo_store):
    """Issue 23 item 5: the dialog said "Accept 2", a CLI job added examples, "Yes" accepted 11. The ids are
    fixed when the question is asked; "Yes" applies to those only."""
    at = make_app(REVIEW)
    asked = sorted(e.id for e in demo_store.list_examples(review_status="pending"))
    _click(at, "rv_bulk_shown")
    assert f"Accept {len(asked)} pending examples the filters show?" in texts(at)
    job = demo_store.create_job("generate", {"per_class": 1}, status="done")  # a job adds examples meanwhile
    demo_store.add_examples([{"job_id": job, "slot": f"late{i}", "text": f"a late example {i}",
                              "norm_text": f"a late example {i}", "intended_label": "exchange_rate"}
                             for i in range(9)])
    at.run()
    assert f"Accept {len(asked)} pending examples the filters show?" in texts(at)  # the count stays
    _click(at, "rv_bulk_confirm")
    accepted = sorted(e.id for e in demo_store.list_examples(review_status="accepted"))
    assert accepted == asked
    assert len(demo_store.list_examples(review_status="pending")) == 9  # the late ones wait for a person
    assert f"Accepted {len(asked)} pending examples the filters show" in texts(at)


def test_an_outbox_of_an_earlier_project_of_the_same_name_is_not_applied(make_app, demo_store, projects_dir):
    """Decisions kept in a browser for a project that was deleted and created again under the same name
    carry the old project's identity: the page answers them (so the tab stops sending) and applies none."""
    at = make_app(REVIEW)
    card = Card(at)
    first = card.item(0)
    # the card sends the identity the page gave it; another one is an earlier project of this name
    assert card.uid and card.data["project_uid"] == card.uid
    card.uid = "an-earlier-project"
    card.outbox = [{"cid": "old1", "tab": card.tab, "id": first["id"], "action": "rejected", "base": first["version"]}]
    data = card.send()
    res = data["acks"]["old1"]
    assert not res["ok"] and res["stale_project"] and "earlier project of the same name" in res["error"]
    assert demo_store.get_example(first["id"]).review_status == "pending"
    # so is a message without the identity (a crafted one)
    card.uid = None
    card.outbox = [{"cid": "old2", "tab": card.tab, "id": first["id"], "action": "rejected", "base": first["version"]}]
    assert not card.send()["acks"]["old2"]["ok"]
    assert demo_store.get_example(first["id"]).review_status == "pending"

    # a project deleted and created again under the same name has another identity
    uid = card.data["project_uid"]
    demo_store.close()
    projects.delete_project(DEMO, projects_dir)
    from promptmix_core.demo import create_demo

    create_demo(projects.project_path(DEMO, projects_dir))
    again = make_app(REVIEW, DEMO)
    assert card_data(again)["project_uid"] != uid
