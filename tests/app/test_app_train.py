"""4 · Train: settings and their validation, starting a job, live charts, cancel, run history."""

from __future__ import annotations

import os

import pytest
from app_helpers import by_key, texts

from promptmix_core import jobs
from promptmix_core.demo import DEMO_NAME

TRAIN = "app_pages/4_train.py"
K = f"train::{DEMO_NAME}::"


@pytest.fixture
def started(monkeypatch, demo_store):
    calls = []

    def fake_start(store_path, kind, config, *, api_key=None, **kw):  # key_endpoint=: the key is bound to its URL
        calls.append({"kind": kind, "config": dict(config)})
        return demo_store.create_job(kind, config)

    monkeypatch.setattr(jobs, "start_job", fake_start)
    return calls


def finetune(at):
    """Pick the fine-tuning student (the default is the one the measurements pick)."""
    by_key(at.radio, K + "student").set_value("finetune")
    at.run()
    return at


def no_curation(at):
    """Train on every generated example the label rules keep (the default curation off)."""
    by_key(at.checkbox, K + "curation").uncheck()
    at.run()
    return at


def test_train_page_renders(make_app):
    at = make_app(TRAIN)
    assert by_key(at.radio, K + "student").value == "auto"
    assert "SetFit" in texts(at) and "(picked)" in texts(at) and "Why:" in texts(at)
    assert "paper's choice" not in " ".join(by_key(at.radio, K + "label_source").options)
    assert any(o.startswith("SetFit") for o in by_key(at.radio, K + "student").options)  # offered, as the README says
    finetune(at)
    assert by_key(at.radio, K + "model_choice").value == "bundled"
    assert by_key(at.radio, K + "label_source").value == "a2"
    assert "Device:" in texts(at)
    assert "No training runs yet" in texts(at)
    assert not by_key(at.button, "train_start").disabled
    # counts per label source are shown in the choices
    assert "20 generated" in by_key(at.radio, K + "label_source").options[0]
    # what the run will train on: the 20 generated, less the 5 whose relabel names another class (curation)
    assert "Training data: 10 seeds + 15 generated examples" in texts(at)


@pytest.mark.parametrize("lr, words", [("abc", "as a number"), ("0", "above 0"), ("2", "at most 1"), ("-1e-5", "above 0")])
def test_learning_rate_is_validated(make_app, lr, words):
    at = finetune(make_app(TRAIN))
    by_key(at.text_input, K + "lr").input(lr)
    at.run()
    assert any(words in e.value for e in at.error)
    assert by_key(at.button, "train_start").disabled


def test_other_model_folder_is_checked(make_app, tmp_path):
    at = finetune(make_app(TRAIN))
    by_key(at.radio, K + "model_choice").set_value("other")
    at.run()
    assert by_key(at.button, "train_start").disabled  # nothing given yet
    by_key(at.text_input, K + "model").input(str(tmp_path / "nope"))
    at.run()
    assert any("No folder at" in e.value for e in at.error)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "pytorch_model.bin").write_bytes(b"x")
    by_key(at.text_input, K + "model").input(str(pickled))
    at.run()
    assert any("pickled" in e.value for e in at.error)
    by_key(at.text_input, K + "model").input("distilbert-base-uncased")
    at.run()
    assert "Hugging Face Hub" in texts(at)
    assert not by_key(at.button, "train_start").disabled


