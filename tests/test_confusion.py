"""Confused class pairs: from a confusion matrix, from low-margin predictions, from a file or a flag."""

import json

import pytest

from promptmix_core.confusion import (
    directed,
    pairs_from_confusion,
    pairs_from_file,
    pairs_from_margins,
    parse_pairs,
)
from promptmix_core.training.metrics import compute_metrics

LABELS = ["card_lost", "card_arrival", "refund", "top_up"]


def test_pairs_from_confusion_adds_both_directions_and_orders_by_errors():
    gold = ["card_lost"] * 5 + ["card_arrival"] * 5 + ["refund"] * 5 + ["top_up"] * 5
    pred = (["card_lost"] * 3 + ["card_arrival"] * 2          # lost -> arrival x2
            + ["card_arrival"] * 3 + ["card_lost"] * 1 + [None]  # arrival -> lost x1, one unparseable
            + ["refund"] * 4 + ["top_up"]                       # refund -> top_up x1
            + ["top_up"] * 5)
    conf = compute_metrics(gold, pred, LABELS)["confusion"]
    assert conf["labels"][-1] == "<none>"
    pairs = pairs_from_confusion(conf, top=5)
    assert [(p.a, p.b, p.count) for p in pairs] == [("card_lost", "card_arrival", 3.0), ("refund", "top_up", 1.0)]
    assert (pairs[0].a_as_b, pairs[0].b_as_a) == (2.0, 1.0)
    assert pairs_from_confusion(conf, top=1)[0].b == "card_arrival"
    assert directed(pairs) == [("card_lost", "card_arrival"), ("card_arrival", "card_lost"),
                               ("refund", "top_up"), ("top_up", "refund")]


def test_a_perfect_model_confuses_nothing():
    conf = compute_metrics(LABELS, LABELS, LABELS)["confusion"]
    assert pairs_from_confusion(conf) == []


def test_pairs_from_margins_counts_close_calls_only():
    probs = [
        [0.45, 0.44, 0.06, 0.05],  # lost/arrival, very close
        [0.50, 0.40, 0.05, 0.05],  # lost/arrival, gap 0.10
        [0.05, 0.05, 0.46, 0.44],  # refund/top_up
        [0.97, 0.01, 0.01, 0.01],  # confident: no pair
    ]
    pairs = pairs_from_margins(probs, LABELS, margin=0.2)
    assert [(p.a, p.b) for p in pairs] == [("card_lost", "card_arrival"), ("refund", "top_up")]
    assert pairs[0].count == pytest.approx((1 - 0.01 / 0.2) + (1 - 0.10 / 0.2))
    assert all(p.source == "margin" for p in pairs)
    with pytest.raises(ValueError, match="3 values for 4 classes"):
        pairs_from_margins([[0.5, 0.3, 0.2]], LABELS)


def test_parse_pairs_lists_every_problem():
    assert parse_pairs("card_lost:card_arrival, refund:top_up", LABELS) == [
        ("card_lost", "card_arrival"), ("refund", "top_up")]
    with pytest.raises(ValueError) as err:
        parse_pairs("card_lost:nope,refund,top_up:top_up", LABELS)
    msg = str(err.value)
    assert "'nope' is not a class" in msg and "'refund' is not a pair" in msg and "with itself" in msg
    with pytest.raises(ValueError, match="no class pairs"):
        parse_pairs(" , ", LABELS)


def test_pairs_from_file_reads_metrics_matrices_and_lists(tmp_path):
    gold = ["card_lost", "card_arrival", "refund", "top_up"]
    pred = ["card_arrival", "card_arrival", "refund", "top_up"]
    metrics = {"test_metrics": compute_metrics(gold, pred, LABELS)}
    f1 = tmp_path / "run.json"
    f1.write_text(json.dumps(metrics))
    assert pairs_from_file(f1, LABELS) == [("card_lost", "card_arrival"), ("card_arrival", "card_lost")]
    f2 = tmp_path / "pairs.json"
    f2.write_text(json.dumps([["refund", "top_up"], {"a": "top_up", "b": "card_lost"}]))
    assert pairs_from_file(f2, LABELS) == [("refund", "top_up"), ("top_up", "card_lost")]
    f3 = tmp_path / "bad.json"
    f3.write_text(json.dumps([["refund", "ghost"]]))
    with pytest.raises(ValueError, match="ghost"):
        pairs_from_file(f3, LABELS)
    with pytest.raises(ValueError, match="not found"):
        pairs_from_file(tmp_path / "missing.json", LABELS)
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable JSON"):
        pairs_from_file(tmp_path / "x.json", LABELS)


def test_resolve_pairs_from_a_project_run(tmp_path):
    from promptmix_core.confusion import resolve_pairs
    from promptmix_core.store import ProjectStore

    store = ProjectStore(tmp_path / "p.pmx")
    gold = ["card_lost", "card_arrival", "refund", "top_up"]
    with_test = store.create_run({})
    store.update_run(with_test, status="done", final_metrics={
        "test_confusion": compute_metrics(gold, ["card_arrival", "card_arrival", "top_up", "top_up"], LABELS)["confusion"]})
    bare = store.create_run({})
    store.update_run(bare, status="done", final_metrics={"steps": 3})
    assert resolve_pairs(LABELS, source=str(with_test), store=store, top=1) in (
        [("card_lost", "card_arrival"), ("card_arrival", "card_lost")], [("refund", "top_up"), ("top_up", "refund")])
    assert len(resolve_pairs(LABELS, source=str(with_test), store=store, top=2)) == 4
    with pytest.raises(ValueError, match="no labelled set"):
        resolve_pairs(LABELS, source=str(bare), store=store)
    with pytest.raises(ValueError, match="no training run #99"):
        resolve_pairs(LABELS, source="99", store=store)
    with pytest.raises(ValueError, match="needs the project"):
        resolve_pairs(LABELS, source="3")
    with pytest.raises(ValueError, match="not both"):
        resolve_pairs(LABELS, pairs="refund:top_up", source="3")
    assert resolve_pairs(LABELS) == []


def test_suggest_pairs_prefers_labelled_data_then_close_calls():
    from promptmix_core.confusion import suggest_pairs

    gold = ["card_lost", "card_arrival", "refund", "top_up"]
    conf = compute_metrics(gold, ["card_arrival", "card_arrival", "refund", "top_up"], LABELS)["confusion"]
    probs = [[0.05, 0.05, 0.46, 0.44]]
    assert suggest_pairs({"val_confusion": conf}, LABELS, pool_probs=probs)[1] == "validation split"
    pairs, where = suggest_pairs({"test_confusion": conf, "val_confusion": {}}, LABELS)
    assert where == "test set" and (pairs[0].a, pairs[0].b) == ("card_lost", "card_arrival")
    pairs, where = suggest_pairs({"steps": 4}, LABELS, pool_probs=probs)
    assert where == "generated pool" and (pairs[0].a, pairs[0].b) == ("refund", "top_up")
    assert suggest_pairs({}, LABELS) == ([], "")
