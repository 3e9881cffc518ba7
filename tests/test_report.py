"""The project report: one self-contained HTML page, every number from the store, gaps said plainly,
no secret in it, every user text escaped."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
from report_project import DECISIONS, TEST_SET, build_report_project

from promptmix_core.cli import main
from promptmix_core.demo import create_demo
from promptmix_core.report import build_report
from promptmix_core.scores import run_scores
from promptmix_core.store import ProjectStore
from promptmix_core.task import ClassSpec, Task

PLANTED_KEY = "sk-planted0123456789abcdefXYZ"
PLANTED_URL = "http://reportuser:hunter2pass@llm.internal.example:8000/v1"


def _body(page: str) -> str:
    """The report without the inlined plotly.js (the part this project writes)."""
    head, _, rest = page.partition("<script>")
    _plotly, _, tail = rest.partition("</script>")
    return head + tail


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The realistic project: demo task, two reviewers, a 25-text test set, two quick runs."""
    path = tmp_path_factory.mktemp("report") / "banking.pmx"
    store = build_report_project(path)
    yield store
    store.close()


def test_the_report_tells_the_whole_story_from_the_store(trained):
    page = build_report(trained)
    body = _body(page)
    task = trained.load_task()
    # one file: plotly's JavaScript inlined once, nothing fetched
    assert page.count("<script>") == 2 and "Plotly.newPlot" in body
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)
    assert "cdn.plot.ly" not in body and "https://" not in body
    # the sections, in order
    heads = re.findall(r"<h2>([^<]+)</h2>", body)
    assert heads == ["At a glance", "1. The task", "2. What was generated", "3. What people decided",
                     "4. The models", "5. Examples", "6. What to do next"]
    assert "Banking support" in body
    for c in task.classes:
        assert c.name in body and c.description.replace("'", "&#x27;") in body
    # decisions, counted from the store
    counts = trained.count_examples()
    assert (counts["reviewed"], counts["accepted"], counts["overridden"], counts["rejected"]) == (12, 7, 3, 2)
    assert (f"People reviewed <b>12</b> of 20 generated examples: <b>7</b> accepted as labelled, <b>3</b> moved "
            "to another class, <b>2</b> rejected") in body
    assert "alice@example.com (6), bob@example.com (6)" in body
    # the LLM relabel's agreement with people: computed here from the same rows
    kept = [e for e in trained.list_examples() if e.review_status in ("accepted", "overridden")]
    agree = sum(e.llm_label == e.final_label for e in kept)
    assert f"{agree} of {len(kept)}" in body and len(kept) == sum(d[1] != "rejected" for d in DECISIONS)
    # every run with its test scores and the missing control said plainly
    for run in trained.list_runs():
        s = run_scores(run.final_metrics)
        assert s["eval"] == "test set" and s["n"] == len(TEST_SET)
        assert f"<b>{s['accuracy']:.1%}</b><br><span class=\"small\">on {len(TEST_SET)} test texts" in body
    assert body.count("no control recorded") == 2
    assert "No seeds-only control was recorded for any run" in body
    # the best run's confusion matrix as numbers, row by row
    best = max(trained.list_runs(), key=lambda r: (r.final_metrics["test_accuracy"], r.final_metrics["test_macro_f1"], r.id))
    assert f"The best run: #{best.id}" in body
    conf = best.final_metrics["test_confusion"]
    for label, row in zip(conf["labels"], conf["matrix"]):
        assert "<tr><td>" + label + "</td>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>" in body
    # date and version
    assert re.search(r"written \d{4}-\d\d-\d\d \d\d:\d\d UTC", body)
    assert re.search(r"Project version <code>[0-9a-f]{12}</code>", body)
    # what to do next: the targeted round's command for the best run
    assert f"--pairs-from {best.id}" in body or "confuses no pair" in body


def test_the_version_changes_with_the_data(tmp_path):
    store = create_demo(tmp_path / "v.pmx")
    v1 = re.search(r"Project version <code>(\w+)</code>", build_report(store)).group(1)
    assert v1 == re.search(r"Project version <code>(\w+)</code>", build_report(store)).group(1)
    store.review(store.list_examples()[0].id, "rejected")
    v2 = re.search(r"Project version <code>(\w+)</code>", build_report(store)).group(1)
    assert v1 != v2


def test_gaps_are_said_not_left_blank(tmp_path):
    store = create_demo(tmp_path / "bare.pmx")
    body = _body(build_report(store))
    assert "No test set: the project holds no real labelled texts" in body
    assert "No model has been trained yet." in body
    assert "No example has been reviewed yet" in body
    assert "Not in this project: no test set, no training run, no review." in body
    assert "none: pre-written demo examples" in body  # the demo job called no LLM
    # one run, scored on generated examples only
    run = store.create_run({"label_source": "a2", "student": "embed-lr"}, name="only run")
    store.update_run(run, status="done", final_metrics={"val_accuracy": 0.5, "val_macro_f1": 0.4, "val_n": 4,
                                                        "student": "embed-lr"})
    body = _body(build_report(store))
    assert "Only one run: nothing to compare it with." in body
    assert "not on real labelled texts" in body
    assert "This run recorded no confusion matrix." in body


