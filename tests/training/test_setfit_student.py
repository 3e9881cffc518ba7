"""The SetFit student: trains on a few seeds, predicts, saves without pickle and loads back the same."""

from __future__ import annotations

import json

import pytest

from promptmix_core.training.model_io import load_classifier
from promptmix_core.training.setfit_student import (SetFitClassifier, SetFitConfig, body_key, body_rows, plan_steps,
                                                    train_setfit)

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


def test_trusted_body_rows_are_the_person_labelled_ones_in_a_fixed_order():
    texts, labels = ["b seed", "gen 1", "a seed", "c seed", "gen 2"], ["x", "x", "y", "x", "y"]
    trusted = [True, False, True, True, False]
    assert body_rows(texts, labels, SetFitConfig(), trusted) == (texts, labels, "all")  # setfit's own way
    cfg = SetFitConfig(body_rows="trusted")
    t, lab, rule = body_rows(texts, labels, cfg, trusted)
    assert rule == "trusted" and t == ["a seed", "b seed", "c seed"] and lab == ["y", "x", "x"]
    assert body_rows(list(reversed(texts)), list(reversed(labels)), cfg, list(reversed(trusted)))[:2] == (t, lab)
    only_x = [True, True, False, True, False]  # one class among the trusted rows: every row makes pairs
    assert body_rows(texts, labels, cfg, only_x)[2].startswith("all (fewer than two classes")
    with pytest.raises(ValueError, match="trusted flags"):
        body_rows(texts, labels, cfg, [True])
    with pytest.raises(ValueError, match="body_rows must be one of"):
        SetFitConfig(body_rows="some")
    # the head's settings do not change the body
    assert body_key(t, lab, cfg) == body_key(t, lab, SetFitConfig(body_rows="trusted", head_c=5, head_balanced=True))
    assert body_key(t, lab, cfg) != body_key(t, lab, SetFitConfig(body_rows="trusted", seed=1))


def test_a_run_and_its_seeds_only_control_share_one_trusted_body(tmp_path, row_maker):
    import numpy as np

    seeds = row_maker(2, seed=3, classes=("sport", "food"))
    gen = row_maker(3, seed=4, classes=("sport", "food"))
    names = ["sport", "food"]
    cfg = SetFitConfig(num_iterations=2, batch_size=8, body_rows="trusted", head_balanced=True)
    rows = gen + seeds  # the order does not matter: the trusted rows are sorted
    run = train_setfit([r["text"] for r in rows], [r["label"] for r in rows], names, cfg,
                       trusted=[False] * len(gen) + [True] * len(seeds), body_cache=tmp_path / "bodies",
                       out_dir=tmp_path / "run")
    seen = []
    control = train_setfit([r["text"] for r in seeds], [r["label"] for r in seeds], names, cfg,
                           trusted=[True] * len(seeds), body_cache=tmp_path / "bodies", out_dir=tmp_path / "control",
                           progress=seen.append)
    assert run.classifier.meta["setfit_body"] == {"rule": "trusted", "rows": 4, "cached": False}
    assert control.classifier.meta["setfit_body"] == {"rule": "trusted", "rows": 4, "cached": True}
    assert [p for p in seen if p.get("cached")]  # the control said it reused the body
    assert len(list((tmp_path / "bodies").glob("setfit-body-*"))) == 1
    probe = ["a football match", "a bowl of soup"]
    a = run.classifier.body.encode(probe)
    b = control.classifier.body.encode(probe)
    assert np.allclose(a, b, atol=1e-6)  # the same body: only the heads differ
    assert json.loads((tmp_path / "run" / "label_map.json").read_text())["train_config"]["class_weight"] == "balanced"
