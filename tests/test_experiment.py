"""The experiment runner on a small slice, against the scripted OpenAI-compatible server."""

from __future__ import annotations

import csv
import json

import pytest

from promptmix_core.experiment import METHODS, ExperimentConfig, load_dataset, parse_methods, run_experiment

PAPER_METHODS = ["baseline", "eda", "a1", "a2", "no-mixup", "llm-direct"]
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
    kwargs = dict(data_dir=datasets_dir / "trec6", k=2, methods=PAPER_METHODS, runs=2, per_class=3, test_limit=24,
                  classes=3, out_dir=tmp_path / "res", train=train)
    summary = run_experiment(ExperimentConfig(**kwargs), llm_config=cfg)
    calls = fake_llm.calls
    assert calls > 0
    rows = {r["method"]: r for r in summary["methods"]}
    assert list(rows) == PAPER_METHODS
    for r in rows.values():
        assert r["runs"] == 2 and 0.0 <= r["accuracy_mean"] <= 1.0 and r["accuracy_std"] >= 0.0
    assert rows["baseline"]["n_train_mean"] == 6  # 3 classes x k=2
    assert rows["eda"]["n_train_mean"] > 6
    assert rows["a1"]["n_train_mean"] == 6 + 9  # + 3 generated per class
    assert rows["llm-direct"]["n_train_mean"] == 0

    res = tmp_path / "res"
    md = (res / "results.md").read_text()
    assert "PromptMix A2" in md and "± " in md and "fake-model" in md
    assert "| flagged | generation calls / kept | tokens / kept |" in md
    gens = summary["generation"]
    assert gens and all(0 <= g["flagged"] <= g["kept"] for g in gens)
    cached = json.loads(next((res / "cache").glob("seed*_mixup.json")).read_text())
    assert all("flag" in row for row in cached["examples"])  # every generated row carries its junk flag
    with open(res / "results.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [t["method"] for t in table] == PAPER_METHODS
    raw = json.loads((res / "raw" / "a2" / "run1.json").read_text())
    assert raw["metrics"]["n"] == 24 and len(raw["metrics"]["confusion"]["matrix"]) == 3
    assert len(raw["seeds"]) == 6 and raw["generation"]["relabel_summary"]["relabelled"] == 9
    # seeds differ between runs; the test rows are the same for all
    raw0 = json.loads((res / "raw" / "a2" / "run0.json").read_text())
    assert raw0["seeds"] != raw["seeds"]

    # a re-run costs no LLM calls and no training (results reused)
    again = run_experiment(ExperimentConfig(**kwargs), llm_config=cfg)
    assert fake_llm.calls == calls
    assert [r["accuracy_mean"] for r in again["methods"]] == [r["accuracy_mean"] for r in summary["methods"]]
    # retraining (no reuse) still makes no LLM calls: generation, relabels and LLM-direct are cached
    run_experiment(ExperimentConfig(**{**kwargs, "methods": ["a2", "llm-direct"], "runs": 1, "reuse": False}),
                   llm_config=cfg)
    assert fake_llm.calls == calls


def test_experiment_cli(tmp_path, datasets_dir, fake_llm):
    from promptmix_core.cli import main

    rc = main(["experiment", "--data", str(datasets_dir / "subj"), "--k", "2", "--methods", "baseline,llm-direct",
               "--runs", "1", "--test-limit", "10", "--base-url", fake_llm.base_url, "--model", "fake-model",
               "--out", str(tmp_path / "out"), "--min-steps", "2", "--epochs", "1", "--max-length", "16"])
    assert rc == 0
    assert (tmp_path / "out" / "results.md").exists()
    assert (tmp_path / "out" / "raw" / "llm-direct" / "run0.json").exists()


def test_setfit_method_end_to_end_and_progress(tmp_path, datasets_dir):
    seen = []
    config = ExperimentConfig(data_dir=datasets_dir / "trec6", k=2, methods=["baseline", "setfit"], runs=1,
                              test_limit=12, classes=3, out_dir=tmp_path / "res",
                              train={"epochs": 1, "min_steps": 2, "batch_size": 8, "max_length": 16})
    summary = run_experiment(config, progress=lambda *a: seen.append(a))
    rows = {r["method"]: r for r in summary["methods"]}
    assert set(rows) == {"baseline", "setfit"} and rows["setfit"]["n_train_mean"] == 6
    assert 0.0 <= rows["setfit"]["accuracy_mean"] <= 1.0
    raw = json.loads((tmp_path / "res" / "raw" / "setfit" / "run0.json").read_text())
    assert raw["student"] == "setfit" and raw["setfit"]["num_iterations"] == 20 and raw["metrics"]["n"] == 12
    assert seen == [(1, 2, "baseline run 1"), (2, 2, "setfit run 1")]
    assert summary["complete"] and "SetFit" in (tmp_path / "res" / "results.md").read_text()
    assert set(METHODS) >= {"setfit", "setfit+a2", "a2-targeted"}


def test_tables_are_written_after_every_cell(tmp_path, datasets_dir, monkeypatch):
    """A run killed half-way keeps the table of what it finished, and a re-run reuses those cells."""
    import promptmix_core.experiment as exp

    calls = []
    real = exp._fit

    def fit_then_die(run, ts, *, student, default=False):
        calls.append(student)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(run, ts, student=student, default=default)

    monkeypatch.setattr(exp, "_fit", fit_then_die)
    config = ExperimentConfig(data_dir=datasets_dir / "trec6", k=2, methods=["baseline", "eda"], runs=1,
                              test_limit=12, classes=3, out_dir=tmp_path / "res",
                              train={"epochs": 1, "min_steps": 2, "batch_size": 8, "max_length": 16})
    with pytest.raises(KeyboardInterrupt):
        run_experiment(config)
    partial = json.loads((tmp_path / "res" / "results.json").read_text())
    assert [r["method"] for r in partial["methods"]] == ["baseline"] and partial["complete"] is False
    monkeypatch.setattr(exp, "_fit", real)
    done = run_experiment(config)
    assert [r["method"] for r in done["methods"]] == ["baseline", "eda"] and done["complete"]


@pytest.mark.slow
def test_a2_targeted_and_setfit_a2(tmp_path, datasets_dir, fake_llm):
    cfg = LLMConfig(base_url=fake_llm.base_url, model="fake-model", concurrency=4)
    summary = run_experiment(ExperimentConfig(
        data_dir=datasets_dir / "trec6", k=2, methods=["a2", "a2-targeted", "setfit+a2"], runs=1, per_class=3,
        test_limit=24, classes=4, out_dir=tmp_path / "res", val_per_class=4,
        train={"epochs": 1, "min_steps": 4, "batch_size": 8, "max_length": 24}), llm_config=cfg)
    rows = {r["method"]: r for r in summary["methods"]}
    assert rows["setfit+a2"]["n_train_mean"] == rows["a2"]["n_train_mean"]
    raw = json.loads((tmp_path / "res" / "raw" / "a2-targeted" / "run0.json").read_text())
    targeted = raw["targeted"]
    assert targeted["val_n"] == 16
    test_texts = {r["text"] for r in load_dataset(datasets_dir / "trec6", classes=4)["test"]}
    assert targeted["pairs"], "the A2 student of a few steps confuses some pair"
    assert targeted["kept"] > 0 and rows["a2-targeted"]["n_train_mean"] > rows["a2"]["n_train_mean"]
    gen = [g for g in summary["generation"] if g["kind"] == "targeted"]
    assert gen and gen[0]["pairs"] == targeted["pairs"]
    cached = next((tmp_path / "res" / "cache").glob("seed0_targeted-*.json"))
    examples = json.loads(cached.read_text())["examples"]
    assert {(e["intended_label"], e["mixed_with"]) for e in examples} <= {tuple(p) for p in targeted["pairs"]}
    assert not test_texts & {e["text"] for e in examples}


def test_experiment_config_checks_every_setting_before_any_work(tmp_path):
    from promptmix_core.errors import SpecError

    with pytest.raises(SpecError) as info:
        ExperimentConfig(data_dir=tmp_path, k=0, runs=0, test_limit=0)
    assert len(info.value.problems) == 3
    with pytest.raises(SpecError, match="group size"):
        ExperimentConfig(data_dir=tmp_path, group_size=1)
    with pytest.raises(ValueError, match="unknown method"):
        ExperimentConfig(data_dir=tmp_path, methods="baseline,gpt")
    c = ExperimentConfig(data_dir=tmp_path, methods="a2, baseline", train={"epochs": 2})
    assert c.methods == ("a2", "baseline") and c.train.epochs == 2 and c.num_aug == 5


def test_default_method_curates_and_trains_the_picked_student(tmp_path, datasets_dir, fake_llm):
    """``default``: what generate --relabel then train with every default does: the A2 examples the
    curation keeps, on the student picked for the data (SetFit at this few-shot size)."""
    cfg = LLMConfig(base_url=fake_llm.base_url, model="fake-model", concurrency=4)
    summary = run_experiment(ExperimentConfig(
        data_dir=datasets_dir / "trec6", k=2, methods=["default"], runs=1, per_class=3, test_limit=12,
        classes=3, out_dir=tmp_path / "res"), llm_config=cfg)
    (row,) = summary["methods"]
    assert row["method"] == "default" and 0.0 <= row["accuracy_mean"] <= 1.0
    raw = json.loads((tmp_path / "res" / "raw" / "default" / "run0.json").read_text())
    assert raw["student"] == "setfit"
    kept = raw["data"]["generated"]
    curated_out = sum(raw["curated_out"].values())
    assert kept + curated_out + sum(v for k, v in raw["data"]["dropped"].items() if not k.startswith("curated_")) == 9
    assert raw["data"]["seeds"] == 6 and raw["n_train"] == 6 + kept
    # its own seeds-only control, as `promptmix train` makes it, on the same test rows
    ctl = raw["control"]
    assert 0.0 <= ctl["accuracy"] <= 1.0 and len(ctl["ci95"]) == 2 and ctl["ci95"][0] <= ctl["ci95"][1]
    assert ctl["same_as_run"] == (kept == 0)
    if kept == 0:
        assert ctl["delta"] == 0.0 and ctl["accuracy"] == raw["accuracy"]
    else:
        assert abs(ctl["delta"] - (raw["accuracy"] - ctl["accuracy"])) < 1e-9
    assert summary["default_control"][0]["run"] == 0
    md = (tmp_path / "res" / "results.md").read_text()
    assert "## The default pipeline against its own seeds-only control" in md
