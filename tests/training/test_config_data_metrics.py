"""Fast checks: settings validation, training-data rules, metrics (no training)."""

from __future__ import annotations

import sys

import pytest

from promptmix_core.store import ProjectStore
from promptmix_core.task import ClassSpec, Task
from promptmix_core.training import (
    TrainConfig,
    aggregate,
    build_training_data,
    compute_metrics,
    default_learning_rate,
    stratified_split,
)


def test_import_is_cheap():
    import subprocess

    code = ("import sys, promptmix_core.training, promptmix_core.eda, promptmix_core.experiment; "
            "print([m for m in ('torch', 'transformers', 'sklearn', 'streamlit') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("learning_rate", 0.0, "learning_rate"),
        ("learning_rate", 5.0, "learning_rate"),
        ("epochs", 0, "epochs"),
        ("batch_size", 0, "batch_size"),
        ("batch_size", 2.5, "batch_size"),
        ("warmup_ratio", 1.0, "warmup_ratio"),
        ("weight_decay", -0.1, "weight_decay"),
        ("max_length", 2, "max_length"),
        ("min_steps", -1, "min_steps"),
        ("eval_every", 0, "eval_every"),
        ("device", "tpu", "device"),
        ("precision", "int8", "precision"),
    ],
)
def test_config_rejects_out_of_range(field, value, words):
    with pytest.raises(ValueError, match=words):
        TrainConfig(**{field: value})


def test_config_lists_every_problem_and_unknown_keys():
    with pytest.raises(ValueError) as ei:
        TrainConfig(epochs=0, batch_size=-1)
    assert "epochs" in str(ei.value) and "batch_size" in str(ei.value)
    with pytest.raises(ValueError, match="unknown training setting"):
        TrainConfig.from_dict({"epoch": 3})


def test_learning_rate_default_and_min_steps_plan():
    assert default_learning_rate(6) == 4e-5
    assert default_learning_rate(77) == 6e-5
    assert TrainConfig().resolved(77).learning_rate == 6e-5
    assert TrainConfig(learning_rate=1e-5).resolved(77).learning_rate == 1e-5
    # k=2 seeds of 6 classes: 12 examples, 2 steps per epoch; min_steps=100 -> 50 epochs
    assert TrainConfig().plan(12) == (50, 2, 100)
    assert TrainConfig(min_steps=0).plan(12) == (5, 2, 10)
    assert TrainConfig(max_steps=7).plan(12) == (4, 2, 7)
    assert TrainConfig(min_steps=0, batch_size=4).plan(16, world_size=2) == (5, 2, 10)
    assert TrainConfig.from_dict(TrainConfig(epochs=3).to_dict()).epochs == 3


TASK = Task("t", [ClassSpec("a", "", ["a one", "a two"]), ClassSpec("b", "", ["b one", "b two"])])


def ex(text, intended, llm=None, status=None, review="pending", review_label=None, label=None):
    return {"text": text, "intended_label": intended, "llm_label": llm, "relabel_status": status,
            "review_status": review, "review_label": review_label, "label": label or llm or intended}


EXAMPLES = [
    ex("x1", "a", "a", "agree", review="accepted"),
    ex("x2", "a", "b", "changed", review="overridden", review_label="a"),
    ex("x3", "b", None, "unparseable", review="rejected"),
    ex("x4", "b", "b", "agree"),
    ex("x5", "b", None, None),
    ex("a one", "a", "a", "agree", review="accepted"),  # duplicate of a seed
    ex("x7", "zzz", "zzz", "agree", review="accepted"),  # unknown class
]


