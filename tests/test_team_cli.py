"""The team-review commands: `promptmix settings --reviews-per-example`, `promptmix review --reviewer`
(the OS user by default), `promptmix agreement`, `promptmix export --decisions` in every format."""

from __future__ import annotations

import csv
import getpass
import io
import json

import pyarrow.parquet as pq
import pytest

from promptmix_core.cli import main
from promptmix_core.demo import create_demo
from promptmix_core.store import ProjectStore


@pytest.fixture
def project(tmp_path):
    path = tmp_path / "p.pmx"
    create_demo(path).close()
    return path


def _ids(path, n):
    store = ProjectStore(path, create=False)
    try:
        return store.matching_ids(review_status="pending")[:n], store.load_task().class_names
    finally:
        store.close()


def test_settings_and_reviews_per_example(project, capsys):
    assert main(["settings", str(project)]) == 0
    assert "reviews per example: 1" in capsys.readouterr().out
    assert main(["settings", str(project), "--reviews-per-example", "2"]) == 0
    assert "reviews per example: 2" in capsys.readouterr().out
    assert main(["settings", str(project), "--reviews-per-example", "0"]) == 2
    assert "between 1 and" in capsys.readouterr().err


def test_review_records_the_reviewer_and_export_has_every_decision(project, tmp_path, capsys):
    main(["settings", str(project), "--reviews-per-example", "2"])
    ids, classes = _ids(project, 2)
    assert main(["review", str(project), str(ids[0]), "accepted"]) == 0  # the OS user
    assert "the example is now pending" in capsys.readouterr().out
    assert main(["review", str(project), str(ids[0]), "accepted", "--reviewer", "ben"]) == 0
    assert "the example is now accepted" in capsys.readouterr().out
    assert main(["review", str(project), str(ids[1]), "overridden", "--label", classes[-1], "--reviewer", "ben"]) == 0
    assert main(["review", str(project), str(ids[1]), "overridden", "--label", "not-a-class"]) == 2
    capsys.readouterr()

    me = getpass.getuser()
    want = {(ids[0], me, "accepted"), (ids[0], "ben", "accepted"), (ids[1], "ben", "overridden")}
    for fmt in ("csv", "jsonl", "parquet"):
        out = tmp_path / f"decisions.{fmt}"
        assert main(["export", str(project), "--decisions", "--out", str(out)]) == 0
        assert "3 decisions by 2 reviewer(s)" in capsys.readouterr().out
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(out.read_text("utf-8"))))
            for r in rows:
                r["example_id"] = int(r["example_id"])
        elif fmt == "jsonl":
            rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
        else:
            rows = pq.read_table(out).to_pylist()
        assert {(int(r["example_id"]), r["reviewer"], r["decision"]) for r in rows} == want
        assert set(rows[0]) >= {"example_id", "text", "reviewer", "decision", "label", "time"}
        over = next(r for r in rows if r["decision"] == "overridden")
        assert over["label"] == classes[-1] and over["text"]


def test_export_decisions_of_a_project_nobody_reviewed(project, tmp_path):
    out = tmp_path / "none.csv"
    assert main(["export", str(project), "--decisions", "--out", str(out)]) == 0
    assert out.read_text("utf-8").strip() == "example_id,text,reviewer,decision,label,time,adjudication"
    assert main(["export", str(project), "--decisions", "--out", str(tmp_path / "none.parquet")]) == 0
    assert pq.read_table(tmp_path / "none.parquet").num_rows == 0


def test_agreement_command(project, capsys):
    ids, _ = _ids(project, 3)
    for who, acts in (("a", ["accepted", "rejected", "accepted"]), ("b", ["accepted", "accepted", "accepted"])):
        for i, act in zip(ids, acts):
            main(["review", str(project), str(i), act, "--reviewer", who])
    capsys.readouterr()
    assert main(["agreement", str(project), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["alpha_n"] == 3 and data["pairs"][0]["n"] == 3
    assert main(["agreement", str(project)]) == 0
    assert "Cohen's kappa a / b" in capsys.readouterr().out

