"""Full disks and folders that cannot be written: a generation job (worker and CLI) on a disk that
fills up, a projects folder mounted read-only, and output paths that are folders. Each ends in one
line naming the disk or folder, the job marked with its reason, the store intact and what was
finished kept.

A full disk is a real one: a 1-2 MB tmpfs mounted for the test (root only; skipped with the reason
otherwise). A read-only folder is a read-only bind mount of a folder onto itself (root), or a folder
without write permission (any other user)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from rel_helpers import ROOT, run_cli, tiny_task, wait_for
from promptmix_core import jobs, projects
from promptmix_core.store import JOB_FINAL, ProjectStore, StoreReadOnlyError
from promptmix_core.task import save_task


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    """A folder on its own 2 MB file system (unmounted at the end)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a small tmpfs, which needs root to mount")
    try:
        _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk))
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({getattr(exc, 'stderr', exc)!s}".strip() + ")")
    try:
        yield disk
    finally:
        _umount(disk)


def fill(disk: Path, leave: int) -> None:
    """Leave only ``leave`` bytes free on ``disk``."""
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with open(disk / "filler.bin", "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))


@pytest.fixture
def make_read_only():
    """``make_read_only(folder)``: from now on nothing can be written in ``folder``."""
    done: list[tuple[str, Path]] = []

    def make(folder: Path) -> None:
        if os.geteuid() == 0:  # root ignores permissions: a read-only bind mount stops it
            try:
                _mount("--bind", str(folder), str(folder))
                _mount("-o", "remount,bind,ro", str(folder))
            except (subprocess.CalledProcessError, FileNotFoundError) as exc:
                pytest.skip(f"cannot make a read-only mount here ({exc})")
            done.append(("mount", folder))
        else:
            for p in [folder, *folder.rglob("*")]:
                p.chmod(p.stat().st_mode & ~0o222)
            done.append(("chmod", folder))

    yield make
    for how, folder in done:
        if how == "mount":
            _umount(folder)
        else:
            for p in [folder, *folder.rglob("*")]:
                p.chmod(p.stat().st_mode | 0o200)


def _final(store: ProjectStore, job_id: int, timeout: float = 120):
    return wait_for(lambda: (j := store.get_job(job_id)) and j.status in JOB_FINAL and j, timeout, 0.1, "the job")


# ---------------------------------------------------------------------------------- a full disk
def test_disk_full_during_a_generation_job_fails_it_in_words(make_fake_llm, small_disk, workers):
    fake = make_fake_llm()
    store = ProjectStore(small_disk / "p.pmx")
    store.save_task(tiny_task())
    fill(small_disk, 160_000)
    job_id = jobs.start_job(store.path, "generate", {"base_url": fake.base_url, "model": "fake-model",
                                                     "per_class": 400, "group_size": 2, "timeout": 5,
                                                     "relabel": False, "concurrency": 2})
    workers.append(store.get_job(job_id).pid)
    job = _final(store, job_id)
    assert job.status == "failed", job.message
    assert job.message.startswith(f"the disk holding {small_disk} is full: p.pmx could not be written")
    assert "\n" not in job.message
    kept = store.count_examples(job_id)["total"]
    assert 0 < kept < 1600  # what was saved before the disk filled up is kept
    assert store.integrity_ok()
    assert store.reap_stale_jobs() == []  # a clean failure, not a crash


def test_disk_full_during_cli_generate_project(make_fake_llm, small_disk, tmp_path, task):
    fake = make_fake_llm()
    save_task(task, tmp_path / "task.json")
    project = small_disk / "cli.pmx"
    ProjectStore(project).save_task(task)
    fill(small_disk, 160_000)
    out = tmp_path / "out.jsonl"  # the output is on another disk: the partial file can be written
    r = run_cli("generate", str(tmp_path / "task.json"), "--per-class", "400", "--group-size", "2",
                "--base-url", fake.base_url, "--model", "fake-model", "--project", str(project), "--out", str(out),
                "--cache", str(tmp_path / "c.sqlite"), "--concurrency", "2", "--no-flags", timeout=120)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith(f"error: the disk holding {small_disk} is full: cli.pmx could not be written")
    partial = Path(str(out) + ".partial.jsonl")
    rows = [json.loads(x) for x in partial.read_text("utf-8").splitlines()]
    store = ProjectStore(project, create=False)
    job = store.list_jobs()[0]
    assert job.status == "failed" and job.message.startswith("the disk holding")
    stored = store.count_examples(job.id)["total"]
    assert 0 < stored <= len(rows)  # every stored example is in the partial file, and more
    assert {x["text"] for x in rows} >= {e.text for e in store.list_examples(job_id=job.id)}
    assert store.integrity_ok()
    assert not out.exists()


def test_disk_full_while_writing_the_output_file(make_fake_llm, small_disk, tmp_path, task):
    fake = make_fake_llm()
    save_task(task, tmp_path / "task.json")
    fill(small_disk, 2_000)
    r = run_cli("generate", str(tmp_path / "task.json"), "--per-class", "60", "--base-url", fake.base_url,
                "--model", "fake-model", "--out", str(small_disk / "out.jsonl"), "--cache", str(tmp_path / "c.sqlite"),
                "--no-flags")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]  # the summary lines come first
    assert len(errors) == 1 and errors[0].startswith(f"error: the disk holding {small_disk} is full")
    assert not (small_disk / "out.jsonl").exists() and not (small_disk / "out.jsonl.tmp").exists()


