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


# ------------------------------------------------------------------ bugs found reading the CLI (issue 18)
def _gen_args(task_file, out, fake_llm, *extra):
    return ["generate", str(task_file), "--out", str(out), "--base-url", fake_llm.base_url, "--model", "fake-model",
            *map(str, extra)]


def test_flag_file_writes_one_row_per_input_row(tmp_path, small_task, capsys):
    """`promptmix flag FILE --task T --out O` died with NameError (_read_jsonl)."""
    from promptmix_core.cli import main

    task_file = tmp_path / "task.json"
    save_task(small_task, task_file)
    rows = [{"text": "I lost my card yesterday at the shop", "label": "card_lost"},
            {"text": "Sure! Here are 5 examples:", "label": "card_lost"},
            {"text": "asdf qwer zxcv", "label": "refund", "extra": 1}]
    src = tmp_path / "gen.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "flagged.jsonl"
    assert main(["flag", str(src), "--task", str(task_file), "--out", str(out)]) == 0
    got = read_jsonl(out)
    assert [r["text"] for r in got] == [r["text"] for r in rows] and all("flag" in r for r in got)
    assert got[2]["extra"] == 1  # the other fields are kept
    assert got[1]["flag"]  # meta-text is flagged
    assert "flagged" in capsys.readouterr().out


def test_generate_into_project_with_no_flags_does_not_flag(tmp_path, small_task, fake_llm):
    from promptmix_core.cli import main
    from promptmix_core.specs import GenerationSpec
    from promptmix_core.store import ProjectStore

    task_file = tmp_path / "task.json"
    save_task(small_task, task_file)
    project, out = tmp_path / "p.pmx", tmp_path / "o.jsonl"
    assert main(_gen_args(task_file, out, fake_llm, "--per-class", 2, "--project", project, "--no-flags",
                          "--cache", tmp_path / "c.sqlite")) == 0
    store = ProjectStore(project, create=False)
    job = store.list_jobs("generate")[0]
    assert "flagged" not in job.message and GenerationSpec.from_stored(job.config).flag_junk is False
    assert not any(e.flag for e in store.list_examples(job_id=job.id))
    assert all("flag" not in r for r in read_jsonl(out))


def test_resuming_a_job_never_mixes_two_plans(tmp_path, small_task, fake_llm, capsys):
    """`generate --project P --job N` ran with the current flags while the stored plan said otherwise."""
    from promptmix_core.cli import main
    from promptmix_core.specs import GenerationSpec
    from promptmix_core.store import ProjectStore

    task_file = tmp_path / "task.json"
    save_task(small_task, task_file)
    project, out, cache = tmp_path / "p.pmx", tmp_path / "o.jsonl", tmp_path / "c.sqlite"
    assert main(_gen_args(task_file, out, fake_llm, "--per-class", 2, "--seed", 3, "--no-mixup", "--project",
                          project, "--cache", cache)) == 0
    store = ProjectStore(project, create=False)
    job = store.list_jobs("generate")[0]
    stored = job.config
    capsys.readouterr()
    # another plan on the command line: refused in one line naming each differing setting, nothing run
    rc = main(_gen_args(task_file, out, fake_llm, "--per-class", 3, "--seed", 4, "--project", project,
                        "--job", job.id, "--cache", cache))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "per_class" in err and "seed" in err and "--job" not in err and "mixup" not in err
    assert store.get_job(job.id).config == stored
    # unabbreviated or abbreviated, `--seed=4` is the same ask
    assert main(_gen_args(task_file, out, fake_llm, "--per-class", 2, "--se=4", "--project", project,
                          "--job", job.id, "--cache", cache)) == 2
    assert "seed" in capsys.readouterr().err
    # the same plan, or the defaults of settings not given: the job keeps its stored plan (seed 3, no mixup)
    calls = fake_llm.calls
    assert main(_gen_args(task_file, out, fake_llm, "--per-class", 2, "--project", project, "--job", job.id,
                          "--cache", cache, "--concurrency", 2)) == 0
    spec = GenerationSpec.from_stored(store.get_job(job.id).config)
    assert (spec.generation.seed, spec.generation.mixup) == (3, False) and store.get_job(job.id).config == stored
    assert fake_llm.calls == calls  # the same plan: every answer replayed from the cache
    assert {r["mixed_with"] for r in read_jsonl(out)} == {None}


def test_relabel_candidate_order_follows_the_given_seed(tmp_path, small_task, fake_llm):
    """Standalone `relabel` always drew its candidate order with seed 0; `--seed S` relabels as
    `generate --relabel --seed S` does."""
    from promptmix_core.cli import main

    task_file = tmp_path / "task.json"
    save_task(small_task, task_file)
    n = len(small_task.class_names)
    gen = tmp_path / "gen.jsonl"

    def relabel_prompts(since):
        return sorted(json.dumps(b["messages"]) for b in fake_llm.requests[since:]
                      if "Classify the text" in json.dumps(b["messages"]))

    before = fake_llm.calls
    assert main(_gen_args(task_file, gen, fake_llm, "--per-class", 2, "--seed", 5, "--relabel", "--nearest", n,
                          "--cache", tmp_path / "c1.sqlite")) == 0
    in_generation = relabel_prompts(before)
    assert in_generation
    seen = {}
    for seed, cache in ((5, "c2"), (0, "c3")):
        before = fake_llm.calls
        assert main(["relabel", str(gen), "--task", str(task_file), "--out", str(tmp_path / f"r{seed}.jsonl"),
                     "--nearest", str(n), "--seed", str(seed), "--base-url", fake_llm.base_url,
                     "--model", "fake-model", "--cache", str(tmp_path / f"{cache}.sqlite")]) == 0
        seen[seed] = relabel_prompts(before)
    assert seen[5] == in_generation and seen[0] != in_generation


def test_experiment_relabels_with_the_runs_seed(tmp_path, small_task, fake_llm, monkeypatch):
    """Experiments drew every run's relabel candidate order with seed 0."""
    import promptmix_core.relabel as relabel_mod
    from promptmix_core import experiment
    from promptmix_core.llm import LLMConfig

    seeds = []
    real = relabel_mod.relabel

    def spy(task, rows, llm, config=None, **kw):
        seeds.append(config.seed)
        return real(task, rows, llm, config, **kw)

    monkeypatch.setattr(relabel_mod, "relabel", spy)
    holder = experiment._LLMHolder(None, LLMConfig(base_url=fake_llm.base_url, model="fake-model"), None, None,
                                   tmp_path / "c.sqlite")
    out = experiment._generated(small_task, 7, True, True, per_class=2, group_size=3, nearest=len(small_task.classes),
                                llm=holder, cache_dir=tmp_path / "cache", log=lambda m: None, gen_kwargs={})
    assert out["relabelled"] and seeds == [7]
