"""The outcome-first training path: the default student the measurements pick, the seeds-only control
with its paired bootstrap interval, the default curation of generated examples, the report JSON of
``promptmix train --report`` and the one run lifecycle (a failure marks the run failed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptmix_core.store import ProjectStore
from promptmix_core.task import ClassSpec, Task
from promptmix_core.training.control import (
    compare,
    control_key,
    describe,
    paired_bootstrap,
    run_report,
    seeds_only_control,
)
from promptmix_core.training.curate import CurationConfig, select
from promptmix_core.training.data import build_training_data
from promptmix_core.training.plan import FEW_SHOT_PER_CLASS, choose_student, run_name
from promptmix_core.training.runs import RunLifecycle


# ------------------------------------------------------------------ the default student
def test_default_student_follows_the_measurements():
    few = choose_student("auto", 8 * 12, 8)
    assert few.student == "setfit" and few.auto and "few-shot" in few.reason and "RESULTS.md" in few.reason
    many = choose_student("auto", 8 * (FEW_SHOT_PER_CLASS + 1), 8)
    assert many.student == "finetune" and many.auto
    assert "GPU" in choose_student("auto", 8 * 100, 8, gpu=True).reason
    chosen = choose_student("embed-lr", 10, 2)
    assert chosen.student == "embed-lr" and not chosen.auto
    with pytest.raises(ValueError, match="student must be one of"):
        choose_student("bert", 10, 2)


def test_the_training_spec_defaults_to_auto_with_curation_and_control():
    from promptmix_core.specs import TrainingSpec

    spec = TrainingSpec()
    assert spec.student == "auto" and spec.curation is True and spec.control is True
    assert spec.val_fraction == 0.0  # no generated hold-out by default: it is not a measure
    assert TrainingSpec.from_dict({"student": "setfit"}).student == "setfit"


def test_a_seeds_only_run_is_named_for_what_it_is():
    assert run_name("a2", "embed-lr", 0) == "seeds only · quick student"
    assert run_name("reviewed", "setfit", 12) == "reviewed · SetFit student"


# ------------------------------------------------------------------ the bootstrap and the comparison
def test_paired_bootstrap_interval_brackets_the_difference():
    a = [True] * 70 + [False] * 30
    b = [True] * 50 + [False] * 50
    delta, lo, hi = paired_bootstrap(a, b, samples=1000, seed=1)
    assert delta == pytest.approx(0.20)
    assert 0.0 < lo < delta < hi < 0.40
    same, lo2, hi2 = paired_bootstrap(a, a, samples=200)
    assert same == 0.0 and lo2 == 0.0 and hi2 == 0.0  # paired: identical answers, no spread
    with pytest.raises(ValueError):
        paired_bootstrap([True], [True, False])


def test_compare_says_plainly_when_generated_data_made_it_worse():
    gold = ["x"] * 60 + ["y"] * 60
    control = list(gold)  # the seeds-only model is right everywhere
    run = ["y"] * 60 + ["y"] * 60  # the run gets every x wrong
    c = compare(run, control, gold)
    assert c.verdict == "worse" and c.high < 0
    assert c.headline().startswith("generated data: -50.0 points (95 % bootstrap interval")
    assert "worse" in c.advice() and "seeds-only model" in c.advice()
    fm = {"test_accuracy": c.accuracy, "control": {"test": {"accuracy": 1.0}, "delta": c.to_dict(), "model_dir": "/m"}}
    d = describe(fm)
    assert d["state"] == "compared" and d["verdict"] == "worse" and d["model_dir"] == "/m"
    assert describe({"control": {"skipped": "needs a test set"}})["state"] == "no_test_set"
    assert describe({"control": {"seeds_only_run": True}})["state"] == "is_control"


def test_control_key_depends_on_seeds_student_and_settings_not_order():
    seeds = [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]
    k = control_key(seeds, "embed-lr", {"C": 10}, ["x", "y"])
    assert k == control_key(list(reversed(seeds)), "embed-lr", {"C": 10}, ["x", "y"])
    assert k != control_key(seeds, "setfit", {"C": 10}, ["x", "y"])
    assert k != control_key(seeds, "embed-lr", {"C": 1}, ["x", "y"])
    assert k != control_key(seeds + [{"text": "c", "label": "x"}], "embed-lr", {"C": 10}, ["x", "y"])


def test_the_control_is_trained_once_and_cached(tmp_path, row_maker):
    from promptmix_core.training.students import fit

    seeds = row_maker(3, seed=5)
    test = row_maker(6, seed=6)
    calls = []

    def fit_control(texts, labels, out_dir):
        calls.append(out_dir)
        return fit("embed-lr", {}, texts, labels, label_names=["sport", "food"], out_dir=out_dir,
                   test_texts=[r["text"] for r in test], test_labels=[r["label"] for r in test])

    first = seeds_only_control(tmp_path, seeds, ["sport", "food"], "embed-lr", {}, test, fit_control)
    again = seeds_only_control(tmp_path, seeds, ["sport", "food"], "embed-lr", {}, test, fit_control)
    assert len(calls) == 1 and not first["cached"] and again["cached"]
    assert again["test"] == first["test"] and len(again["predicted"]) == len(test)
    assert (tmp_path / f"control-{first['key']}" / "label_map.json").exists()  # the model can be exported
    other_test = test[:5]  # another test set: scored again with the cached model, not trained again
    third = seeds_only_control(tmp_path, seeds, ["sport", "food"], "embed-lr", {}, other_test, fit_control)
    assert len(calls) == 1 and third["test"]["n"] == 5


# ------------------------------------------------------------------ curation
def _ex(text, intended, llm=None, *, flag=None, review="pending", judge=None, conf=None):
    return {"text": text, "intended_label": intended, "llm_label": llm, "relabel_status": "agree" if llm == intended
            else ("changed" if llm else None), "flag": flag, "review_status": review, "judge_label": judge,
            "llm_confidence": conf, "label": llm or intended}


def test_curation_keeps_what_every_judge_agrees_on_and_reviews_override():
    exs = [
        _ex("good one", "x", "x", judge="x"),
        _ex("junk 123", "x", "x", flag="numbers and symbols", judge="x"),
        _ex("judge says y", "x", "x", judge="y"),
        _ex("relabel says y", "x", "y", judge="y"),  # a2 label y, written for x: disagree
        _ex("accepted though flagged", "x", "x", flag="meta-text", review="accepted"),
        _ex("rejected", "x", "x", judge="x", review="rejected"),
        _ex("unsure relabel", "y", "y", judge="y", conf=0.2),
    ]
    labels = [e["llm_label"] for e in exs]
    sel = select(exs, labels, CurationConfig(min_llm_confidence=0.5))
    assert sel.keep == [True, False, False, False, True, False, False]
    assert sel.reasons[1] == "curated_flagged" and sel.reasons[2] == "curated_disagree"
    assert sel.reasons[3] == "curated_disagree" and sel.reasons[5] == "rejected"
    assert sel.reasons[6] == "curated_low_confidence"
    off = select(exs, labels, CurationConfig(enabled=False))
    assert off.keep == [True] * 7


def test_curation_leaves_out_unreviewed_examples_the_embedding_judge_labelled():
    exs = [
        _ex("judge labelled, all agree", "x", "x", judge="x"),
        _ex("accepted", "x", "x", judge="x", review="accepted"),
        {**_ex("this row says the llm labelled it", "x", "x", judge="x"), "label_source": "llm"},
        _ex("judges disagree", "x", "x", judge="y"),
    ]
    labels = [e["llm_label"] for e in exs]
    sel = select(exs, labels, CurationConfig(), label_source="judge")
    assert sel.keep == [False, True, True, False]
    assert sel.reasons[0] == "curated_judge_labelled" and sel.reasons[3] == "curated_disagree"
    assert sel.counts["curated_judge_labelled"] == 1
    # the LLM labelled (a capable endpoint), not known, or the rule turned off: kept as before
    assert select(exs, labels, CurationConfig(), label_source="llm").keep == [True, True, True, False]
    assert select(exs, labels, CurationConfig()).keep == [True, True, True, False]
    assert select(exs, labels, CurationConfig(judge_labelled=True), label_source="judge").keep == [True, True, True, False]
    with pytest.raises(ValueError, match="judge_labelled must be true or false"):
        CurationConfig(judge_labelled="yes")


def test_a_project_whose_labels_came_from_the_judge_trains_on_seeds_and_reviewed_examples(tmp_path, row_maker):
    from promptmix_core.judge import LABEL_SOURCE_META
    from promptmix_core.specs import TrainingSpec
    from promptmix_core.training.jobs import chosen_label_source, prepare_job_data

    store, _ = _project_with_agreed_examples(tmp_path / "proj.pmx", row_maker, generated=3, test=4)
    store.set_judge({e.id: (e.intended_label, 0.9) for e in store.list_examples()})  # the judge agrees
    assert chosen_label_source(store) is None
    before = prepare_job_data(store, TrainingSpec(), embed_judge=False)["summary"]
    store.set_meta(LABEL_SOURCE_META, json.dumps({"source": "judge", "reason": "the bundled model"}))
    assert chosen_label_source(store) == "judge"
    first = store.list_examples()[0]
    store.review(first.id, "accepted", reviewer="ann")
    after = prepare_job_data(store, TrainingSpec(), embed_judge=False)["summary"]
    assert after["generated"] == 1  # only the reviewed one
    assert after["dropped"]["curated_judge_labelled"] == before["generated"] - 1
    store.set_meta(LABEL_SOURCE_META, "not json")
    assert chosen_label_source(store) is None


def test_curation_judges_examples_without_a_judge_label(row_maker):
    task = Task("t", [ClassSpec("sport", "", ["the football match and the goal", "the tennis player and the coach"]),
                      ClassSpec("food", "", ["the pizza with cheese", "a soup recipe for dinner"])])
    gen = [{"text": r["text"], "intended_label": r["label"]} for r in row_maker(4, seed=9)]
    gen.append({"text": "a cheese pizza recipe and a bread soup for dinner tonight", "intended_label": "sport"})  # written for the wrong class
    ts = build_training_data(task, gen, label_source="a1", curation=CurationConfig())
    assert ts.dropped.get("curated_disagree", 0) >= 1
    kept = {r["text"] for r in ts.rows}
    assert "a cheese pizza recipe and a bread soup for dinner tonight" not in kept
    assert ts.summary()["seeds"] == 4
    plain = build_training_data(task, gen, label_source="a1")
    assert len(plain.rows) == 4 + len(gen)


# ------------------------------------------------------------------ one run lifecycle
def test_run_lifecycle_marks_a_failure_failed_and_a_stop_cancelled(tmp_path):
    from promptmix_core.errors import Cancelled

    store = ProjectStore(tmp_path / "p.pmx")
    life = RunLifecycle.create(store, {"student": "setfit"}, name="r", method="a2")
    assert store.get_run(life.run_id).status == "queued"
    with pytest.raises(RuntimeError):
        with life.guard():
            life.start()
            raise RuntimeError("disk full")
    run = store.get_run(life.run_id)
    assert run.status == "failed" and "disk full" in run.error and run.finished_at
    other = RunLifecycle.create(store, {}, name="s")
    with pytest.raises(Cancelled):
        with other.guard():
            raise Cancelled("stopped by the user")
    assert store.get_run(other.run_id).status == "cancelled"


def test_a_run_whose_rows_cannot_be_recorded_is_failed_not_queued(tmp_path, row_maker, monkeypatch):
    from promptmix_core.training.jobs import train_job

    store = ProjectStore(tmp_path / "p.pmx")
    seeds = row_maker(2, seed=5)
    store.save_task(Task("tiny", [ClassSpec(lab, "", [r["text"] for r in seeds if r["label"] == lab])
                                  for lab in ("sport", "food")]))

    def full_disk(*a, **k):
        raise OSError("No space left on device")

    monkeypatch.setattr(store, "record_run_examples", full_disk)
    job = store.create_job("train", {"student": "embed-lr"})
    with pytest.raises(OSError):
        train_job(store, store.get_job(job))
    run = store.list_runs()[0]
    assert run.status == "failed" and "No space left" in run.error


@pytest.mark.parametrize("student", ["embed-lr", "finetune"])
def test_a_failing_student_marks_the_run_failed(tmp_path, row_maker, monkeypatch, student):
    """Every student shares the lifecycle: an error inside training fails the run (never "running")."""
    from promptmix_core.training import embed_lr, model_io
    from promptmix_core.training.jobs import train_job

    store = ProjectStore(tmp_path / "p.pmx")
    seeds = row_maker(2, seed=5)
    store.save_task(Task("tiny", [ClassSpec(lab, "", [r["text"] for r in seeds if r["label"] == lab])
                                  for lab in ("sport", "food")]))

    def boom(*a, **k):
        raise RuntimeError("the model would not load")

    monkeypatch.setattr(embed_lr, "_embed", boom)
    monkeypatch.setattr(model_io, "load_base_model", boom)
    job = store.create_job("train", {"student": student})
    with pytest.raises(RuntimeError):
        train_job(store, store.get_job(job))
    run = store.list_runs()[0]
    assert run.status == "failed" and "would not load" in run.error


# ------------------------------------------------------------------ the job, the control and the report
def _project_with_agreed_examples(path, row_maker, *, generated: int, test: int):
    """A two-class project (2 seeds per class), ``generated`` examples per class whose relabel agrees,
    and ``test`` real rows per class as its test set."""
    store = ProjectStore(path)
    seeds = row_maker(2, seed=5)
    task = Task("tiny", [ClassSpec(lab, f"about {lab}", [r["text"] for r in seeds if r["label"] == lab])
                         for lab in ("sport", "food")])
    store.save_task(task)
    gen_job = store.create_job("generate", {})
    store.add_examples([{"job_id": gen_job, "slot": f"s{i}", "text": r["text"], "norm_text": r["text"],
                         "intended_label": r["label"]} for i, r in enumerate(row_maker(generated, seed=6))])
    for e in store.list_examples():
        store.set_relabel(e.id, llm_label=e.intended_label, status="agree")
    store.set_test_set(row_maker(test, seed=7), name="real")
    return store, task


def test_training_job_runs_the_control_and_the_cli_writes_the_report(tmp_path, row_maker, capsys):
    from promptmix_core.cli import main

    store, _ = _project_with_agreed_examples(tmp_path / "proj.pmx", row_maker, generated=6, test=8)
    report = tmp_path / "out" / "report.json"
    store.close() if hasattr(store, "close") else None
    rc = main(["train", "--project", str(tmp_path / "proj.pmx"), "--student", "embed-lr", "--report", str(report)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "seeds-only control: accuracy" in out and "generated data:" in out and "bootstrap interval" in out
    rep = json.loads(report.read_text())
    assert rep["student"] == "embed-lr"
    assert 0 <= rep["test"]["accuracy"] <= 1 and 0 <= rep["test"]["macro_f1"] <= 1
    assert 0 <= rep["control"]["test"]["accuracy"] <= 1
    lo, hi = rep["delta"]["ci95"]
    assert lo <= rep["delta"]["accuracy"] <= hi
    assert rep["delta"]["accuracy"] == pytest.approx(rep["test"]["accuracy"] - rep["control"]["test"]["accuracy"])
    assert rep["examples"]["seeds"] == 4 and rep["examples"]["generated"]["a2"] >= 1
    run = ProjectStore(tmp_path / "proj.pmx").list_runs()[0]
    assert run.status == "done" and run.final_metrics["control"]["delta"]["n"] == 16
    # a second run with the same seeds and settings reuses the control
    rc = main(["train", "--project", str(tmp_path / "proj.pmx"), "--student", "embed-lr", "--report", str(report)])
    assert rc == 0 and json.loads(report.read_text())["control"]["cached"] is True


def test_a_setfit_run_and_its_control_share_the_body_of_the_seeds_and_reviewed_examples(tmp_path, row_maker):
    from promptmix_core.cli import main
    from promptmix_core.training.data import build_training_data

    store, task = _project_with_agreed_examples(tmp_path / "proj.pmx", row_maker, generated=3, test=4)
    # a reviewed example's label is a person's: it is "trusted"; the others are machine labels
    first = store.list_examples()[0]
    store.review(first.id, "accepted", reviewer="ann")
    ts = build_training_data(task, store.list_examples(), label_source="a2")
    assert [r.get("reviewed", False) for r in ts.rows if r["source"] == "generated"] == [True] + [False] * 5
    rc = main(["train", "--project", str(tmp_path / "proj.pmx"), "--student", "setfit", "--no-curation",
               "--report", str(tmp_path / "r.json")])
    assert rc == 0
    run = ProjectStore(tmp_path / "proj.pmx").list_runs()[0]
    meta = json.loads((Path(run.model_dir) / "label_map.json").read_text())
    assert meta["setfit"]["body_rows"] == "trusted" and meta["setfit_body"]["rows"] == 5  # 4 seeds + 1 reviewed
    ctl = json.loads((Path(run.final_metrics["control"]["model_dir"]) / "label_map.json").read_text())
    assert ctl["setfit_body"] == {"rule": "trusted", "rows": 4, "cached": False}  # the seeds alone: another body
    store = ProjectStore(tmp_path / "proj.pmx")
    store.review(first.id, "pending", reviewer="ann")  # no reviews: the run's body is the control's
    rc = main(["train", "--project", str(tmp_path / "proj.pmx"), "--student", "setfit", "--no-curation"])
    assert rc == 0
    second = ProjectStore(tmp_path / "proj.pmx").list_runs()[0]
    assert json.loads((Path(second.model_dir) / "label_map.json").read_text())["setfit_body"]["cached"] is True
    from promptmix_core.errors import SpecError
    from promptmix_core.specs import TrainingSpec

    from promptmix_core.training.students import is_trusted

    assert is_trusted({"source": "seed"}) and is_trusted({"source": "labelled"})
    assert is_trusted({"source": "generated", "reviewed": True}) and not is_trusted({"source": "generated"})
    assert TrainingSpec.from_dict({}).setfit_body == "trusted"
    with pytest.raises(SpecError, match="setfit_body must be one of"):
        TrainingSpec.from_dict({"setfit_body": "half"})


def test_without_a_test_set_the_report_says_the_comparison_needs_one(tmp_path, row_maker, capsys):
    from promptmix_core.cli import main

    data = tmp_path / "gen.jsonl"
    data.write_text("".join(json.dumps({"text": r["text"], "label": r["label"], "intended_label": r["label"], "llm_label": r["label"],
                                        "relabel_status": "agree"}) + "\n" for r in row_maker(5, seed=3)))
    report = tmp_path / "r.json"
    rc = main(["train", "--data", str(data), "--student", "embed-lr", "--report", str(report)])
    assert rc == 0
    rep = json.loads(report.read_text())
    assert rep["test"] is None and rep["delta"] is None and rep["control"]["test"] is None
    assert "needs a test set" in rep["control"]["skipped"] and "--test FILE" in rep["control"]["skipped"]
    assert "needs a test set" in capsys.readouterr().out
    assert rep["student"] == "embed-lr" and rep["examples"]["generated"] == {"a2": rep["examples"]["train"]}


def test_run_report_from_final_metrics():
    fm = {"student": "setfit", "student_reason": "few-shot", "test_accuracy": 0.8, "test_macro_f1": 0.75, "test_n": 50,
          "data": {"seeds": 16, "generated": 20, "label_source": "reviewed", "train": 36, "dropped": {"curated_flagged": 3,
                   "duplicate": 0}, "curation": True},
          "control": {"test": {"accuracy": 0.7, "macro_f1": 0.6, "n": 50}, "delta": {"accuracy": 0.1, "ci95": [0.02, 0.18]}}}
    rep = run_report(fm, run_id=3, model_dir="/m")
    assert rep["test"] == {"accuracy": 0.8, "macro_f1": 0.75, "n": 50}
    assert rep["control"]["test"]["accuracy"] == 0.7 and rep["delta"]["ci95"] == [0.02, 0.18]
    assert rep["examples"]["generated"] == {"reviewed": 20} and rep["examples"]["left_out"] == {"curated_flagged": 3}