def test_a_new_project_on_a_full_disk_is_refused_and_leaves_no_file(small_disk):
    fill(small_disk, 0)
    with pytest.raises(projects.ProjectError, match=f"the disk holding {small_disk} is full"):
        projects.create_project("new", small_disk)
    assert not (small_disk / "new.pmx").exists()


# ------------------------------------------------------------------------------ read-only folders
@pytest.fixture
def ro_projects(tmp_path, make_read_only, task):
    folder = tmp_path / "projects"
    store = projects.create_project("shared", folder, task=task)
    job = store.create_job("generate", {"per_class": 1}, status="done")
    store.add_examples([{"job_id": job, "slot": f"s{i}", "text": f"text {i}", "norm_text": f"text {i}",
                         "intended_label": task.class_names[0]} for i in range(3)])
    store.close()
    make_read_only(folder)
    return folder


def test_a_project_in_a_read_only_folder_opens_read_only(ro_projects):
    store = projects.open_project("shared", ro_projects)
    assert store.read_only and len(store.list_examples()) == 3 and store.load_task() is not None
    assert store.integrity_ok()
    with pytest.raises(StoreReadOnlyError, match=f"cannot write to folder {ro_projects}"):
        store.review(store.list_examples()[0].id, "accepted")
    with pytest.raises(StoreReadOnlyError, match="cannot write to folder"):
        jobs.start_job(store.path, "generate", {"per_class": 1})
    assert store.reap_stale_jobs() == []
    assert sorted(p.name for p in ro_projects.iterdir()) == ["shared.pmx"]  # not even a -shm was made
    with pytest.raises(projects.ProjectError, match=f"cannot write to folder {ro_projects}"):
        projects.create_project("another", ro_projects)


