"""The SetFit student: trains on a few seeds, predicts, saves without pickle and loads back the same."""

from __future__ import annotations

import json

import pytest

from promptmix_core.training.model_io import load_classifier
from promptmix_core.training.setfit_student import SetFitClassifier, SetFitConfig, plan_steps, train_setfit

pytest.importorskip("setfit")


def test_config_lists_every_problem():
    with pytest.raises(ValueError) as err:
        SetFitConfig(num_iterations=0, batch_size=1, body_learning_rate=0, max_steps=-1)
    msg = str(err.value)
    for part in ("num_iterations", "batch_size", "body_learning_rate", "max_steps"):
        assert part in msg


def test_plan_steps_caps_the_contrastive_phase():
    assert plan_steps(6, SetFitConfig(num_iterations=20, batch_size=16, max_steps=0)) == (240, 15)
    assert plan_steps(600, SetFitConfig(num_iterations=20, batch_size=16, max_steps=100)) == (24000, 100)


def test_setfit_trains_on_seeds_and_round_trips(tmp_path, row_maker):
    rows = row_maker(4, seed=3, classes=("sport", "food", "music"))
    names = ["sport", "food", "music", "unused"]
    seen = []
    res = train_setfit([r["text"] for r in rows], [r["label"] for r in rows], names,
                       SetFitConfig(num_iterations=2, batch_size=8), out_dir=tmp_path / "m", progress=seen.append)
    contrastive = [p for p in seen if p["phase"] == "contrastive"]
    assert contrastive[-1]["step"] == contrastive[-1]["steps"] == 6  # 2 x 2 iterations x 12 texts / batch 8
    assert res.status == "done" and res.config["student"] == "setfit" and res.model_dir
    probe = ["the football and the coach with goal", "pizza with cheese and salad", "a guitar song at the concert"]
    labels, probs = res.classifier.predict(probe)
    assert labels == ["sport", "food", "music"]
    assert probs.shape == (3, 4) and abs(float(probs.sum()) - 3.0) < 1e-4
    assert float(probs[:, 3].max()) < 1e-3  # a class without examples is never predicted
    folder = tmp_path / "m"
    assert not [p for p in folder.rglob("*") if p.suffix in (".bin", ".pkl", ".pt", ".pickle", ".joblib")]
    assert json.loads((folder / "label_map.json").read_text())["kind"] == "setfit"
    again = load_classifier(folder)  # the one loader behind predict and "Try the model"
    assert isinstance(again, SetFitClassifier)
    labels2, probs2 = again.predict(probe)
    assert labels2 == labels and abs(probs2 - probs).max() < 1e-5


def test_setfit_refuses_labels_outside_the_task():
    with pytest.raises(ValueError, match="not in the task: ghost"):
        train_setfit(["a b", "c d"], ["sport", "ghost"], ["sport", "food"])
    with pytest.raises(ValueError, match="at least two classes"):
        train_setfit(["a b", "c d"], ["sport", "sport"], ["sport", "food"])
