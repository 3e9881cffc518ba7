"""The projects folder (names, paths, create/open/delete, the demo) and the Task page's helpers."""

from __future__ import annotations

import json

import pytest

from promptmix_core import projects
from promptmix_core.demo import DEMO_EXAMPLES, DEMO_NAME, create_demo, demo_task
from promptmix_core.projects import ProjectError
from promptmix_core.store import ProjectStore
from promptmix_core.task import ClassSpec, Task, TaskError, validate


@pytest.fixture
def folder(tmp_path, monkeypatch):
    d = tmp_path / "projects"
    monkeypatch.setenv(projects.ENV_DIR, str(d))
    return d


# --------------------------------------------------------------------------- names and paths
@pytest.mark.parametrize("name", ["support", "Support tickets 2", "a.b-c_d", "Ünïcode ok", "x" * 64])
def test_good_names(name):
    assert projects.check_name(name) == name


@pytest.mark.parametrize(
    "name, words",
    [
        ("", "name"),
        ("   ", "name"),
        ("../evil", "may not contain"),
        ("a/b", "may not contain"),
        ("a\\b", "may not contain"),
        ("..", "may not contain"),
        (".hidden", "letters"),
        ("x" * 65, "at most"),
        ("con", "reserved"),
        ("ends.", "may not end"),
        ("bad\x00name", "may not contain"),
        ("semi;colon", "letters"),
    ],
)
def test_bad_names_are_refused_with_a_reason(name, words):
    with pytest.raises(ProjectError, match=words):
        projects.check_name(name)


def test_project_path_stays_inside_the_folder(folder):
    p = projects.project_path("alpha", folder)
    assert p.parent == folder.resolve() and p.name == "alpha.pmx"
    with pytest.raises(ProjectError):
        projects.project_path("../outside", folder)


NFC, NFD = "caf\u00e9", "cafe\u0301"


def _raw_project(folder, stem: str) -> None:
    """A project file whose name was made outside the app (another tool, an older version)."""
    folder.mkdir(parents=True, exist_ok=True)
    ProjectStore(folder / f"{stem}.pmx").close()


def test_open_and_delete_go_by_the_exact_file_never_a_look_alike(folder):
    """Issue 23 item 6: ``?project=beta%20`` opened beta.pmx, not "beta .pmx"; NFD and NFC names opened
    each other; deleting "café " removed café.pmx."""
    projects.create_project("beta", folder).close()
    _raw_project(folder, "beta ")
    projects.create_project(NFC, folder).close()
    _raw_project(folder, NFD)
    _raw_project(folder, NFC + " ")
    names = {p.name for p in projects.list_projects(folder)}
    assert names == {"beta", "beta ", NFC, NFD, NFC + " "}
    for name in names:  # each name opens its own file
        store = projects.open_project(name, folder)
        assert store.path.name == f"{name}.pmx"
        store.close()
    assert projects.project_path("beta ", folder).name == "beta .pmx"
    with pytest.raises(ProjectError):
        projects.open_project("beta\u200b", folder)  # an invisible character: never beta.pmx
    projects.delete_project(NFC + " ", folder)
    assert (folder / f"{NFC}.pmx").is_file() and not (folder / f"{NFC} .pmx").exists()
    projects.delete_project(NFD, folder)
    assert (folder / f"{NFC}.pmx").is_file() and not (folder / f"{NFD}.pmx").exists()
    projects.delete_project("beta ", folder)
    assert (folder / "beta.pmx").is_file()
    assert {p.name for p in projects.list_projects(folder)} == {"beta", NFC}
    # the last project is remembered exactly
    _raw_project(folder, "beta ")
    projects.remember_last_project("beta ", folder)
    assert projects.last_project(folder) == "beta "


@pytest.mark.parametrize("new", ["beta ", " Beta", "BETA", "be\u200bta", "beta\u00ad", "\uff42eta"])
def test_a_look_alike_of_an_existing_name_is_refused_when_creating(folder, new):
    projects.create_project("beta", folder).close()
    with pytest.raises(ProjectError, match="already exists|letters, digits"):  # invisible characters: not allowed
        projects.create_project(new, folder)
    assert [p.name for p in projects.list_projects(folder)] == ["beta"]


def test_an_nfd_name_is_created_as_nfc_and_its_twin_refused(folder):
    store = projects.create_project(NFD, folder)
    assert store.path.name == f"{NFC}.pmx"
    store.close()
    with pytest.raises(ProjectError, match="already exists"):
        projects.create_project(NFC, folder)


