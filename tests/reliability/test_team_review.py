"""Team review under pressure: two reviewers deciding the same example at the same moment (two
connections to the one file, released by a barrier), with one and with two reviews per example."""

from __future__ import annotations

import threading

import pytest

from promptmix_core import review
from promptmix_core.demo import create_demo
from promptmix_core.store import ProjectStore


def _race(path, ops_by_reviewer, rounds=1):
    """Each reviewer, on its own connection and thread, sends its operations at the same moment."""
    barrier = threading.Barrier(len(ops_by_reviewer))
    results, errors = {}, []

    def go(who, ops):
        store = ProjectStore(path, create=False)
        try:
            classes = store.load_task().class_names
            barrier.wait()
            results[who] = review.apply_ops(store, ops, classes, tab=f"tab-{who}", reviewer=who)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=go, args=item) for item in ops_by_reviewer.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


@pytest.mark.parametrize("trial", range(3))
def test_two_reviewers_at_once_with_two_reviews_per_example_both_kept(tmp_path, trial):
    path = tmp_path / "p.pmx"
    store = create_demo(path)
    store.set_reviews_per_example(2)
    ids = store.matching_ids(review_status="pending")
    store.close()
    # both loaded every example at version 0; they decide all of them at the same moment, the first
    # one differently
    ops = {who: [{"cid": f"{who}-{i}", "id": i, "action": "rejected" if (who == "bea" and i == ids[0]) else
                  "accepted", "base": 0} for i in ids] for who in ("ann", "bea")}
    results = _race(path, ops)
    for who in ("ann", "bea"):
        assert all(r["ok"] for r in results[who].values()), results[who]
    store = ProjectStore(path, create=False)
    try:
        votes = store.votes()
        assert len(votes) == 2 * len(ids)  # every decision kept
        assert {(v["example_id"], v["reviewer"]) for v in votes} == {(i, w) for i in ids for w in ("ann", "bea")}
        assert store.get_example(ids[0]).review_status == "pending"  # they disagree: an owner decides
        assert [c["id"] for c in store.adjudication_queue()] == [ids[0]]
        assert all(store.get_example(i).review_status == "accepted" for i in ids[1:])
        assert len(store.decision_rows()) == 2 * len(ids)
    finally:
        store.close()


def test_two_reviewers_at_once_with_one_review_per_example_one_is_told(tmp_path):
    path = tmp_path / "p.pmx"
    store = create_demo(path)
    ex = store.matching_ids(review_status="pending")[0]
    store.close()
    ops = {who: [{"cid": f"{who}-1", "id": ex, "action": act, "base": 0}]
           for who, act in (("ann", "accepted"), ("bea", "rejected"))}
    results = _race(path, ops)
    outcome = {who: results[who][f"{who}-1"] for who in ("ann", "bea")}
    winners = [w for w, r in outcome.items() if r.get("ok")]
    losers = [w for w, r in outcome.items() if r.get("conflict")]
    assert len(winners) == 1 and len(losers) == 1  # one decision stands, the other reviewer is told
    store = ProjectStore(path, create=False)
    try:
        ex_row = store.get_example(ex)
        assert ex_row.reviewed_by == winners[0]
        assert [r["reviewer"] for r in store.decision_rows()] == winners
    finally:
        store.close()