def test_start_training(make_app, started, demo_store):
    at = finetune(make_app(TRAIN))
    by_key(at.radio, K + "label_source").set_value("reviewed")
    at.run()
    # nothing reviewed yet: the reviewed source has only the seeds unless pending ones use the relabel
    assert "0 generated" in by_key(at.radio, K + "label_source").options[2]
    by_key(at.radio, K + "pending").set_value("a2")
    at.run()
    # what the run will train on: the 20 generated, less the 5 whose relabel names another class (curation)
    assert "Training data: 10 seeds + 15 generated examples" in texts(at)
    by_key(at.number_input, K + "epochs").set_value(2)
    by_key(at.text_input, K + "lr").input("5e-5")
    by_key(at.number_input, K + "min_steps").set_value(0)
    by_key(at.number_input, K + "max_steps").set_value(3)
    by_key(at.text_input, K + "name").input("quick look")
    at.run()
    by_key(at.button, "train_start").click()
    at.run()
    assert not at.exception, at.exception
    assert len(started) == 1
    cfg = started[0]["config"]
    assert started[0]["kind"] == "train"
    assert cfg["label_source"] == "reviewed" and cfg["pending"] == "a2" and cfg["name"] == "quick look"
    # the config is a typed spec the training job accepts, with exactly these training settings
    from promptmix_core.specs import TrainingSpec
    from promptmix_core.training.config import TrainConfig
    from promptmix_core.training.jobs import JOB_KEYS

    assert set(cfg) <= JOB_KEYS
    assert TrainingSpec.from_dict(cfg).train == TrainConfig(model=None, epochs=2, learning_rate=5e-5, batch_size=8,
                                                           min_steps=0, seed=0, max_length=64, max_steps=3)
    assert demo_store.get_settings()["training"]["train"]["epochs"] == 2
    assert by_key(at.button, "train_start").disabled  # the job is now active


def test_live_charts_and_cancel(make_app, demo_store):
    job = demo_store.create_job("train", {"label_source": "a2"}, status="running")
    demo_store.update_job(job, pid=os.getpid(), progress={"phase": "training", "step": 6, "total_steps": 20,
                                                           "epoch": 1.5, "epochs": 5})
    run = demo_store.create_run({"label_source": "a2", "student": "finetune", "val_path": "/data/val.csv"},
                                name="live", job_id=job)
    demo_store.update_run(run, status="running", device="cpu")
    at = make_app(TRAIN)
    assert "The loss curve appears" in texts(at)
    for step in (1, 2, 3):
        demo_store.log_metrics(run, step, {"train_loss": 2.0 / step, "lr": 1e-5})
    at.run()  # the fragment's timer would do this in the browser
    charts = at.get("plotly_chart")
    assert len(charts) == 1 and "Accuracy on the validation rows appears" in texts(at)
    demo_store.log_metrics(run, 3, {"val_accuracy": 0.6, "val_macro_f1": 0.55, "val_loss": 1.1})
    at.run()
    assert len(at.get("plotly_chart")) == 2
    assert at.get("progress")[0].proto.text.startswith("Training: 6 / 20 steps · epoch")
    by_key(at.button, f"train_cancel_{job}").click()
    at.run()
    assert demo_store.get_job(job).cancel_requested


def test_finished_run_shows_scores_and_history(make_app, demo_store):
    job = demo_store.create_job("train", {"label_source": "a1"}, status="running")
    run = demo_store.create_run({"label_source": "a1", "student": "finetune",
                                 "train": {"epochs": 5, "learning_rate": 4e-5}}, name="first", job_id=job)
    demo_store.update_run(run, status="done", device="cpu", final_metrics={
        "val_accuracy": 0.8, "val_macro_f1": 0.75, "val_n": 5, "n_train": 25, "epochs": 34, "steps": 100,
        "data": {"train": 25, "val": 5}})
    demo_store.update_job(job, status="done", message="training finished")
    at = make_app(TRAIN)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Accuracy"] == "80.0%" and metrics["Macro-F1"] == "75.0%" and metrics["Trained on"] == "25"
    assert "Scores on held-out generated examples." in texts(at)
    history = at.dataframe[-1].value
    assert list(history["name"]) == ["first"] and history["accuracy"][0] == 0.8
    assert history["epochs"][0] == "34"  # the plan's real epochs (minimum steps raised the 5 asked for)


def test_failed_training_shows_the_error(make_app, demo_store):
    job = demo_store.create_job("train", {}, status="running")
    demo_store.update_job(job, status="failed", message="ModelLoadError: the bundled MiniLM model is not installed")
    at = make_app(TRAIN)
    assert any("bundled MiniLM model is not installed" in e.value for e in at.error)