def test_projects_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv(projects.ENV_DIR, raising=False)
    monkeypatch.chdir(tmp_path)
    assert projects.projects_dir() == (tmp_path / "projects").resolve()
    monkeypatch.setenv(projects.ENV_DIR, str(tmp_path / "elsewhere"))
    assert projects.projects_dir() == (tmp_path / "elsewhere").resolve()


# --------------------------------------------------------------------------- create / list / open / delete
def test_create_list_open_delete(folder):
    assert projects.list_projects(folder) == []
    store = projects.create_project("first", folder, task=demo_task())
    store.close()
    projects.create_project("second", folder).close()
    names = [p.name for p in projects.list_projects(folder)]
    assert sorted(names) == ["first", "second"]
    assert projects.open_project("first", folder).load_task().name == "Banking support"
    with pytest.raises(ProjectError, match="already exists"):
        projects.create_project("first", folder)
    with pytest.raises(ProjectError, match="already exists"):
        projects.create_project("FIRST", folder)  # same name on a case-insensitive file system
    projects.delete_project("second", folder)
    assert [p.name for p in projects.list_projects(folder)] == ["first"]
    with pytest.raises(ProjectError, match="no project"):
        projects.open_project("second", folder)
    with pytest.raises(ProjectError, match="no project"):
        projects.delete_project("second", folder)


def test_delete_removes_side_files_models_and_logs(folder):
    store = projects.create_project("gone", folder)
    path = store.path
    models = path.with_name("gone.models") / "run-1"
    models.mkdir(parents=True)
    (models / "model.safetensors").write_bytes(b"x")
    logs = path.with_name(path.name + ".logs")
    logs.mkdir()
    (logs / "job-1.log").write_text("hi")
    store.close()
    projects.delete_project("gone", folder)
    assert not path.exists() and not models.parent.exists() and not logs.exists()
    assert not path.with_name(path.name + "-wal").exists()


def test_delete_refuses_while_a_job_runs(folder):
    import os

    store = projects.create_project("busy", folder)
    job = store.create_job("generate", {}, status="running")
    store.update_job(job, pid=os.getpid())
    with pytest.raises(ProjectError, match="job running"):
        projects.delete_project("busy", folder)
    projects.delete_project("busy", folder, force=True)
    assert not projects.project_exists("busy", folder)


def test_open_refuses_a_file_that_is_not_a_project(folder):
    folder.mkdir(parents=True)
    (folder / "junk.pmx").write_bytes(b"this is not sqlite at all" * 10)
    with pytest.raises(ProjectError, match="not"):
        projects.open_project("junk", folder)


def test_list_skips_symlinks_and_odd_names(folder, tmp_path):
    projects.create_project("real", folder).close()
    outside = tmp_path / "outside.pmx"
    ProjectStore(outside).close()
    (folder / "link.pmx").symlink_to(outside)
    (folder / ".hidden.pmx").write_bytes(b"")
    assert [p.name for p in projects.list_projects(folder)] == ["real"]


def test_unique_name(folder):
    assert projects.unique_name("demo", folder) == "demo"
    projects.create_project("demo", folder).close()
    assert projects.unique_name("demo", folder) == "demo 2"


# --------------------------------------------------------------------------- the demo
def test_demo_is_created_once_on_first_start(folder):
    assert projects.ensure_demo(folder) == DEMO_NAME
    store = projects.open_project(DEMO_NAME, folder)
    task = store.load_task()
    validate(task)
    assert len(task.classes) == 5 and all(len(c.examples) == 2 for c in task.classes)
    assert all(c.description for c in task.classes)
    counts = store.count_examples()
    assert counts["total"] == len(DEMO_EXAMPLES) and counts["relabelled"] == len(DEMO_EXAMPLES)
    assert 0 < counts["changed"] < counts["total"]
    store.close()
    # never again, even after the user deleted it
    projects.delete_project(DEMO_NAME, folder)
    assert projects.ensure_demo(folder) is None
    assert projects.list_projects(folder) == []


def test_demo_examples_are_consistent():
    names = set(demo_task().class_names)
    for text, intended, mixed, alpha, llm in DEMO_EXAMPLES:
        assert intended in names and mixed in names and llm in names and intended != mixed
        assert 0.5 <= alpha <= 1.0 and round(alpha * 20) == alpha * 20
        assert text.strip()


