"""Each shared rule exists once: these tests prove every face uses the one remaining version."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest

from promptmix_core import paths, projects
from promptmix_core.settings import VARIABLES, Settings, get_settings
from promptmix_core.task import load_task, task_from_rows

ROOT = Path(__file__).resolve().parent.parent
CSV = "text,label\n" + "".join(f"text number {i},{'abc'[i % 3]}\n" for i in range(30)) + "text number 3,a\n"


# ------------------------------------------------------------------------------ seed drawing
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_app_cli_and_experiment_draw_the_same_seeds(tmp_path, seed):
    from promptmix_core.experiment import load_dataset
    from promptmix_core.seeds import draw_seeds, group_by_label

    (tmp_path / "train.csv").write_text(CSV)
    (tmp_path / "test.csv").write_text(CSV)
    cli = load_task(tmp_path / "train.csv", k=3, seed=seed)  # promptmix generate/check --k
    app = projects.import_task_bytes(CSV.encode(), "train.csv", k=3, seed=seed)  # the Task page's import
    data = load_dataset(tmp_path)  # the experiment runner
    exp = task_from_rows(data["train"], name="x", k=3, seed=seed)
    seeds = {c.name: c.examples for c in cli.classes}
    assert seeds == {c.name: c.examples for c in app.classes} == {c.name: c.examples for c in exp.classes}
    # and the rule does not depend on the file's row order
    rows = data["train"][::-1]
    assert draw_seeds(group_by_label(rows), 3, seed) == seeds
    # a task file gets the same draw as the labelled file it was made from
    from promptmix_core.task import save_task

    save_task(load_task(tmp_path / "train.csv"), tmp_path / "t.json")
    assert {c.name: c.examples for c in load_task(tmp_path / "t.json", k=3, seed=seed).classes} == seeds


def test_short_classes_error_in_the_cli_and_stay_whole_in_the_app():
    from promptmix_core.errors import TaskError
    from promptmix_core.seeds import draw_seeds

    by = {"a": ["x1", "x2", "x3"], "b": ["y1"], "c": ["z1"]}
    with pytest.raises(TaskError) as info:
        draw_seeds(by, 2, 0)
    assert len(info.value.problems) == 2  # every short class named
    assert draw_seeds(by, 2, 0, keep_short=True)["b"] == ["y1"]


def test_only_seeds_py_samples_seed_examples():
    offenders = []
    for p in (ROOT / "promptmix_core").rglob("*.py"):
        if p.name in ("seeds.py",):
            continue
        src = p.read_text("utf-8")
        if "rng.sample(texts" in src or "rng.sample(sorted(c.examples)" in src:
            offenders.append(p.name)
    assert not offenders


# ----------------------------------------------------------------------- labelled-file reading
@pytest.mark.parametrize("name, content", [
    ("data.csv", "\ufeffText , Label\n  hello there ,a\n,b\nbye now,b\nsee you,\n"),
    ("data.jsonl", '{"text": " hello there ", "label": "a"}\n\n{"text": "", "label": "b"}\n'
                   '{"text": "bye now", "label": "b", "extra": 1}\n{"text": "see you"}\n'),
])
def test_the_same_labelled_file_is_read_identically_by_every_face(tmp_path, name, content):
    from promptmix_core.labelled import read_labelled_file
    from promptmix_core.task import read_labelled_rows
    from promptmix_core.cli import train as train_cli
    from promptmix_core.training import jobs as train_jobs

    p = tmp_path / name
    p.write_text(content, encoding="utf-8")
    expected = [{"text": "hello there", "label": "a"}, {"text": "bye now", "label": "b"}]
    fmt = "jsonl" if name.endswith("jsonl") else "csv"
    assert read_labelled_file(p) == expected
    assert read_labelled_rows(p.read_text("utf-8-sig"), fmt, name) == expected  # task import
    assert train_jobs._read_labelled(p) == expected  # a training job's validation file
    assert [{"text": r["text"], "label": r["label"]} for r in train_cli._read_rows(str(p))] == expected  # train --data
    app = projects.import_task_bytes(content.encode("utf-8"), name) if fmt == "csv" else None
    cli = load_task(p, descriptions=None) if False else None  # a two-row file is not a valid task (1 seed each is fine)
    task = load_task(p)
    assert task.seed_rows() == sorted(expected, key=lambda r: r["label"])
    if app is not None:
        assert app.seed_rows() == task.seed_rows()
    assert cli is None
    # predict --input and relabel read the texts through the same reader (labels optional there)
    assert [r["text"] for r in read_labelled_file(p, require_label=False)] == ["hello there", "bye now", "see you"]


def test_no_face_parses_labelled_files_itself():
    offenders = []
    for p in list((ROOT / "promptmix_core").rglob("*.py")) + list((ROOT / "app_pages").glob("*.py")):
        if p.name == "labelled.py":
            continue
        src = p.read_text("utf-8")
        if "csv.DictReader" in src and p.name != "task.py":
            offenders.append(p.name)
        if "json.loads(line)" in src or "json.loads(ln)" in src:
            offenders.append(p.name)
    # task.py keeps one DictReader: the descriptions file (name,description), not a labelled file
    assert not offenders, offenders


# ------------------------------------------------------------------------------------ settings
def test_settings_read_every_variable_in_one_place(monkeypatch, tmp_path):
    env = {"OPENAI_BASE_URL": "http://h/v1", "PROMPTMIX_API_KEY": "k2", "PROMPTMIX_MODEL": "m",
           "PROMPTMIX_CACHE_DIR": str(tmp_path / "c"), "PROMPTMIX_PROJECTS_DIR": str(tmp_path / "p"),
           "PROMPTMIX_EMBEDDER": "/e", "PROMPTMIX_LOCAL_THREADS": "3", "PROMPTMIX_JOB_API_KEY": "jk"}
    s = Settings.from_env(env)
    assert (s.openai_base_url, s.api_key, s.api_key_source, s.model) == ("http://h/v1", "k2", "PROMPTMIX_API_KEY", "m")
    assert s.cache_dir == tmp_path / "c" and s.llm_cache_path == tmp_path / "c" / "llm_cache.sqlite"
    assert s.projects_dir == tmp_path / "p" and s.embedder_path == "/e" and s.local_threads == 3
    assert Settings.from_env({**env, "OPENAI_API_KEY": "k1"}).api_key == "k1"  # OPENAI_API_KEY wins
    assert Settings.from_env({**env, "PROMPTMIX_CACHE": str(tmp_path / "x.sqlite")}).llm_cache_path == tmp_path / "x.sqlite"
    # the CLI accepts PROMPTMIX_API_KEY like the app
    from promptmix_core.llm import resolve_llm_config

    monkeypatch.setenv("PROMPTMIX_API_KEY", "sk-promptmix-only")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # the key goes only to its own endpoint
    cfg = resolve_llm_config(base_url="http://127.0.0.1:9/v1", model="m")
    assert cfg.api_key == "sk-promptmix-only"
    assert get_settings().api_key_source == "PROMPTMIX_API_KEY"


def test_every_promptmix_variable_is_documented_and_read_only_by_settings():
    readme = (ROOT / "README.md").read_text("utf-8")
    for name in VARIABLES:
        assert f"`{name}`" in readme, name
    found = set()
    for p in (ROOT / "promptmix_core").rglob("*.py"):
        src = p.read_text("utf-8")
        for tok in ("PROMPTMIX_", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
            if tok not in src:
                continue
        tree = ast.parse(src)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
                line = src.splitlines()[node.lineno - 1]
                if "PROMPTMIX_" in line or "OPENAI_" in line:
                    found.add(f"{p.relative_to(ROOT)}:{node.lineno}")
    # settings.py reads os.environ with names from VARIABLES; jobs/worker pass the job key in the child's env
    assert {f.split(":")[0] for f in found} <= {"promptmix_core/settings.py"}, found


def test_the_llm_cache_is_the_same_file_for_every_entry_point(monkeypatch, tmp_path):
    from promptmix_core.llm import default_cache_path

    monkeypatch.setenv("PROMPTMIX_CACHE", str(tmp_path / "one.sqlite"))
    assert default_cache_path() == paths.llm_cache_path() == tmp_path / "one.sqlite"
    for module in ("cli/_common.py", "pipeline.py", "experiment.py"):
        src = (ROOT / "promptmix_core" / module).read_text("utf-8")
        assert "llm_cache_path()" in src, module


def test_the_llm_cache_table_is_declared_once():
    hits = [p.name for p in (ROOT / "promptmix_core").rglob("*.py")
            if "CREATE TABLE IF NOT EXISTS llm_cache" in p.read_text("utf-8")]
    assert hits == ["cache.py"]


# ------------------------------------------------------------------------------ paths, device, alpha
def test_models_folder_has_one_spelling(tmp_path):
    p = tmp_path / "demo.pmx"
    assert paths.models_dir(p) == tmp_path / "demo.models"
    assert paths.run_model_dir(p, 3) == tmp_path / "demo.models" / "run-3"
    assert projects.project_side_dirs(p) == [tmp_path / "demo.models", tmp_path / "demo.pmx.logs"]
    spelled = [q.name for q in list((ROOT / "promptmix_core").rglob("*.py")) + list((ROOT / "app_pages").glob("*.py"))
               if '".models"' in q.read_text("utf-8") and q.name != "paths.py"]
    assert not spelled, spelled


def test_bundled_model_paths_have_one_rule(monkeypatch):
    from promptmix_core.embed import minilm_path
    from promptmix_core.training.config import bundled_model_path, resolve_model_name

    assert bundled_model_path() == paths.bundled_minilm_path() == resolve_model_name(None)
    monkeypatch.setenv("PROMPTMIX_EMBEDDER", "/somewhere/else")
    assert minilm_path() == "/somewhere/else"
    monkeypatch.delenv("PROMPTMIX_EMBEDDER")
    assert minilm_path() == paths.bundled_minilm_path()


def test_one_device_probe():
    from promptmix_core import device, jobs
    from promptmix_core.training import model_io

    assert jobs.device_info is device.device_info and model_io.pick_device is device.pick_device
    info = device.device_info()
    assert info["device"] == device.pick_device("auto")
    src = (ROOT / "app_pages" / "_ui.py").read_text("utf-8")
    assert "promptmix_core.device import device_info" in src and "torch.cuda" not in src


def test_one_alpha_formula():
    from promptmix_core import alpha, generate

    assert generate.sample_alpha is alpha.sample_alpha
    draws = alpha.alpha_preview(2000, seed=1)
    assert set(draws) <= set(alpha.ALPHA_BINS) and 0.8 < sum(draws) / len(draws) < 0.9  # E = 0.5 + 0.5 * 5/7
    rng = random.Random(5)
    assert alpha.sample_alpha(rng) == round((0.5 + 0.5 * random.Random(5).betavariate(5, 2)) * 20) / 20
    page = (ROOT / "app_pages" / "2_generate.py").read_text("utf-8")
    assert "alpha_preview" in page and "beta(5, 2" not in page


# ------------------------------------------------------------------------------ example shape
def test_one_example_shape_for_store_rows_generated_examples_and_dicts(tmp_path, small_task):
    from promptmix_core.example import example_view
    from promptmix_core.generate import GeneratedExample
    from promptmix_core.store import ProjectStore
    from promptmix_core.task import normalize_text
    from promptmix_core.training.data import example_label

    g = GeneratedExample(text="hi there", label="card_lost", intended_label="card_lost", mixed_with="pin_blocked",
                         alpha=0.8, mixup=True, slot="s")
    d = {"text": "hi there", "intended_label": "card_lost", "mixed_with": "pin_blocked", "alpha": 0.8,
         "label": "card_lost"}
    store = ProjectStore(tmp_path / "p.pmx")
    store.save_task(small_task)
    job = store.create_job("generate", {})
    store.add_examples([{"job_id": job, "slot": "s", "text": "hi there", "norm_text": normalize_text("hi there"),
                         "intended_label": "card_lost", "mixed_with": "pin_blocked", "alpha": 0.8, "mixup": True}])
    row = store.list_examples(job_id=job)[0]
    views = [example_view(x) for x in (g, d, row)]
    import dataclasses

    assert views[0] == views[1] == dataclasses.replace(views[2], review_status=None)  # only the store reviews
    assert views[2].review_status == "pending"
    assert {example_label(x, "a1") for x in (g, d, row)} == {("card_lost", "")}
    for p in ("training/data.py", "relabel.py"):
        assert "def _get(" not in (ROOT / "promptmix_core" / p).read_text("utf-8"), p


# ------------------------------------------------------------------------------ task validation
def test_task_validation_has_one_rule_set():
    from promptmix_core.errors import TaskError
    from promptmix_core.task import ClassSpec, Task, validate

    task = Task("t", [ClassSpec("a", "", []), ClassSpec("A", "", ["x", "x"]), ClassSpec("", "", ["y" * 20_001])])
    with pytest.raises(TaskError) as info:
        validate(task)
    task_level, per_field = projects.field_problems(task)
    # the same problems, placed at their fields
    assert len(info.value.problems) == sum(len(v) for v in per_field.values()) + len(task_level) == 4
    assert set(per_field) == {(0, "examples"), (1, "name"), (2, "name"), (2, "examples")}
    warn = projects.field_warnings(task)
    assert (1, "examples") in warn and (0, "description") in warn
