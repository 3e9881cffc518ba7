"""The project file survives a process killed in the middle of a write, and anything that is not a
PromptMix project is refused with a clear message (and left untouched)."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from rel_helpers import ROOT, kill_and_reap
from promptmix_core.projects import ProjectError, open_project as open_named_project
from promptmix_core.store import ProjectStore, StoreError, open_project
from promptmix_core.task import normalize_text

_WRITER = textwrap.dedent("""
    import sys, time
    from promptmix_core.store import ProjectStore
    path, mode = sys.argv[1], sys.argv[2]
    store = ProjectStore(path, create=False)
    big = "x" * 2000
    if mode == "one-big-transaction":
        with store.transaction() as c:
            for i in range(20000):
                c.execute(
                    "INSERT INTO examples(job_id, slot, text, norm_text, label, intended_label, created_at) "
                    "VALUES (9, ?, ?, ?, 'a', 'a', 0)", (f"s{i}", big + str(i), f"n{i}"))
                if i == 15000:
                    print("half-way", flush=True)
                    time.sleep(60)  # killed here, with 15,000 rows written but not committed
    else:  # many transactions of 250 rows, killed at some point in the stream
        b = 0
        while True:
            store.add_examples({"job_id": 9, "slot": f"s{b}-{i}", "text": big + f"{b}-{i}", "norm_text": f"n{b}-{i}",
                                "intended_label": "a"} for i in range(250))
            b += 1
            if b == 8:
                print("streaming", flush=True)
