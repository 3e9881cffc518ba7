"""The quick student (frozen MiniLM embeddings + logistic regression), the shared classify() behind
``promptmix predict`` and "Try the model", and test-set scoring of a fine-tuning run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from promptmix_core.store import ProjectStore
from promptmix_core.training import get_classifier, train
from promptmix_core.training.embed_lr import EmbedLRConfig, train_embed_lr
from promptmix_core.training.inference import classify, read_texts
from promptmix_core.errors import TaskError


def test_embed_lr_trains_saves_loads_and_scores_every_class(tmp_path, row_maker):
    rows = row_maker(8, seed=1, classes=("sport", "food"))
    test = row_maker(5, seed=2, classes=("sport", "food", "music"))
    names = ["sport", "food", "music"]  # music has no training data at all
    store = ProjectStore(tmp_path / "p.pmx")
    run = store.create_run({"student": "embed-lr"})
    res = train_embed_lr({"C": 10.0}, [r["text"] for r in rows], [r["label"] for r in rows], label_names=names,
                         test_texts=[r["text"] for r in test], test_labels=[r["label"] for r in test],
                         out_dir=tmp_path / "model", store=store, run_id=run)
    assert res.status == "done" and res.steps == 1
    fm = store.get_run(run).final_metrics
    assert store.get_run(run).status == "done" and fm["student"] == "embed-lr"
    # confusion matrix over ALL classes, the class without training data included
    assert fm["test_confusion"]["labels"] == names and len(fm["test_confusion"]["matrix"]) == 3
    assert fm["test_n"] == 15 and set(fm["test_per_class"]) == set(names)
    assert fm["test_per_class"]["music"]["recall"] == 0.0  # never predicted: it had no training data
    # sport and food are learnable from frozen embeddings
    sport_food = fm["test_confusion"]["matrix"][0][0] + fm["test_confusion"]["matrix"][1][1]
    assert sport_food >= 8, fm["test_confusion"]
    assert {m["name"] for m in store.get_metrics(run)} == {"train_loss"}
    # a folder of safetensors + label_map.json, never a pickle
    files = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert files == ["embed_lr.safetensors", "label_map.json"]
    meta = json.loads((tmp_path / "model" / "label_map.json").read_text())
    assert meta["kind"] == "embed-lr" and meta["labels"] == names
    clf = get_classifier(tmp_path / "model")
    labels, probs = clf.predict(["the football match and the goal", "a pizza with cheese"])
    assert labels == ["sport", "food"] and probs.shape == (2, 3)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5) and probs[:, 2].max() < 1e-3


def test_embed_lr_settings_are_validated():
    with pytest.raises(ValueError, match="C must be"):
        EmbedLRConfig(C=0)
    with pytest.raises(ValueError, match="unknown quick-student"):
        EmbedLRConfig.from_dict({"epochs": 3})
    with pytest.raises(ValueError, match="at least two classes"):
        train_embed_lr(None, ["a", "b"], ["x", "x"], label_names=["x", "y"])


def test_classify_is_shared_by_cli_and_app(tmp_path, row_maker, capsys):
    rows = row_maker(6, seed=3)
    train_embed_lr(None, [r["text"] for r in rows], [r["label"] for r in rows], label_names=["sport", "food"],
                   out_dir=tmp_path / "m")
    seen = []
    texts = [f"the tennis player number {i}" for i in range(70)] + ["=cmd|' /C calc'!A0 soup recipe"]
    pred = classify(tmp_path / "m", texts, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(64, 71), (71, 71)]  # one progress step per chunk
    assert len(pred) == 71 and pred.predicted[0] == "sport" and pred.classes == ["sport", "food"]
    assert pred.ranked(0)[0][0] == "sport" and abs(sum(p for _, p in pred.ranked(0)) - 1) < 1e-5
    csv_bytes = pred.to_csv_bytes().decode()
    assert csv_bytes.splitlines()[0] == "text,label,confidence,sport,food"
    assert "\r\n'=cmd" in csv_bytes  # formula-safe for spreadsheets
    rows_out = [json.loads(x) for x in pred.to_jsonl_bytes().decode().splitlines()]
    assert rows_out[0]["label"] == "sport" and set(rows_out[0]["probabilities"]) == {"sport", "food"}
    # the CLI prints through the same function
    from promptmix_core.cli import main

    assert main(["predict", str(tmp_path / "m"), "a football match"]) == 0
    assert capsys.readouterr().out.startswith("sport\t")


def test_read_texts_formats():
    assert read_texts(b"text,id\nhello,1\n,2\nworld,3\n", "a.csv") == ["hello", "world"]
    assert read_texts(b"text,label\nhi,x\n", "b.csv") == ["hi"]  # a label column is allowed
    assert read_texts(b'{"text": "x"}\n\n{"text": "y", "label": "z"}\n', "c.jsonl") == ["x", "y"]
    assert read_texts(b"one\n\ntwo\n", "d.txt") == ["one", "two"]
    with pytest.raises(TaskError, match="missing the column"):
        read_texts(b"a,b\n1,2\n", "e.csv")
    with pytest.raises(TaskError, match="missing the column"):
        read_texts(b'{"t": 1}\n', "f.jsonl")


@pytest.mark.slow
def test_fine_tuning_scores_the_test_set_over_all_classes(tmp_path, tiny_rows, fast_cfg, row_maker):
    test = row_maker(3, seed=9, classes=("sport", "food", "music"))
    res = train(fast_cfg, [r["text"] for r in tiny_rows], [r["label"] for r in tiny_rows],
                label_names=["sport", "food", "music"], test_texts=[r["text"] for r in test],
                test_labels=[r["label"] for r in test], out_dir=tmp_path / "ft")
    fm = res.final_metrics()
    assert fm["test_n"] == 9 and fm["test_confusion"]["labels"] == ["sport", "food", "music"]
    assert sum(map(sum, fm["test_confusion"]["matrix"])) == 9
    # the recorded scores are the saved model's
    pred = classify(tmp_path / "ft", [r["text"] for r in test])
    acc = np.mean([p == r["label"] for p, r in zip(pred.predicted, test)])
    assert acc == pytest.approx(fm["test_accuracy"])
    assert json.loads((tmp_path / "ft" / "label_map.json").read_text())["test_metrics"]["n"] == 9
