"""Every review write takes the one logged path (issue 18): ``review``, ``bulk_review`` and
``reject_flagged`` are in the review log like the card's decisions, so they count in the live
counts and undo as one step."""

from __future__ import annotations

import pytest

from promptmix_core.store import ConflictError, ProjectStore


@pytest.fixture
def store(tmp_path):
    s = ProjectStore(tmp_path / "p.pmx")
    job = s.create_job("generate", {}, status="done")
    s.add_examples([{"job_id": job, "slot": f"s{i}", "text": f"text {i}", "norm_text": f"text {i}",
                     "intended_label": "a" if i % 2 else "b"} for i in range(6)])
    return s


def _status(store):
    return {e.id: (e.review_status, e.review_label) for e in store.list_examples()}


def test_a_bulk_reject_of_flagged_examples_undoes_as_one_step(store):
    ids = [e.id for e in store.list_examples()]
    store.set_flags({ids[0]: "meta-text", ids[1]: "near-copy of a seed", ids[2]: "meta-text"})
    store.review(ids[2], "overridden", label="a", reviewer="me")  # a person's decision stands
    before = _status(store)

    assert store.reject_flagged(reviewer="cli", tab="t1", unit="bulk:flags") == 2
    assert store.get_example(ids[0]).review_status == "rejected"
    (unit,) = [h for h in store.review_history("t1")]
    assert unit["unit"] == "bulk:flags" and unit["n"] == 2 and unit["bulk"]

    out = store.undo("bulk:flags", tab="t1")
    assert out["ok"] and out["n"] == 2 and out["bulk"]
    assert _status(store) == before  # both back to pending, the override untouched
    assert store.review_history("t1") == []


def test_reject_flagged_without_a_unit_is_still_one_undo_unit(store):
    ids = [e.id for e in store.list_examples()]
    store.set_flags({ids[3]: "meta-text", ids[4]: "meta-text"})
    assert store.reject_flagged() == 2
    (entry,) = store.review_history("")
    assert entry["n"] == 2 and entry["unit"].startswith("bulk:")
    assert store.undo(entry["unit"])["n"] == 2
    assert {store.get_example(i).review_status for i in (ids[3], ids[4])} == {"pending"}


def test_single_and_bulk_reviews_are_logged_and_counted(store):
    ids = [e.id for e in store.list_examples()]
    counts, mark = store.count_examples_marked()
    assert counts["reviewed"] == 0
    store.review(ids[0], "accepted", reviewer="me")
    assert store.bulk_review(ids[1:3], "rejected") == 2
    mark2, moves = store.review_changes_since(mark)
    assert moves == [("pending", "accepted"), ("pending", "rejected"), ("pending", "rejected")]
    assert mark2 > mark
    # the bulk action is one undo unit
    (bulk, single) = store.review_history("")
    assert bulk["n"] == 2 and single["n"] == 1
    assert store.undo(bulk["unit"])["n"] == 2
    assert store.get_example(ids[1]).review_status == "pending"
    # putting one back to pending through review() is logged too, and undoes to what it replaced
    v = store.review(ids[0], "pending")
    assert store.get_example(ids[0]).version == v and store.get_example(ids[0]).reviewed_at is None
    back = store.review_history("")[0]
    assert store.undo(back["unit"])["n"] == 1
    e = store.get_example(ids[0])
    assert e.review_status == "accepted" and e.reviewed_by == "me" and e.reviewed_at is not None


def test_a_logged_write_still_conflicts_with_a_stale_version(store):
    ex = store.list_examples()[0]
    store.review(ex.id, "rejected", expected_version=ex.version)
    with pytest.raises(ConflictError):
        store.review(ex.id, "accepted", expected_version=ex.version)
    # and a card decision on the old version, from another tab, is refused as a conflict
    res = store.apply_review_batch([{"cid": "c1", "id": ex.id, "action": "accepted", "base": ex.version}],
                                   tab="other")
    assert res["c1"]["conflict"]
