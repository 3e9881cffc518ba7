"""5 · Results: run comparison, confusion matrix, per-class scores, the embedding map, exports."""

from __future__ import annotations

import numpy as np
import pytest
from app_helpers import by_key, texts

RESULTS = "app_pages/5_results.py"
LABELS = ["card_lost_or_stolen", "declined_card_payment", "transfer_not_received", "exchange_rate",
          "refund_not_showing"]


def _per_class(f1s):
    return {lab: {"precision": f, "recall": f, "f1": f, "support": 2} for lab, f in zip(LABELS, f1s)}


def _add_run(store, name, acc, f1, *, flat=False, model_dir=None):
    run = store.create_run({"label_source": "a2", "train": {"epochs": 3}}, name=name)
    matrix = [[2 if i == j else 0 for j in range(5)] for i in range(5)]
    matrix[0][1] = 1
    if flat:
        fm = {"accuracy": acc, "macro_f1": f1, "per_class": _per_class([f1] * 5), "confusion_matrix": matrix,
              "labels": LABELS}
    else:
        fm = {"val_accuracy": acc, "val_macro_f1": f1, "val_n": 11, "val_per_class": _per_class([f1] * 5),
              "val_confusion": {"labels": LABELS, "matrix": matrix}, "n_train": 30, "epochs": 3, "steps": 12,
              "train_time_s": 4.2, "data": {"train": 30, "seeds": 10, "val": 11}}
    store.update_run(run, status="done", device="cpu", final_metrics=fm, model_dir=model_dir)
    return run


def test_empty_state_without_runs(make_app, demo_store):
    at = make_app(RESULTS)
    assert "No finished runs yet" in texts(at)
    assert "No saved model yet" in texts(at)
    # the export works before any training
    assert "30 rows: 10 seeds, 20 generated" in texts(at)
    assert len(at.get("download_button")) == 3  # the data set's three formats (the report is prepared on a click)


def test_the_report_is_offered_as_a_download(make_app, demo_store):
    _add_run(demo_store, "a2 relabel", 0.8, 0.78)
    at = make_app(RESULTS)
    assert not at.exception
    assert not [b for b in at.get("download_button") if getattr(b, "key", None) == "res_report"]
    at.button(key="res_report_prepare").click().run()  # built once, on the click, kept as bytes
    assert not at.exception
    button = by_key(at.get("download_button"), "res_report")
    assert button.proto.label == "Download report"
    at.run()  # a rerun keeps the same file: the download does not depend on the rerun
    assert by_key(at.get("download_button"), "res_report").proto.label == "Download report"
    _, _, page = at.session_state["res_report_file"]
    page = page.decode("utf-8")
    assert "Banking support" in page and "80.0%" in page


def test_compare_two_runs(make_app, demo_store):
    _add_run(demo_store, "a1 baseline", 0.6, 0.55)
    _add_run(demo_store, "a2 relabel", 0.8, 0.78, flat=True)
    at = make_app(RESULTS)
    assert not at.exception
    metrics = [(m.label, m.value) for m in at.metric]
    assert ("Accuracy", "80.0%") in metrics and ("Accuracy", "60.0%") in metrics
    assert ("Macro-F1", "78.0%") in metrics
    # no delta between runs (the oldest selected run is no baseline): runs without a control show none
    deltas = [m.proto.delta for m in at.metric if m.label == "Accuracy"]
    assert not any(deltas)
    assert "No seeds-only control for this run (trained before controls)." in texts(at)
    # overall bars, per-class bars and one confusion matrix per run
    assert len(at.get("plotly_chart")) == 4
    assert len(at.tabs) == 2
    per_class_tables = [df.value for df in at.dataframe if "precision" in df.value.columns]
    assert len(per_class_tables) == 2 and list(per_class_tables[0]["class"]) == LABELS
    assert "held-out" in texts(at)
    # drop one run from the comparison
    sel = by_key(at.multiselect, "res_runs::Banking support demo")
    sel.unselect(sel.value[0])
    at.run()
    assert len(at.tabs) == 1 and len(at.get("plotly_chart")) == 3