""")


def _start_writer(path, mode):
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), mode], stdout=subprocess.PIPE, text=True,
                            cwd=str(ROOT))
    return proc


def _committed(project):
    project.add_examples([{"job_id": 1, "slot": "keep", "text": "committed before", "norm_text": "committed before",
                           "intended_label": "card_lost"}])


def test_kill_9_in_the_middle_of_a_big_transaction_leaves_nothing_half_written(project):
    _committed(project)
    proc = _start_writer(project.path, "one-big-transaction")
    try:
        assert proc.stdout.readline().strip() == "half-way"
        wal = project.path.with_name(project.path.name + "-wal")
        assert wal.exists() and wal.stat().st_size > 10_000_000  # the uncommitted pages really were written
    finally:
        kill_and_reap(proc.pid)
        proc.stdout.close()
    project.close()
    reopened = ProjectStore(project.path, create=False)
    assert reopened.integrity_ok()
    assert reopened.count_examples(9)["total"] == 0  # all or nothing: nothing
    assert [e.text for e in reopened.list_examples(job_id=1)] == ["committed before"]
    reopened.add_examples([{"job_id": 2, "slot": "a", "text": "still writable", "norm_text": "still writable",
                            "intended_label": "a"}])
    assert reopened.count_examples(2)["total"] == 1


def test_kill_9_during_a_stream_of_commits_keeps_whole_transactions(project):
    _committed(project)
    proc = _start_writer(project.path, "stream")
    try:
        assert proc.stdout.readline().strip() == "streaming"
        import time

        time.sleep(0.3)
    finally:
        kill_and_reap(proc.pid)
        proc.stdout.close()
    project.close()
    reopened = ProjectStore(project.path, create=False)
    assert reopened.integrity_ok()
    n = reopened.count_examples(9)["total"]
    assert n >= 8 * 250 and n % 250 == 0  # only whole batches
    assert reopened.count_examples(1)["total"] == 1


# ------------------------------------------------------------------------ not a project: refused
def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _real_project(tmp_path, n=2000):
    store = ProjectStore(tmp_path / "real.pmx")
    store.add_examples({"job_id": 1, "slot": str(i), "text": f"{'y' * 400} {i}", "norm_text": normalize_text(f"t{i}"),
                        "intended_label": "a"} for i in range(n))
    store._connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    for suffix in ("-wal", "-shm"):
        p = store.path.with_name(store.path.name + suffix)
        if p.exists():
            p.unlink()
    return store.path


def _bad_file(kind, tmp_path):
    p = tmp_path / f"{kind}.pmx"
    if kind == "random-bytes":
        p.write_bytes(os.urandom(10_000))
    elif kind == "foreign-sqlite":
        conn = sqlite3.connect(p)
        conn.execute("CREATE TABLE people (name TEXT)")
        conn.execute("INSERT INTO people VALUES ('Ada')")
        conn.commit()
        conn.close()
    elif kind == "foreign-app-id":
        conn = sqlite3.connect(p)
        conn.execute("PRAGMA application_id = 1234")
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
        conn.close()
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "folder":
        p.mkdir()
    elif kind.startswith("truncated"):
        src = _real_project(tmp_path)
        frac = {"truncated-half": 0.5, "truncated-last-page": 0.999, "truncated-header": 0.00005}[kind]
        data = src.read_bytes()
        p.write_bytes(data[: max(60, int(len(data) * frac))])
    elif kind == "sqlite-header-then-junk":
        p.write_bytes(b"SQLite format 3\x00" + random.Random(0).randbytes(8192))
    elif kind == "text-file":
        p.write_text("name,label\nhello,world\n")
    return p


@pytest.mark.parametrize("kind, message", [
    ("random-bytes", "not a PromptMix project (not an SQLite database)"),
    ("text-file", "not a PromptMix project (not an SQLite database)"),
    ("foreign-sqlite", "an SQLite database of another application, not a project"),
    ("foreign-app-id", "an SQLite file of another application, not a project"),
    ("empty", "is an empty file, not a PromptMix project"),
    ("folder", "is a folder, not a project file"),
    ("truncated-half", "is damaged: the file is cut off"),
    ("truncated-last-page", "is damaged: the file is cut off"),
    ("truncated-header", "is damaged: the file is cut off"),
    ("sqlite-header-then-junk", "not a project"),
])
def test_not_a_project_is_refused_clearly_and_left_untouched(tmp_path, kind, message):
    p = _bad_file(kind, tmp_path)
    before = None if p.is_dir() else _sha(p)
    listing = sorted(os.listdir(tmp_path))
    with pytest.raises(StoreError) as err:
        open_project(p)
    assert message in str(err.value) and p.name in str(err.value)
    assert "\n" not in str(err.value) and len(str(err.value)) < 200
    if before is not None:
        assert _sha(p) == before  # not converted, not "repaired", not truncated further
    assert sorted(os.listdir(tmp_path)) == listing  # no -wal/-shm left behind


def test_refused_file_through_the_projects_folder_is_a_project_error(tmp_path):
    (tmp_path / "broken.pmx").write_bytes(os.urandom(5000))
    with pytest.raises(ProjectError, match="not a PromptMix project"):
        open_named_project("broken", tmp_path)


def test_a_missing_project_is_not_created_by_opening(tmp_path):
    with pytest.raises(StoreError, match="no project at"):
        open_project(tmp_path / "nope.pmx")
    assert not (tmp_path / "nope.pmx").exists()


def test_an_intact_copy_still_opens(tmp_path):
    src = _real_project(tmp_path, n=300)
    dst = tmp_path / "copy.pmx"
    shutil.copy(src, dst)
    store = open_project(dst)
    assert store.count_examples()["total"] == 300 and store.integrity_ok()


# --------------------------------------------------- one process, several handles, other processes
_SHORT_WRITER = textwrap.dedent("""
    import sys
    from promptmix_core.store import ProjectStore
    s = ProjectStore(sys.argv[1], create=False)
    b = sys.argv[2]
    s.add_examples({"job_id": 5, "slot": f"{b}-{i}", "text": f"row {b} {i}", "norm_text": f"{b}-{i}",
                    "intended_label": "a"} for i in range(100))
    s.close()
""")


def test_reopening_a_project_in_a_process_never_breaks_its_open_handles(project):
    """The app keeps a store open, opens the same project again (start_job, pages) while workers
    start, write and exit. Reading a file's raw header while SQLite holds it open would drop this
    process's locks, let an exiting worker delete the WAL under us, and corrupt the project."""
    _committed(project)
    for b in range(12):
        proc = subprocess.Popen([sys.executable, "-c", _SHORT_WRITER, str(project.path), str(b)], cwd=str(ROOT))
        again = ProjectStore(project.path, create=False)  # what jobs.start_job does in the app process
        assert again.count_examples(1)["total"] == 1
        assert proc.wait(timeout=60) == 0
        assert project.count_examples(5)["total"] == 100 * (b + 1)
        project.add_examples([{"job_id": 6, "slot": str(b), "text": f"app {b}", "norm_text": f"app {b}",
                               "intended_label": "a"}])
    assert project.integrity_ok()
    project.close()
    fresh = ProjectStore(project.path, create=False)
    assert fresh.count_examples(5)["total"] == 1200 and fresh.count_examples(6)["total"] == 12
    assert fresh.integrity_ok()
