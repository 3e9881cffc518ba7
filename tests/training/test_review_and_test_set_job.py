"""The training job trains on what the reviewer decided, records exactly which rows it used, and is
scored on the project's test set (or ``--test FILE``), never training on a test row."""

from __future__ import annotations

import pytest

from promptmix_core.cli import main
from promptmix_core.specs import TrainingSpec
from promptmix_core.store import ProjectStore
from promptmix_core.task import ClassSpec, Task
from promptmix_core.training.jobs import prepare_job_data, train_job

TEST_ROWS = [("the tennis coach and the league", "sport"), ("a football player scores a goal", "sport"),
             ("cheese and bread for dinner", "food"), ("a soup recipe in the kitchen", "food"),
             ("the band plays a song", "music"), ("a piano concert tonight", "music")]


def _project(tmp_path, row_maker):
    store = ProjectStore(tmp_path / "p.pmx")
    seeds = row_maker(2, seed=5, classes=("sport", "food", "music"))
    store.save_task(Task("tiny", [ClassSpec(lab, f"about {lab}", [r["text"] for r in seeds if r["label"] == lab])
                                  for lab in ("sport", "food", "music")]))
    gen_job = store.create_job("generate", {}, status="done")
    gen = row_maker(4, seed=6, classes=("sport", "food", "music"))
    gen.append({"text": TEST_ROWS[0][0], "label": "sport"})  # a generated example that repeats a test row
    store.add_examples([{"job_id": gen_job, "slot": f"s{i}", "text": r["text"], "norm_text": r["text"],
                         "intended_label": r["label"]} for i, r in enumerate(gen)])
    for e in store.list_examples():
        store.set_relabel(e.id, llm_label=e.intended_label, status="agree")
    return store


def test_reviewed_labels_reach_the_run_exactly(tmp_path, row_maker):
    store = _project(tmp_path, row_maker)
    ex = store.list_examples()
    accepted, overridden, rejected = ex[0], ex[1], ex[2]
    store.set_relabel(accepted.id, llm_label="music", status="changed")  # the card shows the relabel
    store.review(accepted.id, "accepted")
    store.review(overridden.id, "overridden", label="music")
    store.review(rejected.id, "rejected")
    pending_ids = {e.id for e in ex[3:]}

    data = prepare_job_data(store, TrainingSpec(label_source="reviewed", pending="drop", val_fraction=0.0,
                                                use_test_set=False))
    gen = {r["example_id"]: r["label"] for r in data["train_rows"] if r["source"] == "generated"}
    assert gen == {accepted.id: "music", overridden.id: "music"}  # rejected and pending left out
    assert rejected.id not in gen and not (pending_ids & set(gen))
    assert overridden.intended_label != "music"  # the reviewer's class won over the generator's
    # pending examples follow the visible choice
    data_a1 = prepare_job_data(store, TrainingSpec(label_source="reviewed", pending="a1", val_fraction=0.0,
                                                   use_test_set=False))
    gen_a1 = {r["example_id"]: r["label"] for r in data_a1["train_rows"] if r["source"] == "generated"}
    assert rejected.id not in gen_a1 and pending_ids <= set(gen_a1)
    assert gen_a1[overridden.id] == "music"

    # the run records exactly these rows and labels
    job = store.create_job("train", {"label_source": "reviewed", "pending": "drop", "val_fraction": 0.0,
                                     "student": "embed-lr", "use_test_set": False}, status="running")
    out = train_job(store, store.get_job(job))
    assert out["status"] == "done"
    used = store.get_run_examples(out["run_id"], "train")
    assert {r["example_id"]: r["label"] for r in used if r["source"] == "generated"} == gen
    assert sum(r["source"] == "seed" for r in used) == 6
    assert all(r["example_id"] != rejected.id for r in used)


def test_runs_are_scored_on_the_test_set_and_never_train_on_it(tmp_path, row_maker):
    store = _project(tmp_path, row_maker)
    store.set_test_set([{"text": t, "label": lab} for t, lab in TEST_ROWS], name="real.csv")
    job = store.create_job("train", {"label_source": "a2", "val_fraction": 0.25, "student": "embed-lr",
                                     "curation": False},
                           status="running")
    out = train_job(store, store.get_job(job))
    run = store.get_run(out["run_id"])
    fm = run.final_metrics
    assert run.status == "done" and fm["student"] == "embed-lr"
    assert fm["test_n"] == 6 and fm["test_set"]["name"] == "real.csv" and fm["test_set"]["kind"] == "project"
    assert fm["test_confusion"]["labels"] == ["sport", "food", "music"]
    assert sum(map(sum, fm["test_confusion"]["matrix"])) == 6
    assert fm["test_accuracy"] >= 0.5  # frozen MiniLM embeddings separate these three topics
    assert fm["data"]["dropped"]["in_test_set"] == 1
    trained = {r["text"] for r in store.get_run_examples(run.id, "train") + store.get_run_examples(run.id, "val")}
    assert not trained & {t for t, _ in TEST_ROWS}
    assert [r["text"] for r in store.get_run_examples(run.id, "test")] == [t for t, _ in TEST_ROWS]
    assert store.get_run_examples(run.id, "val")  # validation rows are recorded too
    # opting out of the test set: scored on held-out generated examples only
    job2 = store.create_job("train", {"student": "embed-lr", "use_test_set": False, "val_fraction": 0.25},
                            status="running")
    fm2 = store.get_run(train_job(store, store.get_job(job2))["run_id"]).final_metrics
    assert "test_accuracy" not in fm2 and "val_accuracy" in fm2


def test_spec_rejects_unknown_students():
    with pytest.raises(ValueError, match="student must be one of"):
        TrainingSpec.from_dict({"student": "svm"})
    with pytest.raises(ValueError, match="C must be"):
        TrainingSpec.from_dict({"embed_lr": {"C": -1}})


def test_cli_train_with_a_test_file_records_the_scores(tmp_path, row_maker, capsys):
    store = _project(tmp_path, row_maker)
    test = tmp_path / "test.csv"
    test.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in TEST_ROWS) + "something,nope\n")
    rc = main(["train", "--project", str(store.path), "--student", "embed-lr", "--test", str(test)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "test (test.csv) (n=6): accuracy" in out and "| gold \\ predicted | sport | food | music |" in out
    run = store.list_runs()[0]
    assert run.final_metrics["test_set"]["kind"] == "file" and run.final_metrics["test_set"]["refused"] == 1
    assert run.final_metrics["test_n"] == 6
    # --data mode: the same scoring, nothing recorded
    data = tmp_path / "train.csv"
    data.write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n"
                                             for r in row_maker(4, seed=8, classes=("sport", "food", "music"))))
    rc = main(["train", "--data", str(data), "--student", "embed-lr", "--test", str(test),
               "--out", str(tmp_path / "m")])
    out = capsys.readouterr().out
    assert rc == 0 and "test (n=6): accuracy" in out and "music: precision" in out
