"""1 · Task: edit classes, descriptions and seeds; validation next to the field; save; discard."""

from __future__ import annotations

import json

from app_helpers import by_label, texts, unescape

from promptmix_core import projects
from promptmix_core.demo import DEMO_NAME


def _field(at, label_start: str, index: int = 0):
    found = [w for w in list(at.text_input) + list(at.text_area) if w.label.startswith(label_start)]
    return found[index]


def _save(at):
    next(b for b in at.button if b.label == "Save task").click()
    at.run()
    assert not at.exception, at.exception


def test_task_page_shows_the_demo(make_app):
    at = make_app()
    assert [m.value for m in at.metric[:3]] == ["5", "10", "2"]
    names = [w.value for w in at.text_input if w.label.startswith("Class ")]
    assert names[:2] == ["card_lost_or_stolen", "declined_card_payment"] and len(names) == 5
    seeds = [w.value for w in at.text_area if w.label.startswith("Seed examples")]
    assert seeds[0].count("\n") == 1
    assert any("2 seed examples" in c.value for c in at.caption)


def test_edit_and_save(make_app, projects_dir):
    at = make_app()
    _field(at, "Description", 0).input("Lost, stolen or missing cards.")
    _field(at, "Seed examples", 0).input("my card is gone\nsomeone took my card\nI can't find my card")
    at.run()
    assert at.metric[3].value == "Unsaved changes"
    _save(at)
    assert "Saved the task: 5 classes, 11 seeds" in texts(at)
    task = projects.open_project(DEMO_NAME, projects_dir).load_task()
    assert task.classes[0].description == "Lost, stolen or missing cards."
    assert task.classes[0].examples == ["my card is gone", "someone took my card", "I can't find my card"]
    assert at.metric[3].value == "Saved"


def test_errors_appear_next_to_the_field_and_nothing_is_saved(make_app, projects_dir):
    at = make_app()
    before = projects.open_project(DEMO_NAME, projects_dir).load_task().to_json()
    _field(at, "Class 2 name").input("")
    _field(at, "Seed examples", 2).input("   \n  ")
    _field(at, "Class 4 name").input("Card Lost Or Stolen")
    _save(at)
    errors = [e.value for e in at.error]
    assert "Not saved: fix the problems marked below." in errors
    assert "Give this class a name." in errors
    assert "Add at least one seed example (one per line)." in errors
    assert any("differ only in case" in e for e in errors)
    assert projects.open_project(DEMO_NAME, projects_dir).load_task().to_json() == before
    # fixing the fields clears the messages and saves
    _field(at, "Class 2 name").input("declined_card_payment")
    _field(at, "Seed examples", 2).input("where is my transfer")
    _field(at, "Class 4 name").input("exchange_rate")
    _save(at)
    assert not [e for e in at.error]
    assert "Saved the task" in texts(at)


def test_add_and_remove_classes(make_app, projects_dir):
    at = make_app()
    next(b for b in at.button if b.label == "Add a class").click()
    at.run()
    assert len([w for w in at.text_input if w.label.startswith("Class ")]) == 6
    _field(at, "Class 6 name").input("pin_blocked")
    _field(at, "Description", 5).input("The PIN is blocked after wrong attempts.")
    _field(at, "Seed examples", 5).input("my PIN is blocked")
    _save(at)
    assert len(projects.open_project(DEMO_NAME, projects_dir).load_task().classes) == 6
    # remove the first class: a warning names the class generated examples still use
    next(b for b in at.button if b.label == "Remove").click()
    at.run()
    assert len([w for w in at.text_input if w.label.startswith("Class ")]) == 5
    _save(at)
    assert any("card_lost_or_stolen" in unescape(w.value) for w in at.warning)
    task = projects.open_project(DEMO_NAME, projects_dir).load_task()
    assert "card_lost_or_stolen" not in task.class_names


def test_a_task_needs_two_classes(make_app):
    at = make_app()
    for _ in range(4):
        next(b for b in at.button if b.label == "Remove").click()
        at.run()
    _save(at)
    assert any("at least 2 classes" in e.value for e in at.error)


def test_discard_changes(make_app):
    at = make_app()
    _field(at, "Class 1 name").input("something_else")
    at.run()
    next(b for b in at.button if b.label == "Discard changes").click()
    at.run()
    assert _field(at, "Class 1 name").value == "card_lost_or_stolen"
    assert at.metric[3].value == "Saved"


def test_unsaved_edits_survive_a_page_switch(make_app):
    at = make_app()
    _field(at, "Description", 1).input("edited but not saved")
    at.run()
    at.switch_page("app_pages/3_review.py")
    at.run()
    at.switch_page("app_pages/1_task.py")
    at.run()
    assert _field(at, "Description", 1).value == "edited but not saved"
    assert at.metric[3].value == "Unsaved changes"


def test_new_project_starts_blank_and_saves(make_app, projects_dir):
    projects.ensure_demo(projects_dir)
    projects.create_project("blank", projects_dir).close()
    at = make_app(project="blank")
    assert at.metric[3].value == "Not saved yet"
    _field(at, "Class 1 name").input("positive")
    _field(at, "Seed examples", 0).input("great product")
    _field(at, "Class 2 name").input("negative")
    _field(at, "Seed examples", 1).input("awful service")
    _save(at)
    task = projects.open_project("blank", projects_dir).load_task()
    assert task.class_names == ["positive", "negative"]
    assert any("No description" in c.value for c in at.caption)  # advice, not an error


def test_task_file_tab_shows_json(make_app):
    at = make_app()
    doc = json.loads(at.code[0].value)
    assert doc["name"] == "Banking support" and len(doc["classes"]) == 5


def test_import_tab_explains_the_formats(make_app):
    at = make_app()
    assert "text" in texts(at) and "label" in texts(at)
    assert by_label(at.number_input, "Keep at most this many seeds per class (0 = keep all)").value == 0


def test_a_reloaded_draft_replaces_every_field(make_app, projects_dir):
    """Discarding (or importing) loads a new draft: the task name field follows too."""
    at = make_app()
    by_label(at.text_input, "Task name").input("renamed")
    at.run()
    next(b for b in at.button if b.label == "Discard changes").click()
    at.run()
    assert by_label(at.text_input, "Task name").value == "Banking support"


def test_test_set_tab_shows_and_removes_the_test_set(make_app, demo_store):
    at = make_app()
    assert "No test set" in texts(at)
    demo_store.set_test_set([{"text": "my card was taken", "label": "card_lost_or_stolen"},
                             {"text": "what rate for yen", "label": "exchange_rate"}], name="real.csv")
    at.run()
    page = texts(at)
    assert "Test set: 2 labelled examples from real.csv" in page.replace("**", "")
    assert "No test examples for" in page  # three classes have none: their recall cannot be measured
    next(b for b in at.button if b.label == "Remove the test set").click()
    at.run()
    assert demo_store.test_set_info() is None
    assert "Removed the test set." in texts(at)