def test_demo_without_examples(tmp_path):
    store = create_demo(tmp_path / "d.pmx", with_examples=False)
    assert store.count_examples()["total"] == 0 and store.load_task().name == "Banking support"


# --------------------------------------------------------------------------- task editing helpers
def test_lines_to_examples():
    assert projects.lines_to_examples("  a \n\n b\r\nc  \n") == ["a", "b", "c"]
    assert projects.lines_to_examples("") == []


def test_field_problems_point_at_the_field():
    task = Task(name="t", classes=[
        ClassSpec("alpha", "", ["x"]),
        ClassSpec("", "d", ["y"]),
        ClassSpec("Alpha", "d", []),
        ClassSpec("beta", "d", ["z" * 20_001]),
    ])
    top, per = projects.field_problems(task)
    assert top == []
    assert "name" in " ".join(per[(1, "name")]).lower()
    assert "differ only" in per[(2, "name")][0]
    assert "at least one seed" in per[(2, "examples")][0]
    assert "limit" in per[(3, "examples")][0]
    assert (0, "name") not in per and (0, "examples") not in per
    warnings = projects.field_warnings(task)
    assert (0, "description") in warnings


def test_field_problems_task_level_and_clean():
    top, per = projects.field_problems(Task(name="t", classes=[ClassSpec("only", "", ["x"])]))
    assert top and "at least 2 classes" in top[0] and not per
    assert projects.field_problems(demo_task()) == ([], {})


def test_field_warnings_duplicate_seeds():
    w = projects.field_warnings(Task(name="t", classes=[ClassSpec("a", "d", ["Hi!", "hi"])]))
    assert "duplicates" in w[(0, "examples")][0]


# --------------------------------------------------------------------------- imports
def test_import_csv_with_k():
    rows = "text,label\n" + "".join(f"text {i},{'a' if i % 2 else 'b'}\n" for i in range(20))
    task = projects.import_task_bytes(rows.encode(), "bank.csv")
    assert task.name == "bank" and sorted(task.class_names) == ["a", "b"]
    assert sum(len(c.examples) for c in task.classes) == 20
    small = projects.import_task_bytes(rows.encode(), "bank.csv", k=3, seed=1)
    assert all(len(c.examples) == 3 for c in small.classes)
    assert small.to_dict() == projects.import_task_bytes(rows.encode(), "bank.csv", k=3, seed=1).to_dict()


def test_import_csv_keeps_small_classes_whole_with_k():
    rows = "text,label\nx1,a\nx2,a\nx3,a\ny1,b\n"
    task = projects.import_task_bytes(rows.encode(), "t.csv", k=2)
    assert len(task.get("a").examples) == 2 and task.get("b").examples == ["y1"]


def test_import_jsonl_and_bom():
    data = "\ufeff" + "\n".join(json.dumps({"text": f"t{i}", "label": "ab"[i % 2]}) for i in range(4))
    task = projects.import_task_bytes(data.encode("utf-8"), "x.jsonl")
    assert sorted(task.class_names) == ["a", "b"]


def test_import_task_files_json_and_yaml():
    doc = demo_task().to_dict()
    t1 = projects.import_task_bytes(json.dumps(doc).encode(), "task.json")
    assert t1.class_names == demo_task().class_names
    yaml_text = "name: tiny\nclasses:\n  - name: a\n    description: A\n    examples: [one]\n" \
                "  - name: b\n    examples:\n      - two\n"
    t2 = projects.import_task_bytes(yaml_text.encode(), "tiny.yaml")
    assert t2.name == "tiny" and t2.get("b").examples == ["two"]


@pytest.mark.parametrize(
    "data, name, words",
    [
        (b"text,label\n", "a.csv", "no rows"),
        (b"txt,lbl\nx,y\n", "a.csv", "missing the column"),
        (b"\xff\xfe\xfa\x00bad", "a.txt", ".csv or .jsonl"),
        (b"\x80\x81 not utf8 text,label", "a.csv", "UTF-8"),
        (b"", "a.csv", "empty"),
        (b"{not json", "a.jsonl", "not valid JSON"),
        (b"{\"name\": \"t\", \"classes\": [{\"name\": \"a\", \"examples\": [\"x\"]}]}", "t.json", "at least 2"),
        (b"text,label\nx,a\n", "one.csv", "at least 2"),
    ],
)
def test_import_errors_are_clear(data, name, words):
    with pytest.raises(TaskError) as err:
        projects.import_task_bytes(data, name)
    assert words.lower() in " ".join(err.value.problems).lower()