def test_label_sources_with_dicts():
    a1 = build_training_data(TASK, EXAMPLES, label_source="a1")
    gen = {r["text"]: r["label"] for r in a1.rows if r["source"] == "generated"}
    assert gen == {"x1": "a", "x2": "a", "x3": "b", "x4": "b", "x5": "b"}
    assert a1.dropped == {"duplicate": 1, "unknown_label": 1}
    assert len([r for r in a1.rows if r["source"] == "seed"]) == 4

    a2 = build_training_data(TASK, EXAMPLES, label_source="a2")
    gen = {r["text"]: r["label"] for r in a2.rows if r["source"] == "generated"}
    assert gen == {"x1": "a", "x2": "b", "x4": "b"}
    assert a2.dropped["unparseable"] == 1 and a2.dropped["not_relabelled"] == 1

    a2f = build_training_data(TASK, EXAMPLES, label_source="a2", unparseable="a1")
    assert {r["text"] for r in a2f.rows} >= {"x3", "x5"}

    rv = build_training_data(TASK, EXAMPLES, label_source="reviewed")
    gen = {r["text"]: r["label"] for r in rv.rows if r["source"] == "generated"}
    assert gen == {"x1": "a", "x2": "a"}  # rejected, pending dropped; override wins
    assert rv.dropped["rejected"] == 1 and rv.dropped["pending"] == 2
    rv2 = build_training_data(TASK, EXAMPLES, label_source="reviewed", pending="a2")
    gen = {r["text"]: r["label"] for r in rv2.rows if r["source"] == "generated"}
    assert gen == {"x1": "a", "x2": "a", "x4": "b"}
    assert rv.summary()["seeds"] == 4
    with pytest.raises(ValueError, match="label source"):
        build_training_data(TASK, EXAMPLES, label_source="a3")
    with pytest.raises(ValueError, match="pending"):
        build_training_data(TASK, EXAMPLES, label_source="reviewed", pending="keep")


def test_label_sources_with_store_examples(tmp_path):
    store = ProjectStore(tmp_path / "p.pmx")
    store.save_task(TASK)
    job = store.create_job("generate", {})
    store.add_examples([
        {"job_id": job, "slot": f"s{i}", "text": t, "norm_text": t, "intended_label": lab}
        for i, (t, lab) in enumerate([("g1", "a"), ("g2", "a"), ("g3", "b")])
    ])
    e1, e2, e3 = store.list_examples()
    store.set_relabel(e1.id, llm_label="a", status="agree")
    store.set_relabel(e2.id, llm_label="b", status="changed")
    store.set_relabel(e3.id, llm_label=None, status="unparseable")
    store.review(e2.id, "overridden", label="a")
    store.review(e3.id, "rejected")
    store.review(e1.id, "accepted")
    exs = store.list_examples()
    a2 = build_training_data(store.load_task(), exs, label_source="a2")
    assert {r["text"]: r["label"] for r in a2.rows if r["source"] == "generated"} == {"g1": "a", "g2": "b"}
    rv = build_training_data(store.load_task(), exs, label_source="reviewed")
    assert {r["text"]: r["label"] for r in rv.rows if r["source"] == "generated"} == {"g1": "a", "g2": "a"}
    a1 = build_training_data(store.load_task(), exs, label_source="a1")
    assert {r["text"]: r["label"] for r in a1.rows if r["source"] == "generated"} == {"g1": "a", "g2": "a", "g3": "b"}


def test_stratified_split():
    rows = [{"text": f"{lab}{i}", "label": lab} for lab in "ab" for i in range(10)] + [{"text": "c0", "label": "c"}]
    train, held = stratified_split(rows, 0.2, seed=3)
    assert len(held) == 4 and sorted(r["label"] for r in held) == ["a", "a", "b", "b"]
    assert len(train) == 17 and any(r["label"] == "c" for r in train)
    assert stratified_split(rows, 0.2, seed=3) == (train, held)


def test_metrics_match_sklearn():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    y_true = ["a", "a", "b", "b", "c", "c", "c", "a"]
    y_pred = ["a", "b", "b", "b", "c", "a", "b", "a"]
    m = compute_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=["a", "b", "c"])
    for i, lab in enumerate("abc"):
        assert m["per_class"][lab]["precision"] == pytest.approx(p[i])
        assert m["per_class"][lab]["recall"] == pytest.approx(r[i])
        assert m["per_class"][lab]["f1"] == pytest.approx(f[i])
        assert m["per_class"][lab]["support"] == s[i]
    assert m["confusion"]["matrix"] == confusion_matrix(y_true, y_pred, labels=["a", "b", "c"]).tolist()
    # None (an unparseable LLM answer) is wrong and gets its own column
    m2 = compute_metrics(["a", "b"], ["a", None], ["a", "b"])
    assert m2["accuracy"] == 0.5 and m2["confusion"]["labels"][-1] == "<none>"
    agg = aggregate([{"accuracy": 0.5, "macro_f1": 0.4}, {"accuracy": 0.7, "macro_f1": 0.6}])
    assert agg["accuracy_mean"] == pytest.approx(0.6) and agg["accuracy_std"] == pytest.approx(0.1414, abs=1e-3)
