"""Reviews per example (store/team.py): votes from the one logged write path, the final-label rule,
the queue of each reviewer, adjudication, decisions with their reviewer, and training on final labels."""

from __future__ import annotations

import pytest

from promptmix_core import review
from promptmix_core.demo import create_demo
from promptmix_core.training.data import build_training_data


@pytest.fixture
def demo(tmp_path):
    store = create_demo(tmp_path / "demo.pmx")
    yield store
    store.close()


def _vote(store, who, ex_id, action, label=None, base=0):
    cid = f"{who}-{ex_id}-{action}-{label}-{base}"
    res = review.apply_ops(store, [{"cid": cid, "id": ex_id, "action": action, "label": label, "base": base}],
                           store.load_task().class_names, tab=f"tab-{who}", reviewer=who)
    return res[cid]


def _state(store, ex_id):
    e = store.get_example(ex_id)
    return e.review_status, e.review_label


def test_one_review_per_example_is_the_old_behaviour_with_the_reviewer_recorded(demo):
    assert demo.reviews_per_example() == 1
    ids = demo.matching_ids(review_status="pending")[:2]
    assert _vote(demo, "ann", ids[0], "accepted")["ok"]
    assert _state(demo, ids[0])[0] == "accepted"
    assert demo.get_example(ids[0]).reviewed_by == "ann"
    # another reviewer who loaded it before is told it changed (as before), nothing is overwritten
    res = _vote(demo, "ben", ids[0], "rejected", base=0)
    assert res.get("conflict") and _state(demo, ids[0])[0] == "accepted"
    # the queue is the same for everyone
    assert review.queue_page(demo, "pending", reviewer="ann")["items"][0]["id"] == ids[1]
    assert demo.queue_exclusions("ann") == set() and demo.adjudication_queue() == []
    assert demo.reviewer_agreement() is None  # no two people on the same example yet
    [row] = [r for r in demo.decision_rows() if r["example_id"] == ids[0]]
    assert (row["reviewer"], row["decision"], row["adjudication"]) == ("ann", "accepted", False)


def test_an_example_waits_for_n_reviews_and_leaves_only_its_reviewers_queue(demo):
    demo.set_reviews_per_example(2)
    ids = demo.matching_ids(review_status="pending")[:3]
    for i in ids:
        assert _vote(demo, "ann", i, "accepted")["ok"]
    assert [_state(demo, i)[0] for i in ids] == ["pending"] * 3
    ann_queue = [c["id"] for c in review.queue_page(demo, "pending", reviewer="ann")["items"]]
    ben_queue = [c["id"] for c in review.queue_page(demo, "pending", reviewer="ben")["items"]]
    assert not set(ids) & set(ann_queue) and ben_queue[:3] == ids
    assert len(ann_queue) == demo.count_examples()["total"] - 3
    # a small page still fills past the examples ann decided
    page = review.queue_page(demo, "pending", reviewer="ann", limit=2)
    assert [c["id"] for c in page["items"]] == ann_queue[:2] and not page["done"]

    label = demo.get_example(ids[1]).label
    other = next(c for c in demo.load_task().class_names if c != label)
    assert _vote(demo, "ben", ids[0], "accepted")["ok"]
    assert _vote(demo, "ben", ids[1], "overridden", label=label)["ok"]  # says the same class as Accept
    assert _vote(demo, "ben", ids[2], "overridden", label=other)["ok"]
    assert _state(demo, ids[0]) == ("accepted", demo.get_example(ids[0]).label)  # keeps the class accepted
    assert _state(demo, ids[1]) == ("accepted", label)
    assert _state(demo, ids[2]) == ("pending", None)  # a conflict
    assert demo.reviewer_agreement()["over examples"] == 3  # what the project report shows
    assert [c["id"] for c in demo.adjudication_queue()] == [ids[2]]
    assert ids[2] not in [c["id"] for c in review.queue_page(demo, "pending", reviewer="cy")["items"]]

    demo.adjudicate(ids[2], "overridden", label=other, reviewer="owner")
    assert _state(demo, ids[2]) == ("overridden", other)
    assert demo.adjudication_queue() == []
    # a later vote does not undo an owner's adjudication
    _vote(demo, "cy", ids[2], "rejected")
    assert _state(demo, ids[2]) == ("overridden", other)
    rows = demo.decision_rows()
    assert {(r["example_id"], r["reviewer"]) for r in rows if not r["adjudication"]} >= {
        (i, w) for i in ids for w in ("ann", "ben")}
    [adj] = [r for r in rows if r["adjudication"]]
    assert (adj["example_id"], adj["reviewer"], adj["label"]) == (ids[2], "owner", other)


def test_three_reviews_and_a_changed_mind(demo):
    demo.set_reviews_per_example(3)
    ex = demo.matching_ids(review_status="pending")[0]
    _vote(demo, "a", ex, "rejected")
    _vote(demo, "b", ex, "rejected")
    assert _state(demo, ex)[0] == "pending"
    _vote(demo, "a", ex, "accepted")  # a changes their mind: still one vote each
    assert len(demo.votes([ex])) == 2
    _vote(demo, "c", ex, "rejected")
    assert _state(demo, ex)[0] == "pending" and [c["id"] for c in demo.adjudication_queue()] == [ex]


def test_undo_takes_a_vote_back(demo):
    demo.set_reviews_per_example(2)
    ex = demo.matching_ids(review_status="pending")[0]
    res = _vote(demo, "ann", ex, "rejected")
    assert demo.votes([ex])
    undo = review.apply_ops(demo, [{"cid": "undo1", "undo": res and f"ann-{ex}-rejected-None-0"}],
                            demo.load_task().class_names, tab="tab-ann", reviewer="ann")["undo1"]
    assert undo["ok"] and demo.votes([ex]) == []
    assert ex in [c["id"] for c in review.queue_page(demo, "pending", reviewer="ann")["items"]]


def test_reviews_per_example_is_checked(demo):
    for bad in (0, -1, 11):
        with pytest.raises(ValueError):
            demo.set_reviews_per_example(bad)
    assert demo.reviews_per_example() == 1


def test_training_uses_final_labels_only(demo):
    demo.set_reviews_per_example(2)
    task = demo.load_task()
    ex = demo.matching_ids(review_status="pending")[0]
    other = next(c for c in task.class_names if c != demo.get_example(ex).label)

    def trained():
        data = build_training_data(task, demo.list_examples(), label_source="reviewed", pending="drop")
        return {r["text"]: r["label"] for r in data.rows}

    text = demo.get_example(ex).text
    _vote(demo, "ann", ex, "overridden", label=other)
    assert text not in trained()  # one vote is not a final label
    _vote(demo, "ben", ex, "overridden", label=other)
    assert trained()[text] == other
