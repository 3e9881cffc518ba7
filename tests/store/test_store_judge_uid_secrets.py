"""Schema additions (a second judge's suggestion, a stable project id) and ``create_run``'s
scrubbing with every known secret."""

from __future__ import annotations

import sqlite3

import pytest

from promptmix_core import store as store_mod
from promptmix_core.redact import register_secret
from promptmix_core.store import ProjectStore


def _with_examples(path, n=3):
    s = ProjectStore(path)
    job = s.create_job("generate", {}, status="done")
    s.add_examples([{"job_id": job, "slot": f"s{i}", "text": f"text {i}", "norm_text": f"text {i}",
                     "intended_label": "a"} for i in range(n)])
    return s


def test_set_judge_is_stored_read_and_exported(tmp_path):
    s = _with_examples(tmp_path / "p.pmx")
    ids = [e.id for e in s.list_examples()]
    assert s.set_judge({ids[0]: ("b", 0.75), ids[1]: ("a", 1.0)}) == 2
    assert s.set_judge({ids[0]: ("b", 0.75)}) == 0  # unchanged: nothing written
    e = s.get_example(ids[0])
    assert (e.judge_label, e.judge_confidence) == ("b", 0.75)
    assert e.to_record()["judge_label"] == "b"
    assert e.label == "a" and e.review_status == "pending"  # a suggestion never changes a label
    row = s.review_rows([ids[0]])[0]
    assert (row["judge_label"], row["judge_confidence"]) == ("b", 0.75)
    assert s.review_queue(limit=1)[0]["judge_label"] == "b"
    exported = {r["id"]: r for r in s.export_rows()}
    assert (exported[ids[1]]["judge_label"], exported[ids[1]]["judge_confidence"]) == ("a", 1.0)
    assert exported[ids[2]]["judge_label"] is None
    assert s.example_page(columns=("id", "judge_label"))[0]["judge_label"] == "b"
    assert s.set_judge({ids[0]: (None, None)}) == 1
    assert s.get_example(ids[0]).judge_label is None
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        s.set_judge({ids[0]: ("a", 1.5)})


def test_an_old_file_gains_the_judge_columns_and_a_project_id(tmp_path):
    path = tmp_path / "old.pmx"
    con = sqlite3.connect(path)
    con.executescript(store_mod._SCHEMA)
    con.execute(f"PRAGMA application_id = {store_mod.APP_ID}")
    con.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '1')")
    con.execute("INSERT INTO examples(job_id, slot, text, norm_text, label, intended_label, created_at) "
                "VALUES (1, 's', 'old one', 'old one', 'a', 'a', 0)")
    con.commit()
    con.close()
    s = ProjectStore(path, create=False)
    uid = s.project_uid
    assert uid and len(uid) == 32 and int(uid, 16) >= 0
    (e,) = s.list_examples()
    assert e.judge_label is None and s.set_judge({e.id: ("a", 0.5)}) == 1
    s.close()
    store_mod._VERIFIED.clear()
    assert ProjectStore(path, create=False).project_uid == uid  # made once, then kept


def test_a_new_project_has_its_own_stable_id(tmp_path):
    a, b = ProjectStore(tmp_path / "a.pmx"), ProjectStore(tmp_path / "b.pmx")
    assert a.project_uid and b.project_uid and a.project_uid != b.project_uid
    uid = a.project_uid
    a.close()
    assert ProjectStore(tmp_path / "a.pmx", create=False).project_uid == uid


def test_create_run_scrubs_every_known_secret(tmp_path):
    key = "localkey-7f3c9d21e8"  # no sk- prefix: only known by value
    register_secret(key)
    s = ProjectStore(tmp_path / "p.pmx")
    run = s.create_run({"note": f"endpoint answered with {key}", "api_base": "http://h"})
    stored = s.get_run(run).config
    assert key not in str(stored) and stored["note"] == "endpoint answered with ***"
    raw = s._query("SELECT config FROM runs WHERE id = ?", (run,))[0][0]
    assert key not in raw


def test_exports_carry_the_judge_only_once_it_has_spoken(tmp_path):
    from promptmix_core.export import _columns, curated_records

    s = _with_examples(tmp_path / "p.pmx")
    rows = curated_records(None, s.export_rows(), label_source="a1")
    assert "judge_label" not in _columns(rows) and "llm_confidence" in _columns(rows)
    s.set_judge({s.list_examples()[0].id: ("a", 0.9)})
    rows = curated_records(None, s.export_rows(), label_source="a1")
    cols = _columns(rows)
    assert cols.index("judge_label") == cols.index("llm_confidence") + 1
    assert rows[0]["judge_label"] == "a" and rows[0]["judge_confidence"] == 0.9
    # a project's export carries the relabel's confidence and the junk flag too (export_rows lacked them)
    first = s.list_examples()[0]
    s.set_relabel(first.id, llm_label="a", status="agree", confidence=0.6)
    s.set_flags({first.id: "meta-text"})
    row = curated_records(None, s.export_rows(), label_source="a1")[0]
    assert row["llm_confidence"] == 0.6 and row["flag"] == "meta-text"
