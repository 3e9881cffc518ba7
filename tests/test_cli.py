"""The CLI contract, run as a real subprocess against the scripted server."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from promptmix_core.task import save_task

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, env_extra=None, timeout=180):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "promptmix_core.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


def read_jsonl(p):
    return [json.loads(line) for line in Path(p).read_text().splitlines() if line.strip()]


def test_generate_then_relabel(fake_llm, tmp_path, small_task):
    task_file = tmp_path / "task.json"
    save_task(small_task, task_file)
    out = tmp_path / "gen.jsonl"
    r = run_cli("generate", task_file, "--out", out, "--per-class", 4, "--group-size", 3, "--seed", 7,
                "--base-url", fake_llm.base_url, "--model", "fake-model", "--concurrency", 4)
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(out)
    assert Counter(r["intended_label"] for r in rows) == {c: 4 for c in small_task.class_names}
    assert all({"text", "label", "intended_label", "mixed_with", "alpha"} <= set(row) for row in rows)
    summary = r.stdout.strip().splitlines()[-1]
    assert summary.startswith("kept 24/24 examples") and "calls" in summary and "cache hits 0" in summary
    assert "tokens" in summary and "per kept example" in summary

    again = run_cli("generate", task_file, "--out", out, "--per-class", 4, "--group-size", 3, "--seed", 7,
                    "--base-url", fake_llm.base_url, "--model", "fake-model")
    assert "calls 0, cache hits" in again.stdout

    rel = tmp_path / "rel.jsonl"
    r = run_cli("relabel", out, "--task", task_file, "--out", rel, "--base-url", fake_llm.base_url,
                "--model", "fake-model")
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(rel)
    assert len(rows) == 24
    for row in rows:
        assert row["relabel_status"] in ("agree", "changed", "unparseable")
        # label is the chosen judge's: the embedding judge's or the LLM relabel's, both written
        assert row["label_source"] in ("judge", "llm") and row["judge_label"] in small_task.class_names
        assert row["label"] == row[f"{row['label_source']}_label"]
    assert r.stdout.strip().splitlines()[-1].startswith("relabelled 24")


def test_generate_from_labelled_file_with_k(fake_llm, tmp_path, datasets_dir):
    out = tmp_path / "trec.jsonl"
    r = run_cli("generate", datasets_dir / "trec6" / "train.csv", "--k", 2, "--task-seed", 1, "--out", out,
                "--per-class", 2, "--base-url", fake_llm.base_url, "--model", "fake-model")
    assert r.returncode == 0, r.stderr
    assert len(read_jsonl(out)) == 12


def test_failure_exits_nonzero_with_clear_message(make_fake_llm, tmp_path, small_task):
    fake = make_fake_llm()
    fake.down = True
    task_file = tmp_path / "task.json"
    save_task(small_task, task_file)
    r = run_cli("generate", task_file, "--out", tmp_path / "o.jsonl", "--per-class", 2,
                "--base-url", fake.base_url, "--model", "fake-model", "--retries", 1)
    assert r.returncode == 1
    assert "error: the LLM endpoint" in r.stderr and "kept failing" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("content, fragment", [
    ('{"name": "t", "classes": [{"name": "a", "examples": ["x"]}]}', "at least 2 classes"),
    ("text,lbl\nx,y\n", "missing the column(s) label"),
])
def test_bad_task_exits_2(tmp_path, content, fragment):
    p = tmp_path / ("t.json" if content.startswith("{") else "t.csv")
    p.write_text(content)
    r = run_cli("generate", p, "--out", tmp_path / "o.jsonl", "--per-class", 2, "--base-url", "http://127.0.0.1:9/v1",
                "--model", "m")
    assert r.returncode == 2 and fragment in r.stderr and "Traceback" not in r.stderr


def test_check_converts(tmp_path, datasets_dir):
    r = run_cli("check", datasets_dir / "subj" / "train.csv", "--k", 3, "--out", tmp_path / "subj.yaml")
    assert r.returncode == 0 and "2 classes, 6 seeds" in r.stdout
    assert "classes:" in (tmp_path / "subj.yaml").read_text()


def test_installed_entry_point_exists():
    exe = Path(sys.executable).with_name("promptmix")
    assert exe.exists(), "the promptmix CLI is installed in the virtualenv"
