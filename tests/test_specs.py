"""Typed job specs: round trips, unknown keys refused, every problem listed, old rows migrated."""

from __future__ import annotations

import pytest

from promptmix_core.cli import build_parser
from promptmix_core.errors import SpecError
from promptmix_core.generate import GenerationConfig
from promptmix_core.specs import GenerationSpec, LLMSpec, RelabelSpec, TrainingSpec, spec_for_job
from promptmix_core.relabel import RelabelConfig
from promptmix_core.training.config import EmbedLRConfig, TrainConfig


@pytest.mark.parametrize("spec", [
    GenerationSpec(),
    GenerationSpec(generation=GenerationConfig(per_class=7, mixup=False, seed=3, max_calls_per_class=40),
                   relabel=False, flag_junk=False,
                   llm=LLMSpec(base_url="http://127.0.0.1:9/v1", model="m", concurrency=3)),
    RelabelSpec(source_job=4, relabel=RelabelConfig(nearest=3, seed=2)),
    TrainingSpec(student="embed-lr", embed_lr=EmbedLRConfig(C=1.0, class_weight=None)),
    TrainingSpec(),
    TrainingSpec(label_source="reviewed", pending="a2", val_path="/tmp/v.csv", name="x",
                 train=TrainConfig(epochs=2, learning_rate=5e-5, max_steps=9)),
])
def test_round_trip(spec):
    data = spec.to_dict()
    assert type(spec).from_dict(data) == spec
    assert spec_for_job(spec.KIND, data) == spec


@pytest.mark.parametrize("cls, data, bad", [
    (GenerationSpec, {"per_class": 3, "per_klass": 4}, "per_klass"),
    (GenerationSpec, {"llm": {"base_url": "http://x/v1", "api_key": "sk-x"}}, "api_key"),
    (RelabelSpec, {"nearest": 3, "source": 1}, "source"),
    (TrainingSpec, {"label_source": "a1", "lr": 1e-5}, "lr"),
    (TrainingSpec, {"train": {"epochs": 2, "lr": 1e-5}}, "lr"),
])
def test_unknown_keys_are_refused(cls, data, bad):
    with pytest.raises(SpecError, match=bad):
        cls.from_dict(data)


def test_validation_lists_every_problem_at_once():
    with pytest.raises(SpecError) as info:
        GenerationSpec.from_dict({"per_class": 0, "group_size": 1, "temperature": 3, "examples_per_call": 99,
                                  "nearest": 1, "bogus": True, "llm": {"concurrency": 0, "base_url": "ftp://x"}})
    problems = info.value.problems
    for words in ("examples per class", "group size", "temperature", "examples per call", "nearest",
                  "bogus", "concurrency", "http://"):
        assert any(words in p for p in problems), (words, problems)
    assert len(problems) == 8
    with pytest.raises(SpecError) as info:
        TrainingSpec.from_dict({"label_source": "zz", "val_fraction": 2, "pending": "keep",
                                "train": {"epochs": 0, "batch_size": 0, "wat": 1}})
    problems = info.value.problems
    for words in ("label_source", "val_fraction", "pending", "epochs", "batch_size", "wat"):
        assert any(words in p for p in problems), (words, problems)
    assert GenerationSpec().validate() == [] and TrainingSpec().validate() == []


def test_defaults_live_in_one_place():
    """The spec holds the step configs (no copy of their fields), and the CLI's flags default to them."""
    g = GenerationSpec()
    assert g.generation == GenerationConfig() and g.nearest == RelabelConfig().nearest
    assert GenerationSpec().relabel_config() == RelabelConfig()
    args = build_parser().parse_args(["generate", "t.json", "--out", "o.jsonl", "--per-class",
                                      str(g.generation.per_class)])
    assert GenerationSpec.from_cli_args(args) == dataclass_replace(g, relabel=False)
    assert TrainingSpec().embed_lr == EmbedLRConfig() and TrainingSpec().train == TrainConfig()


