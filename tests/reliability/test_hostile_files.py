"""Hostile files, round two: YAML aliases that expand to a billion values, JSON and YAML nested
100,000 deep, labels that are not texts, class names that differ only in invisible or look-alike
characters, and a large CSV (read as a stream, in bounded memory)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from promptmix_core import cli, projects
from promptmix_core import task as task_mod
from promptmix_core.task import ClassSpec, Task, TaskError, load_task, validate

ROOT = Path(__file__).resolve().parents[2]

# the classic "billion laughs": 9 levels of 9 aliases, 10^9 values once expanded (431 bytes here)
LAUGHS = "\n".join(
    ['lol: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"l{i}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    + ["name: laughs", "classes:", "  - {name: a, examples: *i}", "  - {name: b, examples: [x]}"]
) + "\n"


def _write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return p


def _check(path: Path, capsys, *extra: str) -> tuple[int, str]:
    code = cli.main(["check", str(path), *extra])
    return code, capsys.readouterr().err


# ------------------------------------------------------------------------------- YAML aliases
def test_billion_laughs_is_refused_in_bounded_memory(tmp_path, capsys):
    assert len(LAUGHS) < 700
    p = _write(tmp_path, "laughs.yaml", LAUGHS)
    tracemalloc.start()
    try:
        code, err = _check(p, capsys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: laughs.yaml: its YAML aliases (*name) expand to more than 1,000,000 values at line")
    assert "(a 'billion laughs' file?); write the values out instead" in err
    assert peak < 5_000_000, peak  # megabytes, not gigabytes
    with pytest.raises(TaskError, match="expand to more than 1,000,000 values"):  # the app's import
        projects.import_task_bytes(LAUGHS.encode(), "laughs.yaml")


# 50,000 aliases of one 20,000-character seed: 200 KB of YAML, a billion characters once expanded (issue 23,
# item 7: it passed the alias count and became a 1 GB task)
AMPLIFIED = ("name: amplified\nseed: &s " + "x" * 20_000 + "\nclasses:\n  - name: a\n    examples: ["
             + ", ".join(["*s"] * 50_000) + "]\n  - name: b\n    examples: [y]\n")


def test_aliases_of_a_long_string_are_refused_by_their_expanded_size(tmp_path, capsys):
    assert len(AMPLIFIED) < 250_000
    p = _write(tmp_path, "amp.yaml", AMPLIFIED)
    tracemalloc.start()
    try:
        code, err = _check(p, capsys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 2 and "Traceback" not in err
    assert err.strip().startswith("error: amp.yaml: its YAML aliases (*name) expand to more than 20,000,000 "
                                  "characters at line 5"), err
    assert len(err.strip().splitlines()) == 1
    assert peak < 20_000_000, peak  # the file's size, not a gigabyte
    with pytest.raises(TaskError, match="expand to more than 20,000,000 characters"):  # the app's import
        projects.import_task_bytes(AMPLIFIED.encode(), "amp.yaml")


def test_a_few_aliases_are_still_fine(tmp_path):
    p = _write(tmp_path, "ok.yaml", "desc: &d shared description\nclasses:\n"
                                    "  - {name: a, description: *d, examples: [x]}\n"
                                    "  - {name: b, description: *d, examples: [y]}\n")
    assert [c.description for c in load_task(p).classes] == ["shared description"] * 2


# ------------------------------------------------------------------------------ deep nesting
DEEP = 100_000


@pytest.mark.parametrize("name, data, message", [
    ("deep.json", "[" * DEEP + "]" * DEEP, "deep.json is nested too deeply (more than 32 levels)"),
    ("deep50.json", '{"name": "x", "classes": ' + "[" * 50 + "]" * 50 + "}",
     "deep50.json is nested too deeply (more than 32 levels)"),
    ("deep.yaml", "classes: " + "[" * DEEP + "]" * DEEP + "\n",
     "deep.yaml is nested too deeply (more than 32 levels) at line 1"),
    ("block.yaml", "".join(f"{' ' * i}k{i}:\n" for i in range(40)) + " " * 40 + "v\n",
     "block.yaml is nested too deeply (more than 32 levels) at line 33"),
    ("deep.jsonl", '{"text": "a", "label": "x"}\n{"text": ' + "[" * DEEP + "]" * DEEP + ', "label": "y"}\n',
     "deep.jsonl: line 2 is nested too deeply"),
])
def test_deep_nesting_is_refused_never_a_recursion_error(tmp_path, capsys, name, data, message):
    code, err = _check(_write(tmp_path, name, data), capsys)
    assert code == 2 and "Traceback" not in err and "RecursionError" not in err
    assert err.strip() == f"error: {message}"


def test_a_deep_descriptions_file_is_refused(tmp_path, capsys):
    _write(tmp_path, "classes.json", "[" * DEEP + "]" * DEEP)
    p = _write(tmp_path, "rows.csv", "text,label\nhi,a\nho,b\n")
    code, err = _check(p, capsys)
    assert code == 2 and err.strip() == "error: classes.json is nested too deeply (more than 32 levels)"


def test_the_task_page_shows_hostile_uploads_as_messages(tmp_path, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    folder = tmp_path / "projects"
    monkeypatch.setenv(projects.ENV_DIR, str(folder))
    monkeypatch.chdir(tmp_path)
    projects.create_project("p", folder)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.query_params["project"] = "p"
    at.run()
    at.switch_page("app_pages/1_task.py")
    at.run()
    for name, data, words in [
        ("laughs.yaml", LAUGHS.encode(), "expand to more than 1,000,000 values"),
        ("deep.json", ("[" * DEEP + "]" * DEEP).encode(), "nested too deeply"),
        ("amp.yaml", AMPLIFIED.encode(), "expand to more than 20,000,000 characters"),
        ("labels.jsonl", b'{"text": "a", "label": ["l"]}\n', "line 1: the label is a list"),
    ]:
        at.file_uploader[0].set_value((name, data, "application/octet-stream"))
        at.run()
        assert not at.exception, (name, at.exception)
        said = " ".join(str(m.value) for m in [*at.error, *at.markdown]).replace("\\", "")
        assert f"{name} cannot be imported" in said and words in said, (name, said[:500])


# --------------------------------------------------------------------------- labels must be texts
@pytest.mark.parametrize("name, data, message", [
    ("list.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": ["l"]}\n',
     "list.jsonl: line 2: the label is a list; labels must be texts (or numbers)"),
    ("dict.jsonl", '{"text": "a", "label": {"k": 1}}\n', "dict.jsonl: line 1: the label is a mapping (an object)"),
    ("bool.jsonl", '{"text": "a", "label": true}\n{"text": "b", "label": "x"}\n',
     "bool.jsonl: line 1: the label is true/false (true); labels must be texts (or numbers)"),
    ("text.jsonl", '{"text": ["a"], "label": "x"}\n', "text.jsonl: line 1: the text is a list"),
    ("mixed.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": "2"}\n{"text": "c", "label": "1"}\n',
     "mixed.jsonl: line 3: the label '1' (text) and the label on line 1 (number) would become the same class '1'"),
    ("name.json", '{"name": "t", "classes": [{"name": ["a"], "examples": ["x"]}, {"name": "b", "examples": ["y"]}]}',
     "class #1: the name is a list; a class name must be a text (put it in quotes)"),
    ("yes.yaml", "name: t\nclasses:\n  - name: a\n    examples: [x]\n  - name: yes\n    examples: [y]\n",
     "class #2 (line 5): the name is true/false (true); a class name must be a text (put it in quotes)"),
    ("date.yaml", "classes:\n  - name: a\n    examples:\n      - fine\n      - 2024-01-31\n  - name: b\n    examples: [y]\n",
     "class a (line 5): example 2 is a date (2024-01-31); examples must be texts"),
])
def test_labels_and_names_must_be_texts(tmp_path, capsys, name, data, message):
    code, err = _check(_write(tmp_path, name, data), capsys)
    assert code == 2 and "Traceback" not in err
    assert f"error: {message}" in err


def test_numbers_are_converted_explicitly(tmp_path):
    p = _write(tmp_path, "nums.jsonl", '{"text": 12, "label": 1}\n{"text": "b", "label": 2}\n{"text": 2.5, "label": 1}\n')
    t = load_task(p)
    assert {c.name: c.examples for c in t.classes} == {"1": ["12", "2.5"], "2": ["b"]}
    y = _write(tmp_path, "nums.yaml", "classes:\n  - {name: 1, examples: [10, x]}\n  - {name: 2.5, examples: [y]}\n")
    assert [(c.name, c.examples) for c in load_task(y).classes] == [("1", ["10", "x"]), ("2.5", ["y"])]


def test_every_bad_row_is_listed_up_to_a_limit(tmp_path, capsys):
    rows = "".join(f'{{"text": "t{i}", "label": [1]}}\n' for i in range(30))
    code, err = _check(_write(tmp_path, "many.jsonl", rows), capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 21 and lines[-1] == "error: ... and 10 more problems"


# ------------------------------------------------------------------------------- Unicode names
def _names(*names: str) -> Task:
    return Task(name="t", classes=[ClassSpec(n, "", [f"example {i}"]) for i, n in enumerate(names)])


@pytest.mark.parametrize("a, b, message", [
    ("cardlost", "card\u200blost",
     "class names 'cardlost' and 'card<U+200B>lost' differ only in invisible characters"),
    ("refund", "re\u00adfund\u200d", "differ only in invisible characters"),
    ("pay", "p\u0430y", "class names 'pay' and 'p\u0430y' look alike ('pay' and 'p<U+0430>y' mix letters"),
    ("top up", "t\u043ep up", "look alike"),
    ("Card", "\uff23\uff41\uff52\uff44", "differ only in case, spaces or punctuation"),  # full-width: NFKC
])
def test_names_are_compared_after_nfkc_invisible_removal_and_case_folding(a, b, message):
    with pytest.raises(TaskError) as info:
        validate(_names(a, b, "other"))
    assert any(message in p for p in info.value.problems), info.value.problems
    # the Task page marks the field at fault the same way
    _, per_field = projects.field_problems(_names(a, b, "other"))
    assert per_field.get((1, "name")), per_field


def test_distinct_names_in_other_scripts_are_fine_and_mixed_scripts_are_flagged():
    warnings = validate(_names("оплата", "возврат", "refund", "p\u0430yment"))
    assert any("'p\u0430yment' mixes Cyrillic and Latin letters ('p<U+0430>yment')" in w for w in warnings)
    assert not any("mixes" in w for w in warnings if "оплата" in w or "refund" in w)
    with pytest.raises(TaskError, match="blank name"):
        validate(_names("\u200b\u200c", "b"))


def test_a_labelled_file_with_look_alike_labels_is_refused(tmp_path, capsys):
    p = _write(tmp_path, "look.csv", "text,label\nhello,pay\nbye,p\u0430y\nmore,other\n")
    code, err = _check(p, capsys)
    assert code == 2 and "look alike" in err


# ------------------------------------------------------------------------------- large files
@pytest.mark.slow
def test_a_large_csv_is_read_as_a_stream(tmp_path):
    """Peak Python memory while importing an 8 MB CSV stays under 3x the file's size (the same reader
    keeps a 200 MB CSV at 1.6x: see docs/RELIABILITY.md for the measured figure)."""
    rows = ["text,label"] + [f"message number {i} about my card and the account,class_{i % 40}" for i in range(130_000)]
    p = _write(tmp_path, "big.csv", "\n".join(rows) + "\n")
    size = p.stat().st_size
    assert size > 7_000_000
    tracemalloc.start()
    try:
        t = load_task(p, k=5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(t.classes) == 40 and t.k == 5
    assert peak < 3 * size, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"
    # the same draw as reading the whole file at once (reproducible seeds across versions)
    whole = task_mod.task_from_rows(task_mod.read_labelled_rows(p.read_text("utf-8"), "csv", "big.csv"), k=5,
                                    name="big")
    assert [c.examples for c in whole.classes] == [c.examples for c in t.classes]


def test_the_size_message_is_right(tmp_path, capsys):
    p = tmp_path / "huge.csv"
    with open(p, "wb") as fh:  # sparse: 210 MB on paper, nothing on disk, never read
        fh.truncate(210_000_000)
    code, err = _check(p, capsys)
    assert code == 2 and err.strip() == "error: huge.csv is 210 MB; the limit is 200 MB"
    with open(p, "wb") as fh:
        fh.truncate(200_040_000)
    code, err = _check(p, capsys)
    assert err.strip() == "error: huge.csv is 200.0 MB; the limit is 200 MB"