def test_learning_rate_follows_train_config_for_60_classes(make_app, started, demo_store):
    """The page no longer hard-codes 4e-5: left empty, the learning rate is TrainConfig's rule
    (6e-5 for 50+ classes), and the job runs with exactly that."""
    from promptmix_core.specs import TrainingSpec
    from promptmix_core.task import ClassSpec, Task

    demo_store.save_task(Task("many", [ClassSpec(f"class_{i:02d}", "", [f"seed text {i}"]) for i in range(60)]))
    at = finetune(make_app(TRAIN))
    assert by_key(at.text_input, K + "lr").value == ""
    assert "Auto: 6e-05 for 60 classes" in texts(at)
    by_key(at.radio, K + "label_source").set_value("a1")
    at.run()
    by_key(at.button, "train_start").click()
    at.run()
    assert not at.exception, at.exception
    spec = TrainingSpec.from_dict(started[0]["config"])
    assert spec.train.learning_rate is None
    assert spec.train.resolved(60).learning_rate == 6e-5


def test_old_flat_train_settings_are_migrated(demo_store):
    """Settings saved by earlier versions (flat ``train_*`` keys, the page's hard-coded "4e-5") still
    load; the old default no longer overrides TrainConfig's rule, a chosen rate is kept."""
    from promptmix_core.specs import TrainingSpec

    old = {"train_model_choice": "bundled", "train_model": "", "train_label_source": "a1", "train_epochs": 7,
           "train_lr": "4e-5", "train_batch": 16, "train_min_steps": 50, "train_val": 0.1, "train_seed": 3,
           "train_max_length": 32, "train_max_steps": 0}
    spec = TrainingSpec.from_page_settings(old)
    assert spec.label_source == "a1" and spec.val_fraction == 0.1
    assert (spec.train.epochs, spec.train.batch_size, spec.train.min_steps, spec.train.seed,
            spec.train.max_length, spec.train.max_steps) == (7, 16, 50, 3, 32, None)
    assert spec.train.learning_rate is None
    assert TrainingSpec.from_page_settings({**old, "train_lr": "3e-5"}).train.learning_rate == 3e-5


def test_after_reviewing_the_page_defaults_to_reviewed_labels(make_app, started, demo_store):
    ex = demo_store.list_examples()
    demo_store.review(ex[0].id, "rejected")
    demo_store.review(ex[1].id, "overridden", label="exchange_rate")
    demo_store.review(ex[2].id, "accepted")
    at = make_app(TRAIN)
    assert not at.exception, at.exception
    assert by_key(at.radio, K + "label_source").value == "reviewed"
    pending = by_key(at.radio, K + "pending")
    assert pending.value == "drop" and len(pending.options) == 3  # leave out, A1, A2: a visible choice
    assert "not reviewed (17)" in pending.label
    # counts per class of exactly what the run will use: 10 seeds + the accepted and the overridden one
    counts = [d.value for d in at.dataframe if "validation" in d.value.columns][0]
    assert counts["train"].sum() + counts["validation"].sum() == 12
    assert int(counts.loc[counts["class"] == "exchange_rate", "generated"].iloc[0]) >= 1
    assert "Left out: 1 rejected · 17 pending (left out)" in texts(at)
    assert any("Fewer generated examples than seeds" in w.value for w in at.warning)
    by_key(at.button, "train_start").click()
    at.run()
    cfg = started[0]["config"]
    assert cfg["label_source"] == "reviewed" and cfg["pending"] == "drop"


def test_the_plan_shown_is_the_real_one(make_app, started):
    at = no_curation(finetune(make_app(TRAIN)))
    # 10 seeds + 20 generated (none held out); batch 8: 4 steps per epoch; minimum 100 steps
    assert "**Plan:** 100 steps = 25 epochs over 30 examples" in texts(at)
    assert "batch 8, 4 steps per epoch, learning rate 4e-05 (auto)" in texts(at)
    assert any("Minimum steps 100 raises the 5 epochs you asked for to 25" in i.value for i in at.info)
    by_key(at.number_input, K + "min_steps").set_value(0)
    at.run()
    assert "**Plan:** 20 steps = 5 epochs over 30 examples" in texts(at)
    assert not any("raises" in i.value for i in at.info)
    by_key(at.button, "train_start").click()
    at.run()
    assert started[0]["config"]["name"] == "a2 · 20 steps = 5 epochs"  # the run is named after the real plan