def dataclass_replace(spec, **kw):
    import dataclasses

    return dataclasses.replace(spec, **kw)


def test_spec_feeds_every_setting_to_the_step():
    """The drift bug: pipeline.py dropped max_tokens and max_example_chars. The spec hands every
    generation field to GenerationConfig."""
    spec = GenerationSpec.from_dict({"per_class": 3, "max_tokens": 123, "max_example_chars": 77, "temperature": 0.3,
                                     "max_calls_per_class": 9, "top_p": 0.8})
    cfg = spec.generation
    assert (cfg.max_tokens, cfg.max_example_chars, cfg.temperature, cfg.max_calls_per_class, cfg.top_p) == (
        123, 77, 0.3, 9, 0.8)
    with pytest.raises(SpecError, match="top_p must be above 0"):
        GenerationSpec.from_dict({"top_p": 1.5})
    import dataclasses

    # every GenerationConfig field is a stored key of the spec (flat), and none is copied into the spec
    assert {f.name for f in dataclasses.fields(GenerationConfig)} <= set(GenerationSpec().to_dict())
    assert not {f.name for f in dataclasses.fields(GenerationConfig)} & {f.name for f in dataclasses.fields(GenerationSpec)}


def test_old_flat_job_rows_are_migrated_on_read():
    # what the app stored before (flat, endpoint keys at the top)
    app_row = {"per_class": 3, "group_size": 4, "mixup": True, "seed": 0, "base_url": "http://h/v1", "model": "m",
               "concurrency": 4, "relabel": True, "nearest": 5}
    spec = GenerationSpec.from_stored(app_row)
    assert spec.generation.per_class == 3 and spec.llm == LLMSpec(base_url="http://h/v1", model="m", concurrency=4)
    # what `promptmix generate --project` stored before: every CLI option
    cli_row = {"task": "t.json", "out": "o.jsonl", "per_class": 4, "group_size": 3, "no_mixup": True, "seed": 7,
               "examples_per_call": 5, "max_calls": 30, "k": None, "task_seed": 0, "relabel": False, "nearest": 5,
               "project": "p.pmx", "job": None, "base_url": "http://h/v1", "model": "m", "concurrency": 8,
               "timeout": 60.0, "retries": 2, "cache": None}
    spec = GenerationSpec.from_stored(cli_row)
    assert (spec.generation.per_class, spec.generation.mixup, spec.generation.max_calls_per_class, spec.relabel) == (
        4, False, 30, False)
    assert spec.flag_junk is True  # rows written before the setting existed were flagged
    assert GenerationSpec.from_stored({**cli_row, "no_flags": True}).flag_junk is False
    assert spec.llm.max_retries == 2
    # the demo project's pre-written job
    assert GenerationSpec.from_stored({"demo": True, "per_class": 4, "mixup": True, "relabel": True,
                                       "model": "demo"}).demo is True
    # an old relabel row
    old = RelabelSpec.from_stored({"source_job": 2, "nearest": 3, "model": "m", "seed": 5, "per_class": 4})
    assert old.llm.model == "m" and old.relabel == RelabelConfig(nearest=3)  # a copied generation seed is not kept
    # but a new-shape row with a stray key is refused
    with pytest.raises(SpecError):
        GenerationSpec.from_stored({"per_class": 3, "llm": {}, "stray": 1})


def test_training_spec_keeps_train_configs_learning_rate_rule():
    spec = TrainingSpec.from_dict({"train": {"epochs": 2}})
    assert spec.train.learning_rate is None
    assert spec.train.resolved(60).learning_rate == 6e-5 and spec.train.resolved(6).learning_rate == 4e-5


