"""The experiment runner on a small slice, against the scripted OpenAI-compatible server."""

from __future__ import annotations

import csv
import json

import pytest

from promptmix_core.experiment import METHODS, load_dataset, parse_methods, run_experiment
from promptmix_core.llm import LLMConfig


def test_parse_methods_and_dataset_slice(datasets_dir):
    assert parse_methods("baseline, EDA,a2,no_mixup") == ["baseline", "eda", "a2", "no-mixup"]
    with pytest.raises(ValueError, match="unknown method"):
        parse_methods("baseline,gpt")
    d = load_dataset(datasets_dir / "banking77", classes=10)
    labels = {r["label"] for r in d["train"]}
    assert len(labels) == 10 and {r["label"] for r in d["test"]} == labels and len(d["descriptions"]) == 10


@pytest.mark.slow
def test_experiment_all_methods_and_cached_rerun(tmp_path, datasets_dir, fake_llm):
    cfg = LLMConfig(base_url=fake_llm.base_url, model="fake-model", concurrency=4)
    train = {"epochs": 1, "min_steps": 8, "batch_size": 8, "max_length": 24}
    kwargs = dict(k=2, methods=list(METHODS), runs=2, per_class=3, test_limit=24, classes=3,
                  out_dir=tmp_path / "res", llm_config=cfg, train_config=train)
    summary = run_experiment(datasets_dir / "trec6", **kwargs)
    calls = fake_llm.calls
    assert calls > 0
    rows = {r["method"]: r for r in summary["methods"]}
    assert list(rows) == list(METHODS)
    for r in rows.values():
        assert r["runs"] == 2 and 0.0 <= r["accuracy_mean"] <= 1.0 and r["accuracy_std"] >= 0.0
    assert rows["baseline"]["n_train_mean"] == 6  # 3 classes x k=2
    assert rows["eda"]["n_train_mean"] > 6
    assert rows["a1"]["n_train_mean"] == 6 + 9  # + 3 generated per class
    assert rows["llm-direct"]["n_train_mean"] == 0

    res = tmp_path / "res"
    md = (res / "results.md").read_text()
    assert "PromptMix A2" in md and "± " in md and "fake-model" in md
    with open(res / "results.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [t["method"] for t in table] == list(METHODS)
    raw = json.loads((res / "raw" / "a2" / "run1.json").read_text())
    assert raw["metrics"]["n"] == 24 and len(raw["metrics"]["confusion"]["matrix"]) == 3
    assert len(raw["seeds"]) == 6 and raw["generation"]["relabel_summary"]["relabelled"] == 9
    # seeds differ between runs; the test rows are the same for all
    raw0 = json.loads((res / "raw" / "a2" / "run0.json").read_text())
    assert raw0["seeds"] != raw["seeds"]

    # a re-run costs no LLM calls and no training (results reused)
    again = run_experiment(datasets_dir / "trec6", **kwargs)
    assert fake_llm.calls == calls
    assert [r["accuracy_mean"] for r in again["methods"]] == [r["accuracy_mean"] for r in summary["methods"]]
    # retraining (no reuse) still makes no LLM calls: generation, relabels and LLM-direct are cached
    run_experiment(datasets_dir / "trec6", **{**kwargs, "methods": ["a2", "llm-direct"], "runs": 1}, reuse=False)
    assert fake_llm.calls == calls


def test_experiment_cli(tmp_path, datasets_dir, fake_llm):
    from promptmix_core.cli import main

    rc = main(["experiment", "--data", str(datasets_dir / "subj"), "--k", "2", "--methods", "baseline,llm-direct",
               "--runs", "1", "--test-limit", "10", "--base-url", fake_llm.base_url, "--model", "fake-model",
               "--out", str(tmp_path / "out"), "--min-steps", "2", "--epochs", "1", "--max-length", "16"])
    assert rc == 0
    assert (tmp_path / "out" / "results.md").exists()
    assert (tmp_path / "out" / "raw" / "llm-direct" / "run0.json").exists()