def test_quick_student_and_test_set_on_the_train_page(make_app, started, demo_store):
    demo_store.set_test_set([{"text": "my card was taken from my bag", "label": "card_lost_or_stolen"},
                             {"text": "what rate do you give for dollars", "label": "exchange_rate"}], name="real.csv")
    at = make_app(TRAIN)
    assert "Test set: scored on 2 real labelled examples (real.csv)" in texts(at).replace("**", "")
    by_key(at.radio, K + "student").set_value("embed-lr")
    at.run()
    no_curation(at)
    assert not at.exception, at.exception
    assert "fits a logistic regression" in texts(at)
    # 30 training + 2 test texts
    assert "Plan: embed 32 texts once, then fit a logistic regression on 30" in texts(at).replace("**", "")
    by_key(at.button, "train_start").click()
    at.run()
    cfg = started[0]["config"]
    assert cfg["student"] == "embed-lr" and cfg["use_test_set"] is True and cfg["name"] == "a2 · quick student"


def test_accuracy_axis_stays_within_0_to_100_percent(make_app, demo_store):
    import json

    job = demo_store.create_job("train", {"label_source": "a2"}, status="running")
    demo_store.update_job(job, pid=os.getpid(), progress={"phase": "training", "step": 4, "total_steps": 20})
    run = demo_store.create_run({"label_source": "a2", "val_path": "/data/val.csv"}, name="live", job_id=job)
    demo_store.update_run(run, status="running", device="cpu")
    demo_store.log_metrics(run, 2, {"train_loss": 1.5})
    demo_store.log_metrics(run, 2, {"val_accuracy": 0.5, "val_macro_f1": 0.5, "val_loss": 1.2})
    demo_store.log_metrics(run, 4, {"val_accuracy": 1.0, "val_macro_f1": 1.0, "val_loss": 0.9})
    at = make_app(TRAIN)
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    acc = [s for s in specs if s["layout"]["title"]["text"] == "Validation accuracy"][0]
    assert acc["layout"]["yaxis"]["range"] == [0, 1] and acc["layout"]["yaxis"]["tickformat"] == ".0%"
    assert acc["layout"]["yaxis"]["autorange"] is False
    # a later poll reads only the new rows and keeps the axis
    demo_store.log_metrics(run, 6, {"val_accuracy": 0.75, "val_macro_f1": 0.7, "val_loss": 0.8})
    at.run()
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    acc = [s for s in specs if s["layout"]["title"]["text"] == "Validation accuracy"][0]
    assert acc["data"][0]["y"] == [0.5, 1.0, 0.75] and acc["layout"]["yaxis"]["range"] == [0, 1]


def test_validation_on_generated_examples_is_not_charted(make_app, demo_store):
    """The live chart sat at 100 % because validation was one generated example: without real
    validation rows the validation line is hidden and the page says why."""
    job = demo_store.create_job("train", {"label_source": "a2"}, status="running")
    demo_store.update_job(job, pid=os.getpid(), progress={"phase": "training", "step": 4, "total_steps": 20})
    run = demo_store.create_run({"label_source": "a2", "student": "finetune", "val_fraction": 0.2}, name="live",
                                job_id=job)
    demo_store.update_run(run, status="running", device="cpu")
    demo_store.log_metrics(run, 2, {"train_loss": 1.5})
    demo_store.log_metrics(run, 2, {"val_accuracy": 1.0, "val_macro_f1": 1.0, "val_loss": 0.1})
    at = make_app(TRAIN)
    assert not at.exception, at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == 1  # the loss chart only
    import json

    names = [d["name"] for d in json.loads(charts[0].proto.spec)["data"]]
    assert names == ["training loss"]
    assert "No validation chart" in texts(at) and "not" in texts(at)


