import json

import pytest

from promptmix_core.task import (
    ClassSpec, Task, TaskError, load_task, normalize_text, parse_task_text, save_task, validate,
)


def write(tmp_path, name, data, mode="w"):
    p = tmp_path / name
    if isinstance(data, bytes):
        p.write_bytes(data)
    else:
        p.write_text(data, encoding="utf-8")
    return p


def test_json_and_yaml_task_files_load(tmp_path, small_task):
    j = tmp_path / "t.json"
    save_task(small_task, j)
    y = tmp_path / "t.yaml"
    save_task(small_task, y)
    assert load_task(j).to_dict() == small_task.to_dict()
    assert load_task(y).to_dict() == small_task.to_dict()


def test_csv_import_with_descriptions_and_k(datasets_dir):
    task = load_task(datasets_dir / "trec6" / "train.csv", k=2, seed=3)
    assert task.class_names == ["abbreviation", "description", "entity", "human", "location", "numeric"]
    assert all(len(c.examples) == 2 for c in task.classes)
    assert task.get("numeric").description.startswith("questions asking for a number")
    again = load_task(datasets_dir / "trec6" / "train.csv", k=2, seed=3)
    assert again.to_dict() == task.to_dict()  # seeded
    other = load_task(datasets_dir / "trec6" / "train.csv", k=2, seed=4)
    assert other.to_dict() != task.to_dict()


def test_jsonl_import(tmp_path):
    rows = [{"text": f"t{i}", "label": "a" if i % 2 else "b"} for i in range(6)]
    p = write(tmp_path, "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    task = load_task(p)
    assert task.class_names == ["a", "b"] and len(task.get("a").examples) == 3


@pytest.mark.parametrize(
    "classes, fragment",
    [
        ([{"name": "a", "examples": ["x"]}], "at least 2 classes"),
        ([{"name": "", "examples": ["x"]}, {"name": "b", "examples": ["y"]}], "blank name"),
        ([{"name": "a", "examples": ["x"]}, {"name": "a", "examples": ["y"]}], "appears more than once"),
        ([{"name": "Card Lost", "examples": ["x"]}, {"name": "card_lost", "examples": ["y"]}], "differ only in case"),
        ([{"name": "a", "examples": []}, {"name": "b", "examples": ["y"]}], "has no seed examples"),
        ([{"name": "a", "examples": ["x" * 100_000]}, {"name": "b", "examples": ["y"]}], "characters; the limit"),
    ],
)
def test_validation_gives_one_clear_message_per_problem(classes, fragment):
    with pytest.raises(TaskError) as err:
        Task.from_dict({"name": "t", "classes": classes})
    assert any(fragment in p for p in err.value.problems), err.value.problems


def test_several_problems_reported_together():
    with pytest.raises(TaskError) as err:
        Task.from_dict({"classes": [{"name": "a", "examples": []}, {"name": "A ", "examples": []}]})
    assert len(err.value.problems) >= 3


@pytest.mark.parametrize(
    "name, data, fragment",
    [
        ("e.csv", b"", "is empty"),
        ("m.csv", b"sentence,category\nhi,a\n", "missing the column(s) text, label"),
        ("bad.csv", b"text,label\n\xff\xfehello\x81,a\n", None),
        ("x.json", b"{not json", "not valid JSON"),
        ("x.yaml", b"- just\n- a list\n", "neither a JSON nor a YAML task"),
        ("x.yaml", b"key: [unclosed", "neither JSON nor valid YAML"),
    ],
)
def test_bad_files_give_clear_messages(tmp_path, name, data, fragment):
    p = write(tmp_path, name, data)
    with pytest.raises(TaskError) as err:
        load_task(p)
    msg = str(err.value)
    assert "Traceback" not in msg
    if fragment:
        assert fragment in msg
    else:
        assert "UTF-8" in msg or "UTF" in msg or "at least 2" in msg


def test_non_utf8_bytes_named():
    from promptmix_core.task import decode_bytes

    with pytest.raises(TaskError, match="not valid UTF-8 .*line 2"):
        decode_bytes(b"text,label\n\x81bad,a\n", "f.csv")


def test_bom_emoji_and_rtl_kept(tmp_path):
    data = "text,label\nI love it 😀,pos\nمرحبا بالعالم,neg\nok,pos\nשלום,neg\n".encode("utf-8-sig")
    task = load_task(write(tmp_path, "u.csv", data))
    assert "I love it 😀" in task.get("pos").examples
    assert "مرحبا بالعالم" in task.get("neg").examples and "שלום" in task.get("neg").examples


def test_nan_and_blank_texts_skipped(tmp_path):
    p = write(tmp_path, "n.csv", "text,label\n,a\nNaN?,a\nhello,a\n  ,b\nworld,b\n")
    task = load_task(p)
    assert task.get("b").examples == ["world"]


def test_k_larger_than_class_is_an_error(tmp_path):
    p = write(tmp_path, "s.csv", "text,label\na1,a\nb1,b\nb2,b\n")
    with pytest.raises(TaskError, match="only 1 examples; --k 2"):
        load_task(p, k=2)


def test_normalize_text_ignores_case_spacing_and_end_punctuation():
    assert normalize_text('  "Hello   World!" ') == normalize_text("hello world")


def test_validate_returns_warnings_for_missing_descriptions():
    t = Task("t", [ClassSpec("a", "", ["x"]), ClassSpec("b", "d", ["y"])])
    assert any("no description" in w for w in validate(t))


def test_parse_task_text_json_roundtrip(small_task):
    assert parse_task_text(small_task.to_json()).class_names == small_task.class_names