def test_experiment_builds_the_same_spec():
    from promptmix_core.experiment import generation_spec

    spec = generation_spec(per_class=5, group_size=3, mixup=False, seed=2, nearest=4,
                           options={"max_calls_per_class": 20})
    assert spec == GenerationSpec(generation=GenerationConfig(per_class=5, group_size=3, mixup=False, seed=2,
                                                              max_calls_per_class=20), nearest=4)
    with pytest.raises(SpecError, match="max_call"):
        generation_spec(per_class=5, group_size=3, mixup=False, seed=2, nearest=4, options={"max_call": 3})


def test_cli_usage_error_lists_spec_problems(capsys, tmp_path, small_task):
    from promptmix_core import cli
    from promptmix_core.task import save_task

    save_task(small_task, tmp_path / "t.json")
    code = cli.main(["generate", str(tmp_path / "t.json"), "--out", str(tmp_path / "o.jsonl"), "--per-class", "0",
                     "--group-size", "1", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"])
    err = capsys.readouterr().err
    assert code == 2 and "examples per class" in err and "group size" in err


def test_one_validation_per_rule():
    """A rule lives in its step config; the spec reports it in the config's words, once."""
    with pytest.raises(SpecError) as from_spec:
        GenerationSpec.from_dict({"group_size": 1})
    with pytest.raises(SpecError) as from_config:
        GenerationConfig(group_size=1)
    assert from_spec.value.problems == from_config.value.problems == ["the group size must be at least 2 (got 1)"]
    with pytest.raises(SpecError) as info:
        RelabelSpec.from_dict({"nearest": 1, "seed": -1})
    assert info.value.problems == ["the number of nearest classes shown must be at least 2 (got 1)",
                                   "the relabel seed must be at least 0 (got -1)"]
    with pytest.raises(SpecError) as info:
        TrainingSpec.from_dict({"embed_lr": {"C": -1, "max_iter": 0, "typo": 1}})
    assert len(info.value.problems) == 3 and "typo" in info.value.problems[0]
    with pytest.raises(SpecError, match="C must be a positive number"):
        EmbedLRConfig(C=0)


def test_training_spec_keeps_a_typed_quick_student_and_reads_old_rows():
    spec = TrainingSpec.from_stored({"student": "embed-lr", "embed_lr": {}})  # what earlier versions stored
    assert spec.embed_lr == EmbedLRConfig()
    spec = TrainingSpec.from_dict({"student": "embed-lr", "embed_lr": {"C": 2.5}})
    assert isinstance(spec.embed_lr, EmbedLRConfig) and spec.embed_lr.C == 2.5
    assert spec.to_dict()["embed_lr"] == EmbedLRConfig(C=2.5).to_dict()


def test_cli_defaults_and_choices_come_from_the_configs():
    from promptmix_core.experiment import ExperimentConfig
    from promptmix_core.training.data import LABEL_SOURCES, PENDING_RULES

    p = build_parser()
    train = p.parse_args(["train", "--data", "x.csv"])
    t = TrainConfig()
    assert (train.epochs, train.batch_size, train.max_length, train.min_steps, train.train_seed, train.device) == (
        t.epochs, t.batch_size, t.max_length, t.min_steps, t.seed, t.device)
    assert (train.label_source, train.pending, train.student) == (TrainingSpec.label_source, TrainingSpec.pending,
                                                                  TrainingSpec.student)
    sub = {a.dest: a for a in p._subparsers._group_actions[0].choices["train"]._actions}
    assert tuple(sub["label_source"].choices) == LABEL_SOURCES and tuple(sub["pending"].choices) == PENDING_RULES
    exp = p.parse_args(["experiment", "--data", "d", "--out", "o"])
    e = ExperimentConfig()
    assert (exp.k, exp.runs, exp.per_class, exp.group_size, exp.nearest, exp.seed, exp.val_per_class) == (
        e.k, e.runs, e.per_class, e.group_size, e.nearest, e.base_seed, e.val_per_class)
    rel = p.parse_args(["relabel", "in.jsonl", "--task", "t.json", "--out", "o.jsonl"])
    assert (rel.nearest, rel.seed) == (RelabelConfig.nearest, RelabelConfig.seed)