def test_embedding_map(make_app, demo_store, monkeypatch):
    import promptmix_core.embed as embed

    monkeypatch.setattr(embed, "embed_texts", lambda texts: np.random.default_rng(0).normal(size=(len(texts), 8)))
    at = make_app(RESULTS)
    by_key(at.button, "res_map_btn").click()
    at.run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 1
    assert "Stars: seeds" in texts(at)
    by_key(at.radio, "res_map_color").set_value("final label")
    at.run()
    assert len(at.get("plotly_chart")) == 1


def test_embedding_map_falls_back_gracefully(make_app, demo_store, monkeypatch):
    import promptmix_core.embed as embed

    def broken(texts):
        raise RuntimeError("the bundled MiniLM model is missing")

    monkeypatch.setattr(embed, "embed_texts", broken)
    at = make_app(RESULTS)
    by_key(at.button, "res_map_btn").click()
    at.run()
    assert not at.exception
    assert "The map is not available: the bundled MiniLM model is missing" in texts(at)


@pytest.mark.parametrize("source, pending, rows", [("a1", None, 30), ("a2", None, 30), ("reviewed", "drop", 11),
                                                   ("reviewed", "a2", 29)])
def test_export_options(make_app, demo_store, source, pending, rows):
    ex = demo_store.list_examples()
    demo_store.review(ex[0].id, "accepted")
    demo_store.review(ex[1].id, "rejected")
    at = make_app(RESULTS)
    by_key(at.selectbox, "res_exp_src").select(source)
    at.run()
    if pending:
        by_key(at.radio, "res_exp_pending").set_value(pending)
        at.run()
    assert f"{rows} rows" in texts(at)
    by_key(at.checkbox, "res_exp_seeds").uncheck()
    at.run()
    assert f"{rows - 10} rows" in texts(at)


def test_model_download_offered_for_a_saved_model(make_app, demo_store, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"0" * 1000)
    _add_run(demo_store, "saved", 0.7, 0.7, model_dir=str(folder))
    at = make_app(RESULTS)
    assert len(at.get("download_button")) == 4  # the model zip and the data set's three formats (the report is prepared on a click)
    assert "2 files" in texts(at)


def _test_run(store, acc=0.75, n=8):
    labels = LABELS
    matrix = [[0] * 5 for _ in range(5)]
    for i in range(5):
        matrix[i][i] = 1
    matrix[1][0] = 1
    matrix[2][2] += 1
    matrix[3][4] = 1
    fm = {"val_accuracy": 1.0, "val_macro_f1": 1.0, "val_n": 2, "val_per_class": _per_class([1.0] * 5),
          "val_confusion": {"labels": labels, "matrix": [[1 if i == j and i < 2 else 0 for j in range(5)] for i in range(5)]},
          "test_accuracy": acc, "test_macro_f1": 0.7, "test_n": n, "test_per_class": _per_class([0.7] * 5),
          "test_confusion": {"labels": labels, "matrix": matrix}, "n_train": 30, "epochs": 3, "steps": 12,
          "train_time_s": 4.2, "data": {"train": 30, "seeds": 10, "val": 2}}
    run = store.create_run({"label_source": "reviewed", "train": {"epochs": 3}}, name="with test set")
    store.update_run(run, status="done", device="cpu", final_metrics=fm)
    return run