def test_cli_on_a_read_only_project_says_so_before_any_call(make_fake_llm, ro_projects, tmp_path, task):
    fake = make_fake_llm()
    save_task(task, tmp_path / "task.json")
    r = run_cli("generate", str(tmp_path / "task.json"), "--per-class", "2", "--base-url", fake.base_url,
                "--model", "fake-model", "--project", str(ro_projects / "shared.pmx"), "--out", str(tmp_path / "o.jsonl"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"error: cannot write to folder {ro_projects}: the project is open read-only"
    assert fake.calls == 0


def _app(folder: Path, monkeypatch, page: str | None = None):
    from app_session import open_app

    monkeypatch.setenv(projects.ENV_DIR, str(folder))
    return open_app(page, "shared")


@pytest.mark.slow
def test_app_on_a_read_only_folder_views_the_project_and_never_crashes(ro_projects, monkeypatch, tmp_path):
    pytest.importorskip("streamlit")
    monkeypatch.chdir(tmp_path)
    at = _app(ro_projects, monkeypatch, "app_pages/3_review.py")
    said = " ".join(str(e.value) for e in [*at.warning, *at.markdown, *at.info])
    assert "No project is open" not in said
    assert "open read-only" in said and str(ro_projects).replace("/", "") in said.replace("\\", "").replace("/", "")
    # a decision (here a bulk accept, asked and confirmed) is refused in words, nothing crashes
    next(b for b in at.button if getattr(b, "key", None) == "rv_bulk_shown").click()
    at.run()
    assert not at.exception, at.exception
    next(b for b in at.button if getattr(b, "key", None) == "rv_bulk_confirm").click()
    at.run()
    assert not at.exception, at.exception
    assert any("Nothing was changed" in e.value and "cannot write to folder" in e.value for e in at.error)
    # a decision from the review card (its sync message, as test_app_review sends it): not acknowledged,
    # so the tab keeps it, and the reason is said on the page and on the card
    example_id = projects.open_project("shared", ro_projects).list_examples()[0].id
    from app_session import card_data

    at.session_state["rv_card::shared"] = {"sync": {
        "project": "shared", "uid": card_data(at)["project_uid"], "inst": "i", "tab": "t", "req": 1, "qid": None, "want": None,
        "ops": [{"cid": "c1", "tab": "t", "id": example_id, "action": "accepted", "label": None, "base": 0}]}}
    at.run()
    assert not at.exception, at.exception
    assert any("could not be saved" in e.value and "cannot write to folder" in e.value for e in at.error)
    # "Create project" in the read-only folder: a message, not an OperationalError
    next(t for t in at.text_input if getattr(t, "key", None) == "sb_new_name").input("newone")
    next(b for b in at.button if b.label == "Create project").click()
    at.run()
    assert not at.exception, at.exception
    assert any("Could not create the project" in e.value and "cannot write to folder" in e.value
               for e in at.sidebar.error)
    for page in ("app_pages/1_task.py", "app_pages/2_generate.py", "app_pages/4_train.py"):
        at.switch_page(page)
        at.run()
        assert not at.exception, (page, at.exception)


# ------------------------------------------------------------------------------ output paths
def test_out_naming_a_folder_fails_before_any_call(make_fake_llm, tmp_path, task):
    fake = make_fake_llm()
    save_task(task, tmp_path / "task.json")
    folder = tmp_path / "results"
    folder.mkdir()
    r = run_cli("generate", str(tmp_path / "task.json"), "--per-class", "2", "--base-url", fake.base_url,
                "--model", "fake-model", "--out", str(folder))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"error: --out {folder} is a folder; give a file name, e.g. {folder / 'examples.jsonl'}"
    assert fake.calls == 0 and list(folder.iterdir()) == [] and not (tmp_path / "results.tmp").exists()


def test_out_in_a_read_only_folder_fails_before_any_call(make_fake_llm, tmp_path, task, make_read_only):
    fake = make_fake_llm()
    save_task(task, tmp_path / "task.json")
    folder = tmp_path / "ro"
    folder.mkdir()
    make_read_only(folder)
    r = run_cli("generate", str(tmp_path / "task.json"), "--per-class", "2", "--base-url", fake.base_url,
                "--model", "fake-model", "--out", str(folder / "o.jsonl"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"error: cannot write to folder {folder}: o.jsonl cannot be written there"
    assert fake.calls == 0


@pytest.mark.parametrize("kind", ["csv", "folder", "other-sqlite"])
def test_cache_that_is_not_a_cache_is_refused_in_one_line(make_fake_llm, tmp_path, task, kind):
    import sqlite3

    fake = make_fake_llm()
    save_task(task, tmp_path / "task.json")
    cache = tmp_path / ("cache.csv" if kind == "csv" else "cachedir" if kind == "folder" else "other.db")
    if kind == "csv":
        cache.write_text("text,label\nhello,a\n", "utf-8")
    elif kind == "folder":
        cache.mkdir()
    else:
        conn = sqlite3.connect(cache)
        conn.execute("CREATE TABLE accounts (id INTEGER)")
        conn.commit()
        conn.close()
    before = cache.read_bytes() if cache.is_file() else None
    r = run_cli("generate", str(tmp_path / "task.json"), "--per-class", "2", "--base-url", fake.base_url,
                "--model", "fake-model", "--out", str(tmp_path / "o.jsonl"), "--cache", str(cache))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    expected = {"csv": "is not a response cache (it is not an SQLite file)", "folder": "is a folder; give a file",
                "other-sqlite": "is an SQLite database of another application"}[kind]
    assert r.stderr.startswith(f"error: the cache {cache} ") and expected in r.stderr
    assert fake.calls == 0
    if before is not None:
        assert cache.read_bytes() == before


@pytest.mark.parametrize("content, words", [
    (b"", "is empty (0 bytes)"),
    (b"\x10\x00\x00\x00\x00\x00\x00\x00{}", "is not a safetensors file or is cut off"),
    (b"garbage that is not safetensors at all", "is not a safetensors file or is cut off"),
])
def test_a_model_folder_with_a_broken_safetensors_file_is_refused_clearly(tmp_path, content, words):
    from promptmix_core.training.config import ModelLoadError
    from promptmix_core.training.model_io import check_safetensors_folder

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(content)
    (model / "config.json").write_text("{}", "utf-8")
    with pytest.raises(ModelLoadError) as info:
        check_safetensors_folder(model)
    msg = str(info.value)
    assert msg.startswith(f"{model / 'model.safetensors'} {words}") and "\n" not in msg
    assert msg.endswith("; the model cannot be loaded (train it again, or copy the folder again)")
    if not content:  # the same through the command line (which imports transformers: once is enough)
        r = run_cli("predict", str(model), "some text")
        assert r.returncode == 2 and "Traceback" not in r.stderr and words in r.stderr
