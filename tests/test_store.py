import json
import sqlite3
import subprocess
import sys

import pytest

from promptmix_core.store import ConflictError, ProjectStore, StoreError, open_project, scrub_secrets


def _ex(job, i, label="a"):
    return {"job_id": job, "slot": f"{label}|{i}|0", "text": f"text {i}", "norm_text": f"text {i}",
            "intended_label": label, "mixed_with": "b", "alpha": 0.8}


def test_wal_mode_and_schema(tmp_path, small_task):
    s = ProjectStore(tmp_path / "p.pmx")
    assert s._query("PRAGMA journal_mode")[0][0] == "wal"
    s.save_task(small_task)
    assert ProjectStore(tmp_path / "p.pmx").load_task().to_dict() == small_task.to_dict()
    assert s.integrity_ok()


def test_examples_dedup_by_slot_and_text(tmp_path):
    s = ProjectStore(tmp_path / "p.pmx")
    j = s.create_job("generate", {})
    assert s.add_examples([_ex(j, 1), _ex(j, 2)]) == 2
    assert s.add_examples([_ex(j, 1), _ex(j, 2)]) == 0
    assert s.count_examples(j)["total"] == 2


def test_review_versions_detect_conflicts(tmp_path):
    s = ProjectStore(tmp_path / "p.pmx")
    j = s.create_job("generate", {})
    s.add_examples([_ex(j, 1)])
    ex = s.list_examples()[0]
    other = ProjectStore(tmp_path / "p.pmx")
    v = other.review(ex.id, "overridden", label="b", expected_version=ex.version)
    with pytest.raises(ConflictError):
        s.review(ex.id, "accepted", expected_version=ex.version)
    got = s.get_example(ex.id)
    assert got.review_status == "overridden" and got.review_label == "b" and got.version == v
    assert got.final_label == "b"


def test_bulk_review_and_filters(tmp_path):
    s = ProjectStore(tmp_path / "p.pmx")
    j = s.create_job("generate", {})
    s.add_examples([_ex(j, i) for i in range(5)])
    ids = [e.id for e in s.list_examples()]
    s.set_relabel(ids[0], llm_label="b", status="changed")
    s.set_relabel(ids[1], llm_label="a", status="agree")
    agree = s.list_examples(relabel_status="agree")
    assert [e.id for e in agree] == [ids[1]]
    assert s.bulk_review([e.id for e in agree], "accepted") == 1
    assert s.list_examples(review_status="pending", search="TEXT 4")[0].id == ids[4]
    assert s.get_example(ids[0]).label == "b"  # label follows the relabel
    assert s.count_examples()["accepted"] == 1


def test_metrics_and_runs(tmp_path):
    s = ProjectStore(tmp_path / "p.pmx")
    r = s.create_run({"epochs": 1}, name="a2", method="a2")
    s.update_run(r, status="running", device="cpu")
    s.log_metrics(r, 1, {"train_loss": 1.5}, epoch=0.1)
    s.log_metrics(r, 2, {"train_loss": 1.2, "val_accuracy": 0.5}, epoch=0.2)
    first = s.get_metrics(r)
    assert [m["name"] for m in first] == ["train_loss", "train_loss", "val_accuracy"]
    assert s.get_metrics(r, after_id=first[-1]["id"]) == []
    s.update_run(r, status="done", final_metrics={"accuracy": 0.5})
    assert s.get_run(r).final_metrics == {"accuracy": 0.5} and s.get_run(r).finished_at


def test_keys_never_stored(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-abcdefghijklmnop")
    s = ProjectStore(tmp_path / "p.pmx")
    j = s.create_job("generate", {"api_key": "sk-live-abcdefghijklmnop", "base_url": "http://x"})
    s.save_settings({"api_key": "sk-live-abcdefghijklmnop", "model": "m"})
    s.update_job(j, message="failed with key sk-live-abcdefghijklmnop")
    s.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b"sk-live-abcdefghijklmnop" not in raw
    assert scrub_secrets("Bearer abcdefghijk123") == "Bearer ***"


@pytest.mark.parametrize("content", [b"random bytes" * 100, b"SQLite format 3\x00" + b"\x00" * 200])
def test_foreign_or_corrupt_files_refused(tmp_path, content):
    p = tmp_path / "bad.pmx"
    p.write_bytes(content)
    with pytest.raises(StoreError):
        ProjectStore(p)


def test_foreign_sqlite_database_refused(tmp_path):
    p = tmp_path / "other.db"
    conn = sqlite3.connect(p)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="another application"):
        ProjectStore(p)


def test_missing_project_and_folder(tmp_path):
    with pytest.raises(StoreError, match="no project"):
        open_project(tmp_path / "nope.pmx")
    with pytest.raises(StoreError, match="folder"):
        ProjectStore(tmp_path)


def test_two_processes_write_at_once(tmp_path):
    p = tmp_path / "p.pmx"
    s = ProjectStore(p)
    j = s.create_job("generate", {})
    code = (
        "import sys; from promptmix_core.store import ProjectStore\n"
        "s = ProjectStore(sys.argv[1]); tag = sys.argv[2]\n"
        "for i in range(200):\n"
        f"    s.add_examples([{{'job_id': {j}, 'slot': tag + str(i), 'text': tag + str(i), "
        "'norm_text': tag + str(i), 'intended_label': 'a'}])\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(p), tag]) for tag in ("x", "y")]
    assert all(pr.wait(timeout=120) == 0 for pr in procs)
    assert s.count_examples(j)["total"] == 400


def test_reap_stale_jobs_marks_dead_workers_failed(tmp_path):
    s = ProjectStore(tmp_path / "p.pmx")
    j = s.create_job("train", {})
    r = s.create_run({}, job_id=j)
    s.update_run(r, status="running")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    s.update_job(j, status="running", pid=proc.pid)
    assert s.reap_stale_jobs() == [j]
    assert s.get_job(j).status == "failed"
    assert s.get_run(r).status == "failed"
    assert json.loads(json.dumps(s.summary()))["active_jobs"] == []


def test_additive_migrations_upgrade_an_older_file(tmp_path, monkeypatch):
    """A file written before a table or column was added gains it on open; the data stays."""
    import sqlite3

    from promptmix_core import store as store_mod

    path = tmp_path / "old.pmx"
    s = store_mod.ProjectStore(path)
    job = s.create_job("generate", {"per_class": 1})
    s.close()
    monkeypatch.setattr(store_mod.schema, "_ADDED_TABLES", [("extra", "CREATE TABLE IF NOT EXISTS extra (id INTEGER PRIMARY KEY)")])
    monkeypatch.setattr(store_mod.schema, "_ADDED_COLUMNS", [("jobs", "note", "TEXT NOT NULL DEFAULT ''")])
    s2 = store_mod.ProjectStore(path)
    assert s2.get_job(job).config == {"per_class": 1}
    s2.close()
    con = sqlite3.connect(path)
    assert "note" in {r[1] for r in con.execute("PRAGMA table_info(jobs)")}
    assert con.execute("SELECT name FROM sqlite_master WHERE name = 'extra'").fetchone()
    con.close()
