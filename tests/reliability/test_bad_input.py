"""Bad input: each problem gives one clear message (CLI: exit code 2, no traceback) and loses nothing;
odd but valid input (BOM, emoji, right-to-left text, blank rows) works."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from rel_helpers import fast_client, run_cli
from promptmix_core import cli, task as task_mod
from promptmix_core.generate import GenerationConfig, generate, parse_examples
from promptmix_core.llm import LLMConfig, LLMConfigError
from promptmix_core.store import ProjectStore
from promptmix_core.task import MAX_TEXT_CHARS, TaskError, load_task, normalize_text


def _write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return p


def _check(tmp_path, capsys, name, data):
    """Run ``promptmix check`` in-process; return (exit code, stderr)."""
    p = _write(tmp_path, name, data)
    code = cli.main(["check", str(p)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


TWO_CLASSES = "text,label\nI lost my card,card_lost\nI want a refund,refund_request\n"


# (file name, content, expected message). Each is refused with exit code 2.
REFUSED = [
    ("empty.csv", b"", "empty.csv is empty"),
    ("blank.csv", b"  \n\n  ", "blank.csv is empty"),
    ("empty.json", b"", "empty.json is empty"),
    ("misnamed.csv", "sentence,category\nhi,a\nho,b\n", "missing the column(s) text, label; it needs 'text' and 'label' (found: category, sentence)"),
    ("missing.csv", "text\nhi\nho\n", "missing the column(s) label"),
    ("header-only.csv", "text,label\n", "has no rows with both a text and a label"),
    ("latin1.csv", "text,label\ncafé,a\nthé,b\n".encode("latin-1"), "is not valid UTF-8 (bad byte at line 2); save it as UTF-8"),
    ("latin1.json", '{"name": "x", "classes": [{"name": "café"}]}'.encode("cp1252"), "is not valid UTF-8"),
    ("single.csv", "text,label\nhello,a\nbye,a\n", "a task needs at least 2 classes; it has 1"),
    ("case.csv", "text,label\nhello,Card Lost\nbye,card_lost\n", "'Card Lost' and 'card_lost' differ only in case, spaces or punctuation"),
    ("spaces.json", json.dumps({"name": "x", "classes": [{"name": "card lost", "examples": ["a"]},
                                                          {"name": "card  lost", "examples": ["b"]}]}),
     "differ only in case, spaces or punctuation"),
    ("dup.json", json.dumps({"name": "x", "classes": [{"name": "a", "examples": ["x"]}, {"name": "a", "examples": ["y"]}]}),
     "class name 'a' appears more than once"),
    ("blank-name.json", json.dumps({"name": "x", "classes": [{"name": "  ", "examples": ["x"]}, {"name": "b", "examples": ["y"]}]}),
     "class #1 has a blank name"),
    ("no-examples.json", json.dumps({"name": "x", "classes": [{"name": "a", "examples": ["x"]}, {"name": "b", "examples": []}]}),
     "class 'b' has no seed examples (it needs at least one)"),
    ("nan-only.json", '{"name": "x", "classes": [{"name": "a", "examples": ["x"]}, {"name": "b", "examples": [NaN, null, "  "]}]}',
     "class 'b' has no seed examples"),
    ("no-classes.json", '{"name": "x"}', "the task has no 'classes' list"),
    ("html.json", "<html><body>not a task</body></html>", "neither a JSON nor a YAML task"),
    ("words.yaml", "just some words\n", "neither a JSON nor a YAML task"),
    ("broken.json", '{"name": "x", "classes": [', "is not valid JSON"),
    ("broken.yaml", "name: x\nclasses:\n  - name: a\n    examples: [x\n", "neither JSON nor valid YAML"),
    ("binary.json", bytes(range(256)) * 4, "is not valid UTF-8"),
    ("list.jsonl", '["text", "label"]\n', "line 1 is not a JSON object"),
    ("bad.jsonl", '{"text": "a", "label": "x"}\nnot json\n', "line 2 is not valid JSON"),
    ("long-seed.csv", f"text,label\n{'w' * 100_000},a\nshort,b\n",
     f"class 'a' has a seed example of 100,000 characters; the limit is {MAX_TEXT_CHARS:,}"),
]


@pytest.mark.parametrize("name, data, message", REFUSED, ids=[r[0] for r in REFUSED])
def test_bad_task_input_is_refused_with_one_clear_message(tmp_path, capsys, name, data, message):
    code, err = _check(tmp_path, capsys, name, data)
    assert code == 2
    assert message in err
    lines = [line for line in err.splitlines() if line]
    assert lines and all(line.startswith("error: ") for line in lines)
    assert len(err) < 1000  # a message, not a dump of the file
    with pytest.raises(TaskError):
        load_task(tmp_path / name)


def test_every_problem_is_listed_not_only_the_first(tmp_path, capsys):
    data = json.dumps({"name": "x", "classes": [
        {"name": "", "examples": ["x"]}, {"name": "b", "examples": []}, {"name": "B", "examples": ["z"]}]})
    code, err = _check(tmp_path, capsys, "many.json", data)
    assert code == 2
    assert "blank name" in err and "'b' has no seed examples" in err and "differ only in case" in err


def test_a_missing_file_and_a_folder(tmp_path, capsys):
    assert cli.main(["check", str(tmp_path / "nope.csv")]) == 2
    assert "file not found" in capsys.readouterr().err
    (tmp_path / "dir.csv").mkdir()
    assert cli.main(["check", str(tmp_path / "dir.csv")]) == 2
    assert "is a folder, not a file" in capsys.readouterr().err


def test_a_byte_order_mark_works(tmp_path, capsys):
    for name, data in [("bom8.csv", b"\xef\xbb\xbf" + TWO_CLASSES.encode()),
                       ("bom16.csv", TWO_CLASSES.encode("utf-16")),  # BOM + UTF-16 (Excel "Unicode text")
                       ("bom.json", b"\xef\xbb\xbf" + json.dumps({"name": "x", "classes": [
                           {"name": "a", "examples": ["x"]}, {"name": "b", "examples": ["y"]}]}).encode())]:
        code, err = _check(tmp_path, capsys, name, data)
        assert code == 0, err
        t = load_task(tmp_path / name)
        assert len(t.classes) == 2 and not any(n.startswith("\ufeff") for n in t.class_names)


def test_blank_nan_and_duplicate_rows_are_skipped_not_fatal(tmp_path):
    p = _write(tmp_path, "rows.jsonl", "\n".join([
        '{"text": null, "label": "a"}', '{"text": NaN, "label": "a"}', '{"text": "   ", "label": "a"}',
        '{"text": "kept a", "label": "a"}', '{"text": "kept a", "label": "a"}', '{"text": "kept b", "label": "b"}',
        '{"text": "no label", "label": ""}', "", '{"text": "kept b2", "label": "b"}',
    ]))
    t = load_task(p)
    assert {c.name: c.examples for c in t.classes} == {"a": ["kept a"], "b": ["kept b", "kept b2"]}
    q = _write(tmp_path, "rows.csv", "text,label\n,a\nkept a,a\nkept b,b\nno label,\n\n")
    assert {c.name: c.examples for c in load_task(q).classes} == {"a": ["kept a"], "b": ["kept b"]}


def test_an_upload_over_the_size_limit_is_refused_before_reading(tmp_path, capsys, monkeypatch):
    from promptmix_core import labelled  # the one labelled-file reader holds the limit

    monkeypatch.setattr(labelled, "MAX_FILE_BYTES", 1_000_000)
    p = _write(tmp_path, "huge.csv", TWO_CLASSES + ("filler text,card_lost\n" * 150_000))
    code = cli.main(["check", str(p)])
    err = capsys.readouterr().err
    assert code == 2 and "huge.csv is 3 MB; the limit is 1 MB" in err


def test_k_larger_than_a_class_is_clear(tmp_path, capsys):
    p = _write(tmp_path, "k.csv", TWO_CLASSES)
    assert cli.main(["check", str(p), "--k", "3"]) == 2
    assert "has only 1 examples; --k 3 needs 3" in capsys.readouterr().err


def test_cli_bad_input_in_a_real_process_has_no_traceback(tmp_path):
    p = _write(tmp_path, "latin1.csv", "text,label\ncafé,a\n".encode("latin-1"))
    r = run_cli("generate", str(p), "--out", str(tmp_path / "o.jsonl"), "--per-class", "3",
                "--base-url", "http://127.0.0.1:9/v1", "--model", "m")
    assert r.returncode == 2 and r.stderr.startswith("error: latin1.csv is not valid UTF-8")
    assert "Traceback" not in r.stderr and not (tmp_path / "o.jsonl").exists()


# --------------------------------------------------------------------------------- long texts
def test_very_long_generated_lines_are_dropped_by_the_parser(make_fake_llm, task):
    monster = "word " * 20_000  # 100,000 characters on one line
    fake = make_fake_llm(responder=lambda body: f"1. {monster}\n" + fake.default_answer(body))
    res = generate(task, GenerationConfig(per_class=4, seed=0), fast_client(fake))
    assert res.kept == 16 and all(len(e.text) <= 400 for e in res.examples)
    assert parse_examples(f"1. {monster}\n2. a normal line here") == ["a normal line here"]


# ------------------------------------------------------------------------------- option ranges
@pytest.mark.parametrize("kwargs, message", [
    ({"per_class": 0}, "examples per class must be between 1 and 10,000"),
    ({"per_class": 10_001}, "examples per class must be between 1 and 10,000"),
    ({"group_size": 1}, "the group size must be at least 2"),
    ({"examples_per_call": 0}, "examples per call must be between 1 and 50"),
    ({"examples_per_call": 51}, "examples per call must be between 1 and 50"),
    ({"temperature": -0.1}, "the temperature must be between 0 and 2"),
    ({"temperature": 2.5}, "the temperature must be between 0 and 2"),
    ({"temperature": math.nan}, "the temperature must be between 0 and 2"),
])
def test_generation_config_ranges(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GenerationConfig(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"base_url": "ftp://example.com"}, "must start with http:// or https://"),
    ({"base_url": ""}, "must start with http:// or https://"),
    ({"model": " "}, "a model name is needed"),
    ({"concurrency": 0}, "concurrency must be between 1 and 256"),
    ({"concurrency": 1000}, "concurrency must be between 1 and 256"),
    ({"timeout": 0}, "the timeout must be between 0 and 3600 seconds"),
    ({"timeout": -5}, "the timeout must be between 0 and 3600 seconds"),
    ({"timeout": math.nan}, "the timeout must be between 0 and 3600 seconds"),
    ({"max_retries": -1}, "retries must be between 0 and 20"),
    ({"max_retries": 100}, "retries must be between 0 and 20"),
])
def test_llm_config_ranges(kwargs, message):
    base = {"base_url": "http://127.0.0.1:1/v1", "model": "m"}
    with pytest.raises(LLMConfigError, match=message):
        LLMConfig(**{**base, **kwargs})


def test_cli_out_of_range_options_exit_2(tmp_path, capsys):
    p = _write(tmp_path, "t.csv", TWO_CLASSES)
    out = str(tmp_path / "o.jsonl")
    common = ["generate", str(p), "--out", out, "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]
    assert cli.main(common + ["--per-class", "0"]) == 2
    assert "error: examples per class must be between 1 and 10,000" in capsys.readouterr().err
    assert cli.main(common + ["--per-class", "2", "--concurrency", "0"]) == 2
    assert "error: concurrency must be between 1 and 256" in capsys.readouterr().err
    assert cli.main(common + ["--per-class", "2", "--timeout", "-1"]) == 2
    assert "error: the timeout must be between" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # not a number at all: argparse's usage error, also code 2
        cli.main(common + ["--per-class", "many"])
    assert e.value.code == 2 and "invalid int value: 'many'" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, message", [
    ({"learning_rate": 5.0}, "learning_rate must be a number above 0 and at most 1"),
    ({"learning_rate": 0.0}, "learning_rate must be a number above 0 and at most 1"),
    ({"learning_rate": -1e-5}, "learning_rate must be a number above 0 and at most 1"),
    ({"learning_rate": math.nan}, "learning_rate must be a number above 0 and at most 1"),
    ({"epochs": 0}, "epochs must be an integer from 1 to 1000"),
    ({"epochs": 5000}, "epochs must be an integer from 1 to 1000"),
    ({"epochs": 2.5}, "epochs must be an integer from 1 to 1000"),
    ({"batch_size": 0}, "batch_size must be an integer from 1 to 4096"),
    ({"warmup_ratio": 1.0}, "warmup_ratio must be at least 0 and below 1"),
])
def test_training_config_ranges(kwargs, message):
    training = pytest.importorskip("promptmix_core.training.config")
    with pytest.raises(ValueError, match=message):
        training.TrainConfig(**kwargs)


def test_training_config_from_a_job_lists_every_problem():
    training = pytest.importorskip("promptmix_core.training.config")
    with pytest.raises(ValueError) as err:
        training.TrainConfig.from_dict({"epochs": 0, "learning_rate": 3})
    assert "epochs" in str(err.value) and "learning_rate" in str(err.value)
    with pytest.raises(ValueError, match="unknown training setting"):
        training.TrainConfig.from_dict({"epochz": 3})


# ----------------------------------------------------------------- emoji and right-to-left text
UNICODE_ROWS = [
    ("My card 💳 is gone 😭", "بطاقة_مفقودة"),
    ("👩‍👩‍👧 family account: top-up failed", "بطاقة_مفقودة"),
    ("אני רוצה החזר כספי על ההזמנה", "החזר_כספי"),
    ("\u200fأريد استرداد أموالي\u200f", "החזר_כספי"),
    ("Ünïcödé café naïve – “quotes” and CJK 银行卡", "החזר_כספי"),
]


def test_emoji_and_rtl_text_survive_load_store_and_export(tmp_path, make_fake_llm):
    from promptmix_core import export

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["text", "label"])
    w.writerows(UNICODE_ROWS)
    p = _write(tmp_path, "unicode.csv", buf.getvalue())
    t = load_task(p)
    assert sorted(t.class_names) == sorted({lab for _, lab in UNICODE_ROWS})
    seeds = {ex for c in t.classes for ex in c.examples}
    assert seeds == {text for text, _ in UNICODE_ROWS}  # byte for byte, marks and joiners included

    store = ProjectStore(tmp_path / "u.pmx")
    store.save_task(t)
    store.close()
    again = ProjectStore(tmp_path / "u.pmx", create=False).load_task()
    assert again.to_dict() == t.to_dict()

    # generation with RTL class names: the model's lines come back intact
    fake = make_fake_llm()
    res = generate(again, GenerationConfig(per_class=3, seed=0), fast_client(fake))
    store = ProjectStore(tmp_path / "u.pmx", create=False)
    job = store.create_job("generate", {})
    store.add_examples([{**e.to_row(), "slot": e.slot, "job_id": job, "norm_text": normalize_text(e.text)}
                        for e in res.examples])
    stored = store.list_examples(job_id=job)
    assert [e.text for e in stored] == [e.text for e in res.examples]
    assert any("بطاقة" in e.text or "החזר" in e.text for e in stored)

    records = export.curated_records(again, stored, label_source="a1")
    texts = [r["text"] for r in records]
    jsonl = export.to_jsonl_bytes(records).decode("utf-8")
    assert [json.loads(line)["text"] for line in jsonl.splitlines()] == texts
    assert "💳" in jsonl and "\\u" not in jsonl  # written as UTF-8, not escaped
    rows = list(csv.DictReader(io.StringIO(export.to_csv_bytes(records).decode("utf-8"))))
    assert [r["text"] for r in rows] == texts

    # and through the CLI's JSONL output
    out = tmp_path / "out.jsonl"
    assert cli.main(["generate", str(p), "--out", str(out), "--per-class", "3", "--base-url", fake.base_url,
                     "--model", "fake-model", "--cache", str(tmp_path / "c.sqlite")]) == 0
    lines = [json.loads(x) for x in out.read_text("utf-8").splitlines()]
    assert {r["label"] for r in lines} == set(t.class_names)