def test_run_scored_on_the_test_set_shows_test_scores_over_all_classes(make_app, demo_store):
    demo_store.set_test_set([{"text": f"t{i}", "label": LABELS[i % 5]} for i in range(8)], name="real.csv")
    _test_run(demo_store)
    at = make_app(RESULTS)
    assert not at.exception, at.exception
    # the test-set score, not the 100 % on two held-out generated examples
    assert ("Accuracy", "75.0%") in [(m.label, m.value) for m in at.metric]
    assert "on 8 test examples" in texts(at)
    assert "Scores on 8 test examples, over all 5 classes" in texts(at)
    assert "On 2 held-out generated examples: accuracy 100.0%" in texts(at)
    assert "No test set" not in texts(at)
    import json as _json

    specs = [_json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    heat = [s["data"][0] for s in specs if s["data"] and s["data"][0]["type"] == "heatmap"]
    assert len(heat) == 1
    assert heat[0]["x"] == LABELS and heat[0]["y"] == LABELS  # every class, even those never predicted
    import base64

    counts = np.frombuffer(base64.b64decode(heat[0]["text"]["bdata"]), dtype=heat[0]["text"]["dtype"])
    assert counts.sum() == 8 and heat[0]["text"]["shape"] == "5, 5"  # the test set's counts, not the 2 generated


def test_without_a_test_set_the_page_says_scores_mean_little(make_app, demo_store):
    _add_run(demo_store, "val only", 1.0, 1.0)
    at = make_app(RESULTS)
    assert any("No test set" in w.value and "mean little" in w.value for w in at.warning)
    assert "on 11 held-out generated examples" in texts(at)


def test_try_the_model_with_a_quick_student(make_app, demo_store, tmp_path):
    from promptmix_core.training.embed_lr import train_embed_lr

    task = demo_store.load_task()
    rows = task.seed_rows()
    res = train_embed_lr(None, [r["text"] for r in rows], [r["label"] for r in rows], label_names=task.class_names,
                         out_dir=tmp_path / "quick")
    run = demo_store.create_run({"student": "embed-lr"}, name="quick")
    demo_store.update_run(run, status="done", device="cpu", model_dir=res.model_dir, final_metrics=res.final_metrics())
    at = make_app(RESULTS)
    assert by_key(at.button, "res_try_btn").disabled  # nothing typed yet
    by_key(at.text_area, "res_try_text::Banking support demo").input("Someone stole my card, block it please")
    at.run()
    by_key(at.button, "res_try_btn").click()
    at.run()
    assert not at.exception, at.exception
    assert "Predicted class: **card_lost_or_stolen**" in texts(at), [t for t in texts(at).splitlines() if "redict" in t]
    import json as _json

    specs = [_json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    spec = [s for s in specs if s["layout"].get("xaxis", {}).get("title", {}).get("text") == "probability"][0]
    assert sorted(spec["data"][0]["y"]) == sorted(LABELS)  # one bar per class
    assert abs(sum(spec["data"][0]["x"]) - 1.0) < 1e-3
    assert spec["layout"]["xaxis"]["range"] == [0, 1]


def test_generate_where_the_model_is_confused(make_app, demo_store, tmp_path, monkeypatch):
    """The pairs come from the run's test-set confusions; one click starts a targeted generation job."""
    from promptmix_core import jobs
    from promptmix_core.specs import GenerationSpec
    from promptmix_core.training.embed_lr import train_embed_lr

    task = demo_store.load_task()
    rows = task.seed_rows()
    res = train_embed_lr(None, [r["text"] for r in rows], [r["label"] for r in rows], label_names=task.class_names,
                         out_dir=tmp_path / "quick")
    run = _test_run(demo_store)  # test confusions: declined->lost x1, exchange_rate->refund x1
    demo_store.update_run(run, model_dir=res.model_dir)
    launched = []
    monkeypatch.setattr(jobs, "launch_worker", lambda path, job_id, **kw: launched.append(job_id))
    at = make_app(RESULTS)
    assert not at.exception, at.exception
    assert "read from its test set" in texts(at)
    table = [d.value for d in at.dataframe if "confused with" in d.value.columns][0]
    assert set(map(tuple, table[["class", "confused with"]].values)) == {
        ("card_lost_or_stolen", "declined_card_payment"), ("exchange_rate", "refund_not_showing")}
    by_key(at.number_input, "conf_n").set_value(4)
    at.run()
    by_key(at.button, "conf_go").click()
    at.run()
    assert not at.exception, at.exception
    assert launched, [e.value for e in at.error]
    spec = GenerationSpec.from_stored(demo_store.get_job(launched[0]).config)
    assert spec.generation.per_class == 4 and spec.generation.mixup
    assert sorted(map(tuple, spec.generation.pairs)) == sorted([
        ("card_lost_or_stolen", "declined_card_payment"), ("declined_card_payment", "card_lost_or_stolen"),
        ("exchange_rate", "refund_not_showing"), ("refund_not_showing", "exchange_rate")])
    assert f"Started job #{launched[0]}" in texts(at)


def _targeted_round_page(make_app, demo_store, tmp_path, monkeypatch, job_config):
    from promptmix_core import jobs
    from promptmix_core.training.embed_lr import train_embed_lr

    task = demo_store.load_task()
    rows = task.seed_rows()
    res = train_embed_lr(None, [r["text"] for r in rows], [r["label"] for r in rows], label_names=task.class_names,
                         out_dir=tmp_path / "quick")
    run = _test_run(demo_store)
    demo_store.update_run(run, model_dir=res.model_dir)
    demo_store.create_job("generate", job_config, status="failed")
    launched = []
    monkeypatch.setattr(jobs, "launch_worker", lambda path, job_id, **kw: launched.append((job_id, kw)))
    at = make_app(RESULTS)
    assert not at.exception, at.exception
    return at, launched


def test_targeted_round_never_sends_the_operators_key_to_the_last_jobs_own_url(make_app, demo_store, tmp_path,
                                                                                 monkeypatch):
    """Issue 23 item 1 (the Results page): the last job ran against a URL typed on the Generate page; the
    round uses that URL and does not hand it the operator's key."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-operator-0000000000")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    at, launched = _targeted_round_page(make_app, demo_store, tmp_path, monkeypatch,
                                        {"per_class": 3, "llm": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}})
    by_key(at.button, "conf_go").click()
    at.run()
    assert not at.exception, at.exception
    assert launched and launched[0][1].get("api_key") is None
    # a job on the key's own endpoint gets it, bound to that endpoint
    demo_store.update_job(launched[0][0], status="done")
    demo_store.create_job("generate", {"per_class": 3, "llm": {"base_url": "https://api.openai.com/v1"}}, status="done")
    at.run()
    by_key(at.button, "conf_go").click()
    at.run()
    assert launched[-1][1]["api_key"] == "sk-operator-0000000000"
    assert launched[-1][1]["key_endpoint"] == "https://api.openai.com/v1"


@pytest.mark.parametrize("config, says", [
    ({"per_class": 3, "llm": {"base_url": "http://***@127.0.0.1:9/v1", "model": "m"}}, "user and password"),
    ({"per_class": "many", "llm": {"base_url": 5}}, "cannot be read"),
], ids=["scrubbed-url", "unreadable-config"])
def test_targeted_round_refuses_a_scrubbed_url_or_an_unreadable_job(make_app, demo_store, tmp_path, monkeypatch,
                                                                    config, says):
    at, launched = _targeted_round_page(make_app, demo_store, tmp_path, monkeypatch, config)
    assert by_key(at.button, "conf_go").disabled
    assert any(says in w.value for w in at.warning), [w.value for w in at.warning]
    assert not launched


def test_deltas_are_against_each_runs_seeds_only_control(make_app, demo_store):
    run = _add_run(demo_store, "a2 · SetFit student", 0.7, 0.68, flat=True)
    fm = demo_store.get_run(run).final_metrics
    fm["control"] = {"student": "setfit", "test": {"accuracy": 0.75, "macro_f1": 0.7, "n": 40},
                     "delta": {"accuracy": -0.05, "ci95": [-0.12, 0.02], "n": 40, "verdict": "unclear"}}
    demo_store.update_run(run, final_metrics=fm)
    _add_run(demo_store, "a1 baseline", 0.6, 0.55)
    at = make_app(RESULTS)
    assert not at.exception, at.exception
    acc = [m for m in at.metric if m.label == "Accuracy"]
    deltas = [m.proto.delta for m in acc]
    assert "-5.0 pts" in deltas and "+10.0 pts" not in " ".join(deltas)  # never against the other run
    assert any("seeds-only control" in m.proto.help for m in acc if m.proto.delta == "-5.0 pts")
    assert "Seeds-only control 75.0%; 95 % interval of the difference -12.0..+2.0 pts: no clear difference." in texts(at)
    assert "never with another run" in texts(at)