def _finished(demo_store, final_metrics, config=None):
    job = demo_store.create_job("train", {"label_source": "a2"}, status="running")
    run = demo_store.create_run(config or {"label_source": "a2", "student": "auto"}, name="a2 · SetFit student",
                                job_id=job)
    demo_store.update_run(run, status="done", device="cpu", final_metrics=final_metrics)
    demo_store.update_job(job, status="done", message="done")
    return run


def test_a_run_worse_than_its_control_says_so_and_offers_the_seeds_only_model(make_app, demo_store, tmp_path):
    ctl_dir = tmp_path / "control-abc"
    ctl_dir.mkdir()
    (ctl_dir / "label_map.json").write_text("{}")
    run = _finished(demo_store, {
        "student": "setfit", "student_auto": True, "student_reason": "10 training examples per class is few-shot",
        "test_accuracy": 0.55, "test_macro_f1": 0.5, "test_n": 40, "n_train": 30,
        "control": {"student": "setfit", "model_dir": str(ctl_dir), "n_train": 10,
                    "test": {"accuracy": 0.8, "macro_f1": 0.78, "n": 40},
                    "delta": {"accuracy": -0.25, "ci95": [-0.4, -0.1], "n": 40, "verdict": "worse"}}})
    at = make_app(TRAIN)
    assert not at.exception, at.exception
    err = " ".join(e.value for e in at.error).replace("\\", "")  # as rendered (markdown escapes removed)
    assert "generated data: -25.0 points (95 % bootstrap interval -40.0..-10.0" in err
    assert "made the model worse" in err
    assert "picked: 10 training examples per class is few-shot" in texts(at)
    history = at.dataframe[-1].value
    assert history["vs seeds only"][0] == "-25.0 (-40.0..-10.0)"
    by_key(at.button, f"train_keep_control_{run}").click()
    at.run()
    kept = [r for r in demo_store.list_runs() if r.method == "seeds-only"]
    assert len(kept) == 1 and kept[0].model_dir == str(ctl_dir) and kept[0].status == "done"
    assert kept[0].final_metrics["test_accuracy"] == 0.8 and "control of run" in kept[0].name


def test_without_a_test_set_the_page_says_the_comparison_needs_one(make_app, demo_store):
    from promptmix_core.training.control import NO_TEST_SET

    _finished(demo_store, {"student": "setfit", "n_train": 30, "control": {"skipped": NO_TEST_SET}})
    at = make_app(TRAIN)
    warned = [w.value.replace("\\", "") for w in at.warning]  # as rendered (markdown escapes removed)
    assert any("needs a test set" in w and "--test FILE" in w for w in warned)


def test_a_seeds_only_run_is_not_named_after_a_label_source(make_app, started, demo_store):
    at = make_app(TRAIN)
    by_key(at.radio, K + "label_source").set_value("reviewed")  # nothing reviewed: the seeds alone
    at.run()
    by_key(at.radio, K + "student").set_value("embed-lr")
    at.run()
    by_key(at.button, "train_start").click()
    at.run()
    assert started[0]["config"]["name"] == "seeds only · quick student"


def test_with_a_weak_llm_only_reviewed_examples_train_and_the_page_says_why(make_app, demo_store):
    """The relabel found the LLM weak (the embedding judge gave the labels): unreviewed examples are
    left out by the curation, the page counts what the run will really use, says why and where to go."""
    import json

    from promptmix_core.judge import LABEL_SOURCE_META

    demo_store.set_meta(LABEL_SOURCE_META, json.dumps({"source": "judge", "reason": "the bundled model"}))
    at = make_app(TRAIN)
    assert not at.exception, at.exception
    page = texts(at)
    assert "Training data: 10 seeds + 0 generated examples" in page
    assert "15 labelled by the embedding judge only" in page and "3 · Review" in page
    assert any("this run trains on the seeds alone" in w.value for w in at.warning)
    # a reviewed example is a person's label: it trains the model again
    ex = next(e for e in demo_store.list_examples() if e.relabel_status == "agree")
    demo_store.review(ex.id, "accepted")
    at = make_app(TRAIN)  # once anything is reviewed the page trains on the reviewed labels (pending left out)
    assert "Training data: 10 seeds + 1 generated examples" in texts(at)
    assert "labelled by the embedding judge only" not in texts(at)