def test_a_seeds_only_control_is_shown_with_its_interval(tmp_path):
    store = build_report_project(tmp_path / "c.pmx", train=False)
    run = store.create_run({"label_source": "reviewed", "student": "embed-lr"}, name="with control")
    fm = {"test_accuracy": 0.84, "test_macro_f1": 0.82, "test_n": 25, "student": "embed-lr",
          "control": {"test_accuracy": 0.72, "test_macro_f1": 0.70, "student": "embed-lr"},
          "delta": {"test_accuracy": 0.12, "ci95": [0.02, 0.22]}}
    store.update_run(run, status="done", final_metrics=fm)
    body = _body(build_report(store))
    assert "<b>72.0%</b> · F1 70.0%<br>run − control: <b>+12.0 pts</b>" in body
    assert "95% interval +2.0 pts to +22.0 pts" in body
    assert "the seeds-only control scored 72.0% (+12.0 pts, 95% interval +2.0 pts to +22.0 pts)" in body
    assert "no control recorded" not in body
    # another shape: the difference only, computed from the control's accuracy
    fm2 = {**fm, "control": {"accuracy": 0.80}}
    fm2.pop("delta")
    store.update_run(run, final_metrics=fm2)
    assert "run − control: <b>+4.0 pts</b>" in _body(build_report(store))


def test_the_student_judge_agreement_with_people(tmp_path):
    store = build_report_project(tmp_path / "j.pmx", train=False)
    examples = store.list_examples()
    # the judge suggests the written-for class, except on one kept example where it picks another class
    wrong = next(e for e in examples if e.review_status == "accepted")
    other = next(c for c in store.load_task().class_names if c != wrong.final_label)
    store.set_judge({e.id: ((other if e.id == wrong.id else e.intended_label), 0.9) for e in examples})
    body = _body(build_report(store))
    kept = [e for e in store.list_examples() if e.review_status in ("accepted", "overridden")]
    agree = sum(e.judge_label == e.final_label for e in kept)
    assert agree == sum(e.intended_label == e.final_label for e in kept) - 1
    assert f"<tr><td>the student judge</td><td>{agree} of {len(kept)}</td>" in body
    assert "No student-judge labels" not in body


def test_no_secret_reaches_the_report(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED_KEY)
    store = create_demo(tmp_path / "s.pmx")
    store.close()
    # an older or hand-edited file: the job config holds a key and a URL with a password, unscrubbed
    cfg = {"per_class": 4, "api_key": PLANTED_KEY, "llm": {"base_url": PLANTED_URL, "model": "gpt-x",
                                                           "api_key": PLANTED_KEY}}
    with sqlite3.connect(tmp_path / "s.pmx") as con:
        con.execute("INSERT INTO jobs(kind, status, config, progress, message, created_at) VALUES "
                    "('generate', 'failed', ?, ?, ?, 0)",
                    (json.dumps(cfg), json.dumps({"calls": 3, "cost": 0.5}),
                     f"error at {PLANTED_URL} with key {PLANTED_KEY}"))
        con.execute("INSERT INTO runs(name, method, status, config, final_metrics, error, created_at) VALUES "
                    "(?, 'a2', 'failed', ?, '{}', ?, 0)",
                    (f"run {PLANTED_KEY}", json.dumps(cfg), f"could not reach {PLANTED_URL}"))
    store = ProjectStore(tmp_path / "s.pmx", create=False)
    page = build_report(store)
    for secret in (PLANTED_KEY, "hunter2pass", "reportuser", "sk-planted"):
        assert secret not in page
    assert "llm.internal.example" in page  # the endpoint's host is still named
    assert "gpt-x" in page


def test_every_user_text_is_escaped(tmp_path):
    evil = '<script>alert("x")</script>'
    store = ProjectStore(tmp_path / "e.pmx")
    store.save_task(Task(f"Evil {evil}", [
        ClassSpec("a<b>", f"desc {evil}", [f"seed {evil}", "<img src=x onerror=alert(1)>"]),
        ClassSpec("c&d</script>", "plain", ["hello there", "general kenobi"]),
    ]))
    job = store.create_job("generate", {"per_class": 1}, status="done")
    store.add_examples([{"job_id": job, "slot": "s0", "text": f"gen {evil}", "norm_text": "gen",
                         "intended_label": "a<b>", "mixed_with": "c&d</script>", "alpha": 0.7}])
    run = store.create_run({"label_source": "a2"}, name=f"run {evil}")
    labels = ["a<b>", "c&d</script>"]
    store.update_run(run, status="done", final_metrics={
        "test_accuracy": 0.5, "test_macro_f1": 0.5, "test_n": 2,
        "test_per_class": {lab: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 1} for lab in labels},
        "test_confusion": {"labels": labels, "matrix": [[1, 0], [1, 0]]}})
    page = build_report(store)
    body = _body(page)
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>" + "</script>" not in body
    assert page.count("</script>") == 2  # plotly.js and the charts; none from user text
    assert "a&lt;b&gt;" in body and "c&amp;d&lt;/script&gt;" in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body


def test_cli_writes_the_report(trained, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(trained.path), "--out", str(out)]) == 0
    assert "self-contained" in capsys.readouterr().out
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "Banking support" in text
    assert main(["report", str(tmp_path / "missing.pmx"), "--out", str(out)]) == 2
    assert "no project file" in capsys.readouterr().err
