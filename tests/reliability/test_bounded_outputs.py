"""Round three, items 8 and 10: readers that stream (``train --test``, ``predict --input``: memory flat
in the file's size) and output paths (a folder or an unknown extension: one line, nothing left behind)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rel_helpers import ROOT, run_cli
from promptmix_core import projects
from promptmix_core.demo import demo_task


@pytest.fixture(scope="module")
def quick_model(tmp_path_factory):
    from promptmix_core.training.embed_lr import train_embed_lr

    folder = tmp_path_factory.mktemp("model")
    texts = [f"the football match number {i}" for i in range(6)] + [f"a pizza with cheese {i}" for i in range(6)]
    train_embed_lr(None, texts, ["sport"] * 6 + ["food"] * 6, label_names=["sport", "food"], out_dir=folder / "m")
    return folder / "m"


def _project_with_examples(tmp_path: Path) -> Path:
    store = projects.create_project("p", tmp_path, task=demo_task())
    store.close()
    return tmp_path / "p.pmx"


# ------------------------------------------------------------------------------- output paths (item 10)
def test_export_to_a_folder_or_an_unknown_extension_is_one_line_and_leaves_nothing(tmp_path):
    project = _project_with_examples(tmp_path)
    out_dir = tmp_path / "outdir"
    out_dir.mkdir()
    r = run_cli("export", str(project), "--out", str(out_dir))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip() == f"error: --out {out_dir} is a folder; give a file name, e.g. {out_dir / 'export.csv'}"
    r = run_cli("export", str(project), "--out", str(tmp_path / "p.tsv"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == ("error: --out p.tsv: use a file name ending in .csv, .jsonl or .parquet, "
                                "or give --format")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outdir", "p.pmx"]  # no DIR.tmp, no p.tsv
    assert not list(out_dir.iterdir())
    # an explicit format writes any name; a known extension works as before
    assert run_cli("export", str(project), "--out", str(tmp_path / "p.tsv"), "--format", "csv").returncode == 0
    assert run_cli("export", str(project), "--out", str(tmp_path / "e.jsonl")).returncode == 0
    assert (tmp_path / "p.tsv").read_text().startswith("text,label")
    assert not list(tmp_path.glob("*.tmp"))


def test_predict_to_a_folder_or_an_unknown_extension_is_one_line_and_leaves_nothing(tmp_path):
    """Checked before the model is even loaded (the model folder here is never read)."""
    quick_model = tmp_path / "model-never-read"
    out_dir = tmp_path / "outdir"
    out_dir.mkdir()
    r = run_cli("predict", str(quick_model), "a football match", "--out", str(out_dir))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip() == (f"error: --out {out_dir} is a folder; give a file name, e.g. "
                                f"{out_dir / 'predictions.csv'}")
    r = run_cli("predict", str(quick_model), "a football match", "--out", str(tmp_path / "p.tsv"))
    assert r.returncode == 2 and r.stderr.strip() == "error: --out p.tsv: use a file name ending in .csv or .jsonl"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outdir"] and not list(out_dir.iterdir())
    r = run_cli("predict", str(quick_model), "a football match", "--out", str(tmp_path / "p.csv"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "p.csv.tmp").exists()  # a model that fails


@pytest.mark.slow  # trains a quick student (loads the embedder)
def test_predict_streams_its_input_in_chunks_and_writes_one_file(tmp_path, quick_model, capsys, monkeypatch):
    """More texts than one chunk: the CSV has one header and every row; JSONL one object a line."""
    from promptmix_core.cli import main
    from promptmix_core.training import inference

    monkeypatch.setattr(inference, "STREAM_CHUNK", 4)
    src = tmp_path / "in.csv"
    src.write_text("text\n" + "".join(f"football match {i}\n" for i in range(10)), "utf-8")
    assert main(["predict", str(quick_model), "--input", str(src), "--out", str(tmp_path / "o.csv")]) == 0
    lines = (tmp_path / "o.csv").read_text("utf-8").splitlines()
    assert lines[0] == "text,label,confidence,sport,food" and len(lines) == 11
    assert sum(ln.startswith("text,") for ln in lines) == 1
    assert main(["predict", str(quick_model), "--input", str(src), "--out", str(tmp_path / "o.jsonl")]) == 0
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text("utf-8").splitlines()]
    assert len(rows) == 10 and rows[-1]["text"] == "football match 9"
    assert "wrote 10 predictions" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.tmp"))
    assert list(inference.iter_text_file(src))[:2] == ["football match 0", "football match 1"]


# ------------------------------------------------------------------------------ streaming readers (item 8)
_RSS = textwrap.dedent("""
    import resource, sys
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from promptmix_core.task import ClassSpec, Task
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    what, path = sys.argv[1], Path(sys.argv[2])
    if what == "texts":
        from promptmix_core.training.inference import iter_text_file
        n = sum(1 for _ in iter_text_file(path))
    else:
        from promptmix_core.testset import read_test_set_file
        task = Task("t", [ClassSpec("a", examples=["seed a"]), ClassSpec("b", examples=["seed b"])])
        n = len(read_test_set_file(str(path), task).rows)
    print(n, before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


def _rss_mb(what: str, path: Path) -> tuple[int, float]:
    out = subprocess.run([sys.executable, "-c", _RSS.format(root=str(ROOT)), what, str(path)],
                         capture_output=True, text=True, timeout=120, check=True).stdout.split()
    n, before, after = int(out[0]), int(out[1]), int(out[2])
    return n, (after - before) / 1024  # ru_maxrss is in KB


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory):
    """About 40 MB of unique rows whose texts are long (400 characters), as real documents are."""
    path = tmp_path_factory.mktemp("big") / "big.csv"
    body = "lorem ipsum dolor sit amet " * 15
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("text,label\n")
        for i in range(100_000):
            fh.write(f"row {i} {body},{'a' if i % 2 else 'b'}\n")
    return path


def test_predict_input_is_read_as_a_stream(big_csv):
    """Issue 23 item 8: ``predict --input`` read the whole file (2.2 GB RSS on 200 MB); now it grows by
    a few MB, whatever the file's size."""
    size_mb = big_csv.stat().st_size / 1e6
    n, grew = _rss_mb("texts", big_csv)
    assert n == 100_000
    print(f"predict --input reader: +{grew:.0f} MB RSS on {size_mb:.0f} MB")
    assert grew < 0.25 * size_mb, (grew, size_mb)


def test_a_test_set_file_is_read_as_a_stream(big_csv):
    """``train --test`` read the whole file, its text and a list of raw rows before checking; now only
    the usable rows are kept (no second copy of every text for the duplicate check)."""
    size_mb = big_csv.stat().st_size / 1e6
    n, grew = _rss_mb("test", big_csv)
    assert n == 100_000
    print(f"test-set reader: +{grew:.0f} MB RSS on {size_mb:.0f} MB")
    assert grew < 3 * size_mb, (grew, size_mb)  # the reader before: 6.7x (283 MB on 42 MB)
