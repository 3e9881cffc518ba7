"""The project test set: reading an upload row by row, splitting one off an imported file, storing it."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from promptmix_core.store import ProjectStore
from promptmix_core.task import ClassSpec, Task, TaskError
from promptmix_core.testset import read_test_set, read_test_set_file, rows_fingerprint, split_off_test_set

TASK = Task("t", [ClassSpec("card_lost", "", ["I lost my card", "my card was stolen"]),
                  ClassSpec("exchange_rate", "", ["what rate do you use", "is the euro rate good"]),
                  ClassSpec("refund", "", ["I want a refund", "money back please"])])


def test_upload_rows_are_checked_one_by_one():
    csv_text = (
        "text,label\n"
        "where is my card,card_lost\n"           # row 2 fine
        "dollar to yen today?,Exchange Rate\n"   # row 3: spelled differently, mapped onto the class
        "I lost my card,card_lost\n"             # row 4: a seed -> refused
        "hello there,greeting\n"                 # row 5: not a class
        ",refund\n"                              # row 6: empty text
        "give me my money,\n"                    # row 7: empty label
        "where is my card,card_lost\n"           # row 8: repeats row 2
        "refund the shoes,refund\n"              # row 9 fine
    )
    chk = read_test_set(csv_text.encode(), "test.csv", TASK, generated_texts=["Refund the shoes!"])
    assert chk.rows == [{"text": "where is my card", "label": "card_lost"},
                        {"text": "dollar to yen today?", "label": "exchange_rate"},
                        {"text": "refund the shoes", "label": "refund"}]
    assert chk.total == 8
    assert chk.refused == {"seed": 1, "unknown_label": 1, "empty_text": 1, "empty_label": 1, "duplicate": 1}
    joined = "\n".join(chk.problems)
    assert "row 4: this text is a seed example of 'card_lost'" in joined
    assert "row 5: 'greeting' is not a class of the task (classes: card_lost, exchange_rate, refund)" in joined
    assert "row 6: the text is empty" in joined and "row 7: the label is empty" in joined
    assert "row 8: repeats row 2" in joined
    assert any("1 generated example(s) repeat a test row" in n for n in chk.notes)
    assert chk.per_class(TASK.class_names) == {"card_lost": 1, "exchange_rate": 1, "refund": 1}


def test_jsonl_upload_and_file_level_errors(tmp_path):
    lines = [{"text": "card gone", "label": "card_lost"}, {"text": "rate?", "label": "exchange_rate"}]
    chk = read_test_set("\n".join(json.dumps(x) for x in lines).encode(), "t.jsonl", TASK)
    assert len(chk.rows) == 2 and not chk.problems
    assert any("No test rows for 'refund'" in n for n in chk.notes)
    with pytest.raises(TaskError, match="missing the column"):
        read_test_set(b"sentence,class\na,b\n", "t.csv", TASK)
    with pytest.raises(TaskError, match=".csv or .jsonl"):
        read_test_set(b"x", "t.xlsx", TASK)
    with pytest.raises(TaskError, match="not valid UTF-8"):
        read_test_set("text,label\ncafé,refund\n".encode("latin-1"), "t.csv", TASK)
    p = tmp_path / "t.csv"
    p.write_text("text,label\ncard gone,card_lost\n")
    assert read_test_set_file(str(p), TASK).rows == [{"text": "card gone", "label": "card_lost"}]
    with pytest.raises(TaskError, match="not found"):
        read_test_set_file(str(tmp_path / "nope.csv"), TASK)


def test_many_problems_are_listed_briefly():
    body = "text,label\n" + "".join(f"text {i},nope\n" for i in range(30))
    chk = read_test_set(body.encode(), "t.csv", TASK)
    listed = chk.listed_problems()
    assert len(listed) == 21 and listed[-1].startswith("… and 10 more")
    assert any("'nope' (30 rows)" in n for n in chk.notes)


def test_split_off_an_imported_file_never_overlaps_the_seeds():
    rows = [{"text": t, "label": lab} for lab, ts in (
        ("card_lost", ["I lost my card", "my card was stolen", "card missing", "where's my card", "card gone"]),
        ("refund", ["I want a refund", "money back please", "refund it", "return money"]),
        ("other", ["something else"]))
        for t in ts]
    test = split_off_test_set(rows, TASK)
    seeds = {r["text"] for r in TASK.seed_rows()}
    assert test and not ({r["text"] for r in test} & seeds)
    assert {r["label"] for r in test} == {"card_lost", "refund"}  # 'other' is no class of the task
    assert len(test) == 5
    capped = split_off_test_set(rows, TASK, max_per_class=1, seed=3)
    assert sorted(r["label"] for r in capped) == ["card_lost", "refund"]


def test_store_keeps_one_test_set_and_old_files_gain_the_table(tmp_path):
    s = ProjectStore(tmp_path / "p.pmx")
    assert s.test_set_info() is None and s.list_test_examples() == []
    rows = [{"text": "a b", "label": "x"}, {"text": "A  b.", "label": "x"}, {"text": "c", "label": "y"}]
    assert s.set_test_set(rows, name="test.csv") == 2  # the second repeats the first (normalised)
    info = s.test_set_info()
    assert info["n"] == 2 and info["per_class"] == {"x": 1, "y": 1} and info["name"] == "test.csv"
    assert s.set_test_set(rows[2:], name="other.csv") == 1  # replaces, never appends
    assert [r["text"] for r in s.list_test_examples()] == ["c"]
    assert rows_fingerprint(rows[:1]) == rows_fingerprint([{"text": "A  B", "label": "x"}])
    s.clear_test_set()
    assert s.test_set_info() is None
    # a project written before the table existed opens and gains it
    s.close()
    con = sqlite3.connect(tmp_path / "p.pmx")
    con.execute("DROP TABLE test_examples")
    con.execute("DROP TABLE run_examples")
    con.commit()
    con.close()
    import promptmix_core.store as store_mod

    store_mod._VERIFIED.clear()
    s2 = ProjectStore(tmp_path / "p.pmx", create=False)
    assert s2.set_test_set(rows, name="again") == 2
    run = s2.create_run({})
    s2.record_run_examples(run, "train", [{"text": "t", "label": "x", "source": "generated", "example_id": 4},
                                          {"text": "s", "label": "y", "source": "seed"}])
    got = s2.get_run_examples(run, "train")
    assert [(r["text"], r["label"], r["source"], r["example_id"]) for r in got] == [
        ("t", "x", "generated", 4), ("s", "y", "seed", None)]


@pytest.mark.parametrize("copy", ["card gone\u200b", "card\u00ad gone", "\u200ecard gone", "CARD  GONE!"],
                         ids=["zero-width", "soft-hyphen", "direction-mark", "case-space-punct"])
def test_a_near_copy_of_a_seed_is_refused(copy):
    """Issue 23 item 13: a test row equal to a seed once normalised (invisible characters included)."""
    task = Task("t", [ClassSpec("card_lost", examples=["card gone"]), ClassSpec("refund", examples=["money back"])])
    chk = read_test_set(f"text,label\n{copy},card_lost\nwhere is my refund,refund\n".encode(), "t.csv", task)
    assert [r["text"] for r in chk.rows] == ["where is my refund"]
    assert chk.problems == ["row 2: this text is a seed example of 'card_lost'; a test set must not contain "
                            "training data"]


@pytest.mark.parametrize("body, says", [
    (b"text,label,label\nhello,card_lost,refund\n", "t.csv has the column 'label' twice (columns 2 and 3)"),
    (b"Text,text,label\nhello,bye,refund\n", "t.csv has the column 'text' twice (columns 1 and 2)"),
])
def test_a_duplicated_header_is_refused_not_picked_silently(body, says):
    with pytest.raises(TaskError, match=re.escape(says)):
        read_test_set(body, "t.csv", TASK)


def test_a_jsonl_row_with_two_label_fields_is_refused():
    with pytest.raises(TaskError, match="line 1 has the field 'label' twice"):
        read_test_set(b'{"text": "x", "label": "refund", "Label": "card_lost"}\n', "t.jsonl", TASK)


def test_a_test_set_file_over_the_row_limit_is_refused_while_reading(tmp_path, monkeypatch):
    """``train --test`` keeps every usable row to score on: a file over MAX_TEST_ROWS is refused in one
    line as soon as the limit is passed, so memory stays bounded whatever the file's size."""
    import promptmix_core.testset as ts
    from promptmix_core.errors import TaskError
    from promptmix_core.task import ClassSpec, Task

    task = Task("t", [ClassSpec("a", examples=["seed a"]), ClassSpec("b", examples=["seed b"])])
    f = tmp_path / "big.csv"
    f.write_text("text,label\n" + "".join(f"row {i},{'ab'[i % 2]}\n" for i in range(30)), encoding="utf-8")
    monkeypatch.setattr(ts, "MAX_TEST_ROWS", 10)
    seen = []
    real = ts.utf8_lines

    def counting(fh, name):
        for line in real(fh, name):
            seen.append(line)
            yield line

    monkeypatch.setattr(ts, "utf8_lines", counting)
    with pytest.raises(TaskError, match=r"more than 10 rows") as info:
        ts.read_test_set_file(str(f), task)
    assert "\n" not in str(info.value)
    assert len(seen) == 12  # it stopped reading at the first line past the limit
    monkeypatch.setattr(ts, "MAX_TEST_ROWS", 100)
    assert len(ts.read_test_set_file(str(f), task).rows) == 30
