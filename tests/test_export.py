"""Export: curated records, formula-safe CSV, JSONL, Parquet and the model zip."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest

from promptmix_core.demo import create_demo
from promptmix_core.export import (
    COLUMNS,
    curated_records,
    dataset_bytes,
    label_for,
    neutralize_formula,
    safe_filename,
    to_csv_bytes,
    to_jsonl_bytes,
    to_parquet_bytes,
    zip_folder_bytes,
)


@pytest.fixture
def demo(tmp_path):
    store = create_demo(tmp_path / "demo.pmx")
    return store, store.load_task(), store.list_examples()


# --------------------------------------------------------------------------- records
def test_records_seeds_first_then_generated(demo):
    _store, task, examples = demo
    rows = curated_records(task, examples, label_source="a2")
    assert [r["source"] for r in rows[:10]] == ["seed"] * 10
    assert sum(r["source"] == "generated" for r in rows) == len(examples)
    assert set(rows[0]) == set(COLUMNS)
    assert not any(r["source"] == "seed" for r in curated_records(task, examples, include_seeds=False))


def test_label_sources_follow_the_training_rules(demo):
    store, task, examples = demo
    changed = next(e for e in examples if e.relabel_status == "changed")
    assert label_for(changed, "a1") == changed.intended_label
    assert label_for(changed, "a2") == changed.llm_label != changed.intended_label
    # reviewed: rejected left out, overridden takes the reviewer's class, pending follows the rule
    store.review(examples[0].id, "rejected")
    store.review(examples[1].id, "overridden", label="exchange_rate")
    store.review(examples[2].id, "accepted")
    ex = store.list_examples()
    assert label_for(ex[0], "reviewed") is None
    assert label_for(ex[1], "reviewed") == "exchange_rate"
    assert label_for(ex[2], "reviewed") == ex[2].label
    assert label_for(ex[3], "reviewed", pending="drop") is None
    assert label_for(ex[3], "reviewed", pending="a2") == ex[3].llm_label
    rows = curated_records(task, ex, label_source="reviewed", pending="drop", include_seeds=False)
    assert [r["example_id"] for r in rows] == [ex[1].id, ex[2].id]
    all_rows = curated_records(task, ex, label_source="reviewed", pending="a2", include_seeds=False)
    assert len(all_rows) == len(ex) - 1


def test_unknown_label_source():
    with pytest.raises(ValueError):
        label_for(object(), "a3")


def test_unparseable_relabel_is_left_out_of_a2(demo):
    store, task, examples = demo
    store.set_relabel(examples[0].id, llm_label=None, status="unparseable", raw="no idea")
    ex = store.get_example(examples[0].id)
    assert label_for(ex, "a2") is None and label_for(ex, "a1") == ex.intended_label


# --------------------------------------------------------------------------- CSV
@pytest.mark.parametrize("value", ["=1+2", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx", "=HYPERLINK(\"http://x\")"])
def test_formula_cells_are_neutralised(value):
    assert neutralize_formula(value) == "'" + value


@pytest.mark.parametrize("value", ["hello", "", "a=b", 3, -2.5, None, "ok-"])
def test_other_cells_are_left_alone(value):
    assert neutralize_formula(value) == value


def test_csv_round_trip_and_safety():
    rows = [
        {"text": "=cmd|' /C calc'!A0", "label": "a", "source": "generated", "alpha": 0.85},
        {"text": 'comma, "quote"\nnew line', "label": "@b", "source": "seed", "alpha": None},
        {"text": "ünïcode ✓", "label": "-c", "source": "seed", "alpha": -1.0},
    ]
    data = to_csv_bytes(rows)
    assert not data.startswith(b"\xef\xbb\xbf")
    back = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    assert back[0]["text"] == "'=cmd|' /C calc'!A0"
    assert back[1]["text"] == 'comma, "quote"\nnew line' and back[1]["label"] == "'@b"
    assert back[1]["alpha"] == "" and back[0]["alpha"] == "0.85" and back[2]["alpha"] == "-1.0"
    assert back[2]["text"] == "ünïcode ✓" and back[2]["label"] == "'-c"
    assert list(back[0]) == ["text", "label", "source", "alpha"]
    # every text cell of every row is safe (numbers stay numbers)
    for r in csv.reader(io.StringIO(data.decode(), newline="")):
        for cell in r:
            try:
                float(cell)
                continue
            except ValueError:
                assert not cell.startswith(("=", "+", "-", "@")), cell
    assert to_csv_bytes(rows, safe=False).decode().count("'=cmd") == 0


def test_csv_of_nothing_has_a_header():
    assert to_csv_bytes([]).decode().splitlines()[0].split(",")[:2] == ["text", "label"]


# --------------------------------------------------------------------------- JSONL and Parquet
def test_jsonl(demo):
    _store, task, examples = demo
    rows = curated_records(task, examples)
    data = to_jsonl_bytes(rows)
    lines = data.decode("utf-8").splitlines()
    assert len(lines) == len(rows)
    assert json.loads(lines[0])["source"] == "seed"
    assert json.loads(to_jsonl_bytes([{"text": "=x ✓", "alpha": float("nan")}]))["alpha"] is None
    assert "✓" in to_jsonl_bytes([{"text": "✓"}]).decode()


def test_parquet(demo):
    import pyarrow.parquet as pq

    _store, task, examples = demo
    rows = curated_records(task, examples, label_source="a2")
    table = pq.read_table(io.BytesIO(to_parquet_bytes(rows)))
    assert table.num_rows == len(rows)
    assert table.schema.field("alpha").type.id == __import__("pyarrow").float64().id
    assert table.column("text").to_pylist() == [r["text"] for r in rows]
    assert table.column("alpha").to_pylist()[0] is None
    empty = pq.read_table(io.BytesIO(to_parquet_bytes([])))
    assert empty.num_rows == 0 and "text" in empty.column_names


def test_dataset_bytes_dispatch():
    rows = [{"text": "t", "label": "a"}]
    assert dataset_bytes(rows, "CSV").startswith(b"text,label")
    assert dataset_bytes(rows, "jsonl").startswith(b"{")
    assert dataset_bytes(rows, "parquet")[:4] == b"PAR1"
    with pytest.raises(ValueError):
        dataset_bytes(rows, "xlsx")


# --------------------------------------------------------------------------- model zip
def test_zip_folder(tmp_path):
    model = tmp_path / "run-1"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "sub" / "tokenizer.json").write_text("[]")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not ship")
    (model / "link.txt").symlink_to(secret)
    data = zip_folder_bytes(model)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = sorted(zf.namelist())
        assert names == ["run-1/config.json", "run-1/sub/tokenizer.json"]
        assert zf.testzip() is None
    flat = zip_folder_bytes(model, root_name="")
    assert sorted(zipfile.ZipFile(io.BytesIO(flat)).namelist()) == ["config.json", "sub/tokenizer.json"]
    with pytest.raises(FileNotFoundError):
        zip_folder_bytes(tmp_path / "missing")


def test_safe_filename():
    assert safe_filename("Banking support demo-dataset", "csv") == "Banking_support_demo-dataset.csv"
    assert safe_filename("../../etc/passwd", ".zip") == "etc_passwd.zip"
    assert safe_filename("", "csv") == "export.csv"


# --------------------------------------------------------------------------- promptmix export
def test_export_command_writes_the_rows_the_results_page_exports(tmp_path, capsys):
    import pyarrow.parquet as pq

    from promptmix_core.cli import main

    path = tmp_path / "demo.pmx"
    store = create_demo(path)
    ex = store.list_examples()
    store.review(ex[0].id, "rejected")
    store.review(ex[1].id, "overridden", label="exchange_rate")
    store.review(ex[2].id, "accepted")
    task = store.load_task()
    # the Results page: reviewed labels, pending ones with the LLM relabel, seeds included
    expected = curated_records(task, store.list_examples(), label_source="reviewed", pending="a2", include_seeds=True)
    store.close()

    assert main(["export", str(path), "--out", str(tmp_path / "out.csv")]) == 0
    assert "wrote 29 rows (10 seeds, 19 generated examples)" in capsys.readouterr().out
    assert (tmp_path / "out.csv").read_bytes() == dataset_bytes(expected, "csv")
    assert main(["export", str(path), "--out", str(tmp_path / "out.jsonl")]) == 0  # format from the extension
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text("utf-8").splitlines()]
    assert rows == [json.loads(line) for line in dataset_bytes(expected, "jsonl").decode().splitlines()]
    assert {r["example_id"]: r["label"] for r in rows if r["source"] == "generated"}[ex[1].id] == "exchange_rate"
    assert ex[0].id not in {r["example_id"] for r in rows}
    assert main(["export", str(path), "--out", str(tmp_path / "data.bin"), "--format", "parquet", "--labels", "a1",
                 "--no-seeds"]) == 0
    table = pq.read_table(tmp_path / "data.bin").to_pylist()
    assert len(table) == 20 and all(r["label"] == r["intended_label"] for r in table)
    assert set(COLUMNS) <= set(table[0])
    assert main(["export", str(path), "--out", str(tmp_path / "a2.csv"), "--labels", "a2", "--pending", "drop"]) == 0


def test_export_command_refuses_a_missing_project(tmp_path, capsys):
    from promptmix_core.cli import main

    assert main(["export", str(tmp_path / "nope.pmx"), "--out", str(tmp_path / "x.csv")]) == 2
    assert "no project at" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()
