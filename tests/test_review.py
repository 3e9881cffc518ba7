"""Review core: queue order with reasons and keyset paging, decision batches (idempotent, one
transaction, conflicts only from another tab), undo history per tab, bulk actions as one undo unit,
the nearest class by embedding, and the narrow readers behind the pages."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from promptmix_core import review
from promptmix_core.demo import create_demo
from promptmix_core.review import QueueFilter
from promptmix_core.store import ProjectStore
from synthetic_review import make_review_project


@pytest.fixture
def demo(tmp_path):
    store = create_demo(tmp_path / "demo.pmx")
    yield store
    store.close()


@pytest.fixture
def big(tmp_path):
    store = make_review_project(tmp_path / "big.pmx", 300, seed=3)
    yield store
    store.close()


def _classes(store):
    return store.load_task().class_names


def _decide(store, ex_id, action, *, tab="T1", cid=None, base=0, label=None):
    cid = cid or f"d{ex_id}{action[:3]}{tab}{np.random.randint(1 << 30)}"
    res = review.apply_ops(store, [{"cid": cid, "id": ex_id, "action": action, "label": label, "base": base}],
                           _classes(store), tab=tab)
    return res[cid]


# --------------------------------------------------------------------------- the queue
def test_pending_queue_pages_through_every_example_once(big):
    seen, after = [], None
    while True:
        page = review.queue_page(big, "pending", QueueFilter(), after=after, limit=40)
        seen += [c["id"] for c in page["items"]]
        if page["done"]:
            break
        after = page["items"][-1]["key"]
    ids = big.matching_ids(review_status="pending")
    assert seen == ids and len(ids) == 300
    card = page["items"][0]
    # the card reads what it shows and nothing more
    assert "prompt" not in card and "raw_response" not in card
    assert {"text", "intended_label", "mixed_with", "alpha", "llm_label", "llm_raw", "llm_confidence", "flag",
            "version", "reasons", "accept_label", "accept_source"} <= set(card)


def test_pending_first_puts_decided_examples_last(big):
    ids = big.matching_ids()
    _decide(big, ids[0], "accepted")
    _decide(big, ids[1], "rejected")
    order, after = [], None
    while True:
        page = review.queue_page(big, "pending", QueueFilter(review_status=None), after=after, limit=70)
        order += [c["id"] for c in page["items"]]
        if page["done"]:
            break
        after = page["items"][-1]["key"]
    assert order[-2:] == [ids[0], ids[1]] and order[:3] == ids[2:5] and len(order) == 300


def test_informative_order_comes_with_reasons(big):
    ids = big.matching_ids()
    rows = {r["id"]: r for r in big.export_rows()}
    # fill the reasons nothing computes yet: a junk flag and a low confidence on agreeing examples
    agree = [i for i in ids if rows[i]["relabel_status"] == "agree"]
    with big.transaction() as c:
        c.execute("UPDATE examples SET flag = '', llm_confidence = NULL")
        c.execute("UPDATE examples SET flag = 'meta-text' WHERE id = ?", (agree[0],))
        c.execute("UPDATE examples SET llm_confidence = 0.2 WHERE id = ?", (agree[1],))
        c.execute("UPDATE examples SET llm_confidence = 0.9 WHERE id = ?", (agree[2],))
    cards = []
    after = None
    while True:
        page = review.queue_page(big, "informative", QueueFilter(), after=after, limit=64)
        cards += page["items"]
        if page["done"]:
            break
        after = page["items"][-1]["key"]
    assert len(cards) == 300 and len({c["id"] for c in cards}) == 300
    codes = [c["reasons"][0]["code"] if c["reasons"] else None for c in cards]
    n_changed = sum(r["relabel_status"] in ("changed", "unparseable") for r in rows.values())
    # relabel disagreements and failures first, then the flagged one, then the low confidence one, then the rest
    assert set(codes[:n_changed]) <= {"relabel_differs", "relabel_failed"}
    assert codes[n_changed] == "flagged" and cards[n_changed]["id"] == agree[0]
    assert codes[n_changed + 1] == "low_confidence" and cards[n_changed + 1]["id"] == agree[1]
    assert codes[n_changed + 2:] == [None] * (300 - n_changed - 2)
    differs = next(c for c in cards if c["reasons"] and c["reasons"][0]["code"] == "relabel_differs")
    assert differs["llm_label"] in differs["reasons"][0]["text"]
    assert differs["accept_label"] == differs["llm_label"] and differs["accept_source"] == "LLM relabel"
    failed = next(c for c in cards if c["relabel_status"] == "unparseable")
    assert (failed["accept_label"], failed["accept_source"]) == (failed["intended_label"],
                                                                 "written for; the relabel failed")
    assert review.reason_counts(big)["flagged"] == 1 and review.reason_counts(big)["low_confidence"] == 1


def test_embedding_reason_when_the_nearest_class_disagrees_with_both(big):
    ex = next(r for r in big.export_rows() if r["relabel_status"] == "agree")
    other = next(c for c in _classes(big) if c != ex["intended_label"])
    big.save_vectors(review.EMBED_MODEL, [(ex["id"], np.zeros(4, dtype=np.float16).tobytes())])
    big.save_nearest([(ex["id"], other, 0.9)])
    card = review.card(big.review_rows([ex["id"]])[0])
    assert [r["code"] for r in card["reasons"]] == ["embedding_differs"]
    assert other in card["reasons"][0]["text"]
    first = review.queue_page(big, "informative", QueueFilter(relabel_status="agree"), limit=1)["items"][0]
    assert first["id"] == ex["id"]


def test_filters_match_the_old_list_semantics(demo):
    for kw in ({"relabel_status": "changed"}, {"label": "exchange_rate"}, {"search": "AIRLINE"},
               {"review_status": "pending", "relabel_status": ["agree", "none"]}):
        expected = [e.id for e in demo.list_examples(**kw)]
        assert demo.matching_ids(**kw) == expected
        assert demo.count_matching(**kw) == len(expected)
        assert [r["id"] for r in demo.example_page(limit=100, **kw)] == expected


# --------------------------------------------------------------------------- decisions
def test_a_batch_is_one_transaction_and_a_resend_never_applies_twice(demo):
    ids = [e.id for e in demo.list_examples()]
    ops = [{"cid": f"c{i}", "id": ex_id, "action": "accepted" if i % 2 else "rejected", "base": 0}
           for i, ex_id in enumerate(ids[:10])]
    statements = []
    conn = demo._connect()
    conn.set_trace_callback(statements.append)
    try:
        res = review.apply_ops(demo, ops, _classes(demo), tab="T1")
    finally:
        conn.set_trace_callback(None)
    assert sum(s.startswith("BEGIN") for s in statements) == 1
    assert all(r["ok"] and r["version"] == 1 for r in res.values())
    again = review.apply_ops(demo, ops, _classes(demo), tab="T1")  # the tab did not get the answer
    assert all(r["ok"] and r.get("dup") for r in again.values())
    assert [demo.get_example(i).version for i in ids[:10]] == [1] * 10
    assert demo.count_examples()["reviewed"] == 10


def test_keys_from_one_tab_never_conflict_another_tab_does(demo):
    ex = demo.list_examples()[0]
    # the same tab, all made on the version it loaded (0), faster than the answers
    assert _decide(demo, ex.id, "accepted", base=0)["ok"]
    assert _decide(demo, ex.id, "rejected", base=0)["ok"]
    assert _decide(demo, ex.id, "overridden", label="exchange_rate", base=0)["ok"]
    assert demo.get_example(ex.id).review_label == "exchange_rate"
    # another tab that loaded version 0 is refused, and nothing is written
    res = _decide(demo, ex.id, "accepted", tab="T2", base=0)
    assert not res["ok"] and res["conflict"] and res["current"]["status"] == "overridden"
    assert res["message"].startswith(f"Example #{ex.id} was changed in another tab or by another person")
    assert "now overridden to exchange_rate" in res["message"]
    assert demo.get_example(ex.id).review_status == "overridden"
    # a change outside any tab (another process through store.review) is a change by someone else too
    other = demo.list_examples()[1]
    demo.review(other.id, "rejected", expected_version=0)
    res = _decide(demo, other.id, "accepted", base=0)
    assert res["conflict"] and demo.get_example(other.id).review_status == "rejected"
    # after loading the new version, the decision goes through
    assert _decide(demo, other.id, "accepted", base=res["current"]["version"])["ok"]


def test_undo_walks_back_this_tabs_history(demo):
    ids = [e.id for e in demo.list_examples()[:3]]
    cids = []
    for i, action in zip(ids, ("accepted", "rejected", "accepted")):
        cid = f"k{i}"
        cids.append(cid)
        _decide(demo, i, action, cid=cid)
    _decide(demo, ids[2], "overridden", cid="k-over", label="exchange_rate")
    hist = review.history(demo, "T1")
    assert [h["unit"] for h in hist] == ["k-over", *reversed(cids)]
    assert hist[0]["text"] and hist[0]["action"] == "overridden"
    assert review.history(demo, "T2") == []
    classes = _classes(demo)
    # U, U: the override, then the accept of the same example
    for n, unit in enumerate(["k-over", cids[2]]):
        res = review.apply_ops(demo, [{"cid": f"u{n}", "undo": unit}], classes, tab="T1")[f"u{n}"]
        assert res["ok"] and res["rows"][0]["id"] == ids[2]
    assert demo.get_example(ids[2]).review_status == "pending"
    res = review.apply_ops(demo, [{"cid": "u2", "undo": cids[1]}], classes, tab="T1")["u2"]
    assert res["ok"] and demo.get_example(ids[1]).review_status == "pending"
    assert [h["unit"] for h in review.history(demo, "T1")] == [cids[0]]
    # an undo sent twice, or of a unit already undone, changes nothing
    assert review.apply_ops(demo, [{"cid": "u2", "undo": cids[1]}], classes, tab="T1")["u2"]["dup"]
    assert review.apply_ops(demo, [{"cid": "u3", "undo": cids[1]}], classes, tab="T1")["u3"]["nothing"]
    # only the tab that decided undoes, and not over another tab's later decision
    assert not review.apply_ops(demo, [{"cid": "u4", "undo": cids[0]}], classes, tab="T2")["u4"]["ok"]
    _decide(demo, ids[0], "rejected", tab="T2", base=1)
    res = review.apply_ops(demo, [{"cid": "u5", "undo": cids[0]}], classes, tab="T1")["u5"]
    assert res["ok"] and res["n"] == 0 and res["skipped"] == [ids[0]]
    assert demo.get_example(ids[0]).review_status == "rejected"


def test_decision_and_its_undo_in_one_batch(demo):
    ex = demo.list_examples()[0]
    res = review.apply_ops(demo, [{"cid": "a1", "id": ex.id, "action": "rejected", "base": 0},
                                  {"cid": "a2", "undo": "a1"}], _classes(demo), tab="T1")
    assert res["a1"]["ok"] and res["a2"]["ok"]
    got = demo.get_example(ex.id)
    assert (got.review_status, got.version) == ("pending", 2)


def test_bad_operations_get_a_final_answer(demo):
    ex = demo.list_examples()[0]
    res = review.apply_ops(demo, [
        {"cid": "b1", "id": ex.id, "action": "overridden", "label": "no_such_class", "base": 0},
        {"cid": "b2", "id": ex.id, "action": "maybe"},
        {"cid": "b3", "id": 999999, "action": "accepted"},
        {"cid": "bad cid with spaces", "id": ex.id, "action": "accepted"},
        "not an op",
    ], _classes(demo), tab="T1")
    assert set(res) == {"b1", "b2", "b3"}
    assert "not a class" in res["b1"]["error"] and "unknown decision" in res["b2"]["error"]
    assert res["b3"]["missing"]
    assert demo.get_example(ex.id).review_status == "pending"


def test_bulk_is_one_undo_unit(demo):
    ids = review.pending_ids(demo, relabel_status="agree")
    assert len(ids) == 15
    _decide(demo, ids[0], "rejected", tab="T1")
    unit, n = review.bulk(demo, review.pending_ids(demo, relabel_status="agree"), "accepted", tab="T1",
                          unit="bulk:one")
    assert n == 14 and review.bulk(demo, ids, "accepted", tab="T1", unit="bulk:one") == ("bulk:one", 14)
    assert review.history(demo, "T1")[0] == {**review.history(demo, "T1")[0], "unit": "bulk:one", "n": 14,
                                              "bulk": True}
    # someone else changes one of them meanwhile: undo leaves that one alone
    demo.review(ids[5], "rejected", expected_version=demo.get_example(ids[5]).version)
    res = review.apply_ops(demo, [{"cid": "ub", "undo": "bulk:one"}], _classes(demo), tab="T1")["ub"]
    assert res["ok"] and res["bulk"] and res["n"] == 13 and res["skipped"] == [ids[5]]
    statuses = {i: demo.get_example(i).review_status for i in ids}
    assert statuses[ids[0]] == "rejected" and statuses[ids[5]] == "rejected"
    assert sum(s == "pending" for s in statuses.values()) == 13


# --------------------------------------------------------------------------- narrow readers
def test_live_view_readers_read_only_newer_rows(demo):
    last = demo.latest_examples(3, columns=("text",))
    assert [r["id"] for r in last] == [e.id for e in demo.list_examples()[-3:]]
    assert set(last[0]) == {"id", "text"}
    job = demo.create_job("generate", {}, status="running")
    assert demo.examples_since(last[-1]["id"], job_id=job) == []
    demo.add_examples([{"job_id": job, "slot": "n1", "text": "brand new one", "norm_text": "brand new one",
                        "intended_label": "exchange_rate"}])
    new = demo.examples_since(last[-1]["id"], columns=("text", "intended_label"))
    assert [r["text"] for r in new] == ["brand new one"]
    with pytest.raises(ValueError):
        demo.examples_since(0, columns=("text; DROP TABLE examples",))


def test_older_project_files_gain_the_review_tables_and_indexes(tmp_path):
    """A file from before review_log, example_vectors and the flag/confidence columns opens and upgrades."""
    from promptmix_core import store as store_mod

    path = tmp_path / "old.pmx"
    con = sqlite3.connect(path)
    con.executescript(store_mod._SCHEMA)
    con.execute(f"PRAGMA application_id = {store_mod.APP_ID}")
    con.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '1')")
    con.execute("INSERT INTO examples(job_id, slot, text, norm_text, label, intended_label, created_at) "
                "VALUES (1, 's', 'old one', 'old one', 'a', 'a', 0)")
    con.commit()
    con.close()
    store = ProjectStore(path, create=False)
    names = {r[0] for r in store._query("SELECT name FROM sqlite_master")}
    assert {"review_log", "example_vectors", "examples_by_review", "examples_review_cover"} <= names
    assert store.count_examples()["total"] == 1 and store.review_queue(limit=5)[0]["flag"] == ""
    store.close()


# --------------------------------------------------------------------------- nearest class by embedding
@pytest.mark.slow
def test_nearest_class_with_the_bundled_minilm(demo):
    """Embeds with the real all-MiniLM-L6-v2; each example gets the class of its nearest seed or
    accepted example, never itself."""
    first = demo.list_examples()[0]
    _decide(demo, first.id, "overridden", label="exchange_rate")
    result = review.run_nearest(demo.path)
    assert result == {"embedded": 20, "labelled": 20}
    status = review.nearest_status(demo)
    assert status["status"] == "done" and status["have"] == status["total"] == 20
    rows = demo.review_rows([e.id for e in demo.list_examples()])
    assert all(r["nearest_label"] in _classes(demo) for r in rows)
    # most borderline examples still sit nearest to a seed of their own written-for or relabel class
    agree = sum(r["nearest_label"] in (r["intended_label"], r["llm_label"]) for r in rows)
    assert agree >= 12
    # a second run embeds nothing new
    assert review.run_nearest(demo.path)["embedded"] == 0


def test_counts_follow_the_review_log_without_counting_again(demo):
    ids = [e.id for e in demo.list_examples()]
    classes = _classes(demo)
    counts, mark = demo.count_examples_marked()
    ops = [{"cid": "n1", "id": ids[0], "action": "accepted", "base": 0},
           {"cid": "n2", "id": ids[1], "action": "rejected", "base": 0},
           {"cid": "n3", "id": ids[1], "action": "overridden", "label": "exchange_rate", "base": 0},
           {"cid": "n4", "undo": "n1"}]
    review.apply_ops(demo, ops, classes, tab="T1")
    review.apply_ops(demo, ops, classes, tab="T1")  # a resend changes nothing, and the counts see nothing
    _decide(demo, ids[9], "rejected", tab="T2")     # another tab's decision moves them too
    unit, _n = review.bulk(demo, ids[2:8], "rejected", tab="T1")
    review.apply_ops(demo, [{"cid": "n5", "undo": unit}], classes, tab="T1")
    review.bulk(demo, ids[10:14], "accepted", tab="T1")
    mark2, moves = demo.review_changes_since(mark)
    assert mark2 > mark and review.counts_after(counts, moves) == demo.count_examples()
    assert demo.review_changes_since(mark2) == (mark2, [])


# --------------------------------------------------------------------------- the two suggestions
def test_the_card_shows_both_suggestions_and_whether_they_agree(big):
    classes = _classes(big)
    items = review.queue_page(big, "pending", QueueFilter(), limit=300)["items"]
    assert all(c["judge_label"] is None and c["judges_agree"] is None for c in items)  # nothing judged yet
    agree = next(c for c in items if c["relabel_status"] == "agree")
    differ = next(c for c in items if c["relabel_status"] == "changed")
    failed = next(c for c in items if c["relabel_status"] == "unparseable")
    other = next(c for c in classes if c != differ["llm_label"] and c != differ["intended_label"])
    big.set_judge({agree["id"]: (agree["llm_label"], 0.91), differ["id"]: (other, 0.4),
                   failed["id"]: (failed["intended_label"], 0.7)})
    cards = {c["id"]: c for c in review.queue_page(big, "pending", QueueFilter(), limit=300)["items"]}
    a, d, f = cards[agree["id"]], cards[differ["id"]], cards[failed["id"]]
    assert (a["judge_label"], a["judge_confidence"], a["judges_agree"]) == (agree["llm_label"], 0.91, True)
    assert (d["judge_label"], d["judges_agree"]) == (other, False)
    assert f["judges_agree"] is None  # the relabel failed: nothing to compare
    # what Accept saves stays said in words, naming both suggestions
    assert a["accept_source"] == "embedding judge and LLM relabel agree"
    assert d["accept_label"] == differ["llm_label"] and d["accept_source"] == "LLM relabel"
    # where the judge's suggestion is the label (the default when the LLM is weak), Accept says so
    row = {"label": "card_arrival", "intended_label": "card_arrival", "llm_label": "lost_or_stolen_card",
           "relabel_status": "changed", "judge_label": "card_arrival"}
    assert review.accept_saves(row) == ("card_arrival", "embedding judge; the LLM relabel says lost_or_stolen_card")
