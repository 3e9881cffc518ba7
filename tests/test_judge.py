"""The no-LLM judge (closest class by embedding, or the quick student), the choice of which judge
labels, and what `promptmix relabel` / `generate --relabel` write."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptmix_core.judge import (
    EmbeddingJudge, LabelSource, choose_label_source, chosen_label, class_texts, is_bundled_model, label_rows,
    loo_seed_items,
)
from promptmix_core.llm import LLMClient, LLMConfig
from promptmix_core.task import ClassSpec, Task, save_task

ROOT = Path(__file__).resolve().parent.parent

CLEAR = {
    "I think somebody took my card from my bag": "card_lost",
    "it has been two weeks and the new card is still not in my letterbox": "card_arrival",
    "how many dollars do I get for one pound": "exchange_rate",
    "the money I tried to add to my account did not arrive, the top up failed": "top_up_failed",
    "please send the money for the broken kettle back to me": "refund_request",
    "typed the wrong code three times and now my PIN is locked": "pin_blocked",
}


@pytest.mark.parametrize("method", ["centroid", "logreg"])
def test_judge_names_the_right_class_with_a_confidence(small_task, method):
    judge = EmbeddingJudge(small_task, method=method)
    got = judge.judge(list(CLEAR))
    assert [j.label for j in got] == list(CLEAR.values())
    assert all(0.0 < j.confidence <= 1.0 for j in got)
    # every text gets a class, even one about nothing the task knows; probabilities sum to 1
    proba = judge.probabilities(["the weather is nice", "zzzz"])
    assert proba.shape == (2, 6) and abs(float(proba.sum(axis=1)[0]) - 1.0) < 1e-4
    assert all(j.label in small_task.class_names for j in judge.judge(["the weather is nice"]))


def test_confidence_is_lower_for_a_text_between_two_classes(small_task):
    judge = EmbeddingJudge(small_task)
    clear = judge.judge(["my card was stolen, I lost it"])[0]
    vague = judge.judge(["hello, I have a question about my account"])[0]
    assert clear.confidence > vague.confidence


def test_temperature_fitted_on_held_out_seeds(small_task):
    judge = EmbeddingJudge(small_task)
    # 6 classes x 2 seeds: every seed is held out once
    assert judge.loo_truth.shape == (12,) and judge.loo_sims.shape == (12, 6)
    assert 0.005 <= judge.temperature <= 1.0
    acc = judge.seed_accuracy()
    assert acc is not None and 0.5 <= acc <= 1.0
    # one seed a class: held out, the class is still its name and description
    one = Task(name="t", classes=[ClassSpec(c.name, c.description, c.examples[:1]) for c in small_task.classes])
    assert EmbeddingJudge(one).loo_truth.shape == (6,)
    # no seeds: nothing to hold out, no accuracy, a default temperature
    none = Task(name="t", classes=[ClassSpec(c.name, c.description, []) for c in small_task.classes])
    j0 = EmbeddingJudge(none)
    assert j0.seed_accuracy() is None and j0.temperature == 0.05
    assert [j.label for j in j0.judge(["somebody stole my card"])] == ["card_lost"]


def test_class_texts_skip_a_description_that_repeats_the_name():
    assert class_texts(ClassSpec("card_arrival", "card arrival", ["a"])) == [("card arrival", False), ("a", True)]
    assert class_texts(ClassSpec("card_arrival", "waiting for a card", ["a"])) == [
        ("card arrival", False), ("waiting for a card", False), ("a", True)]


def test_loo_seed_items_leave_the_seed_out(small_task):
    items = loo_seed_items(small_task, max_seeds=8)
    assert len(items) == 8
    # one seed of every class first, then the second seeds
    assert [truth for _t, _x, truth in items[:6]] == small_task.class_names
    for sub, text, truth in items:
        assert text not in sub.get(truth).examples and len(sub.get(truth).examples) == 1
        assert all(sub.get(c).examples == small_task.get(c).examples for c in small_task.class_names if c != truth)


def test_chosen_label_falls_back():
    assert chosen_label("judge", "a", "b", "c") == ("a", "judge")
    assert chosen_label("llm", "a", "b", "c") == ("b", "llm")
    assert chosen_label("llm", "a", None, "c") == ("a", "judge")  # the relabel named no class
    assert chosen_label("judge", None, None, "c") == ("c", "intended")
    rows = [{"text": "x", "llm_label": "b", "intended_label": "c"}]
    from promptmix_core.judge import Judgement

    label_rows(rows, [Judgement("a", 0.7)], LabelSource("judge", "r"))
    assert rows[0] == {"text": "x", "llm_label": "b", "intended_label": "c", "judge_label": "a",
                       "judge_confidence": 0.7, "label": "a", "label_source": "judge"}


def test_bundled_model_means_the_judge_labels(small_task, tmp_path):
    bundled = LLMConfig(base_url="http://127.0.0.1:9/v1", model="SmolLM2-135M-Instruct", api_key="local", local=True)
    assert is_bundled_model(bundled)
    assert not is_bundled_model(LLMConfig(base_url="http://127.0.0.1:9/v1", model="fake-model", local=True))
    llm = LLMClient(bundled, cache_path=tmp_path / "c.sqlite")
    choice = choose_label_source(small_task, llm)  # no call: port 9 answers nothing
    assert choice.source == "judge" and "bundled" in choice.reason and llm.stats.calls == 0
    assert choose_label_source(small_task, llm, policy="llm").source == "llm"
    assert LabelSource.from_dict(json.loads(choice.to_json())) == choice


def _oracle(task):
    """A classifier that knows every seed's class (a capable LLM on the seeds)."""
    owner = {ex: c.name for c in task.classes for ex in c.examples}

    def classify(text, cats):
        return owner.get(text, cats[0])

    return classify


def test_capable_endpoint_labels_weak_one_does_not(make_fake_llm, small_task, tmp_path):
    good = make_fake_llm(classify=_oracle(small_task), model="good-model")
    llm = LLMClient(LLMConfig(base_url=good.base_url, model="good-model"), cache_path=tmp_path / "a.sqlite")
    choice = choose_label_source(small_task, llm)
    assert choice.source == "llm" and choice.llm_seed_accuracy == 1.0 and choice.seeds_checked == 12
    assert "good-model labels" in choice.reason and "12 held-out seeds" in choice.reason
    assert good.calls == 12
    # the seed being classified is never among the examples in its prompt
    for req in good.requests:
        prompt = req["messages"][-1]["content"]
        text = prompt.split("Text: ", 1)[1].split("\n", 1)[0]
        assert f"- {text}\n" not in prompt
    weak = make_fake_llm(classify=lambda text, cats: sorted(cats)[-1], model="weak-model")  # always the same answer
    llm = LLMClient(LLMConfig(base_url=weak.base_url, model="weak-model"), cache_path=tmp_path / "b.sqlite")
    choice = choose_label_source(small_task, llm)
    assert choice.source == "judge" and choice.llm_seed_accuracy < choice.judge_seed_accuracy
    assert "weak-model" in choice.reason


# --------------------------------------------------------------------------- the CLI
def run_cli(*args, env_extra=None, timeout=240):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "promptmix_core.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


def read_jsonl(p):
    return [json.loads(line) for line in Path(p).read_text().splitlines() if line.strip()]


def test_relabel_cli_writes_both_judges(make_fake_llm, tmp_path, small_task):
    task_file = tmp_path / "task.json"
    save_task(small_task, task_file)
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"text": t}) + "\n" for t in CLEAR))
    weak = make_fake_llm(classify=lambda text, cats: sorted(cats)[0], model="weak")
    out = tmp_path / "out.jsonl"
    r = run_cli("relabel", inp, "--task", task_file, "--out", out, "--base-url", weak.base_url, "--model", "weak")
    assert r.returncode == 0, r.stderr
    assert "label source: judge" in r.stderr and "held-out seeds" in r.stderr
    rows = read_jsonl(out)
    assert [row["judge_label"] for row in rows] == list(CLEAR.values())
    for row in rows:
        assert {"llm_label", "llm_confidence", "relabel_status", "judge_label", "judge_confidence",
                "label_source"} <= set(row)
        assert row["label"] == row["judge_label"] and row["label_source"] == "judge"
        assert 0 < row["judge_confidence"] <= 1
    # asked for the LLM: label is the relabel's, the judge's stays beside it
    out2 = tmp_path / "out2.jsonl"
    r = run_cli("relabel", inp, "--task", task_file, "--out", out2, "--base-url", weak.base_url, "--model", "weak",
                "--label-source", "llm")
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(out2)
    assert all(row["label"] == row["llm_label"] and row["label_source"] == "llm" for row in rows)
    assert [row["judge_label"] for row in rows] == list(CLEAR.values())


def test_generate_relabel_cli_writes_both_judges(make_fake_llm, tmp_path, small_task):
    task_file = tmp_path / "task.json"
    save_task(small_task, task_file)
    fake = make_fake_llm(classify=_oracle(small_task))  # capable on the seeds: the LLM labels
    out = tmp_path / "gen.jsonl"
    r = run_cli("generate", task_file, "--out", out, "--per-class", 2, "--relabel", "--base-url", fake.base_url,
                "--model", "fake-model", "--cache", tmp_path / "c.sqlite")
    assert r.returncode == 0, r.stderr
    assert "label source: llm" in r.stderr
    rows = read_jsonl(out)
    assert len(rows) == 12
    for row in rows:
        assert row["judge_label"] in small_task.class_names and row["label_source"] == "llm"
        assert row["label"] == row["llm_label"] and "flag" in row


# --------------------------------------------------------------------------- a project
def test_project_job_saves_both_judges_and_accept_saves_the_chosen_one(make_fake_llm, tmp_path, small_task):
    from promptmix_core import review
    from promptmix_core.cli import main
    from promptmix_core.judge import LABEL_SOURCE_META
    from promptmix_core.store import ProjectStore

    task_file = tmp_path / "task.json"
    save_task(small_task, task_file)
    weak = make_fake_llm(classify=lambda text, cats: sorted(cats)[0], model="weak")
    project = tmp_path / "p.pmx"
    rc = main(["generate", str(task_file), "--out", str(tmp_path / "g.jsonl"), "--per-class", "4", "--relabel",
               "--project", str(project), "--base-url", weak.base_url, "--model", "weak", "--cache",
               str(tmp_path / "c.sqlite")])
    assert rc == 0
    store = ProjectStore(project, create=False)
    examples = store.list_examples()
    assert len(examples) == 24
    choice = json.loads(store.get_meta(LABEL_SOURCE_META))
    assert choice["source"] == "judge" and "held-out seeds" in choice["reason"]
    job = store.get_job(examples[0].job_id)
    assert "label source: judge" in (job.message or "") + json.dumps(getattr(job, "result", None) or "")
    for e in examples:
        assert e.judge_label in small_task.class_names and 0 < e.judge_confidence <= 1
        assert e.label == e.judge_label  # pending: the chosen judge's label
    rows = read_jsonl(tmp_path / "g.jsonl")
    assert all(r["label"] == r["judge_label"] and r["label_source"] == "judge" for r in rows)
    # the informative order puts the disagreements first and says why
    page = review.queue_page(store, "informative")["items"]
    differ = [c for c in page if c["judge_label"] != c["llm_label"]]
    assert differ, "the weak LLM should disagree with the judge somewhere"
    assert page[0]["judge_label"] != page[0]["llm_label"]
    assert page[0]["reasons"][0]["code"] == "judges_differ" and page[0]["judges_agree"] is False
    # Accept saves the chosen judge's class, and the card says so
    card = differ[0]
    assert card["accept_label"] == card["judge_label"] and card["accept_source"].startswith("embedding judge")
    res = review.apply_ops(store, [{"cid": "c1", "id": card["id"], "action": "accepted", "base": card["version"]}],
                           small_task.class_names, tab="t1")
    assert res["c1"]["ok"]
    saved = next(e for e in store.list_examples() if e.id == card["id"])
    assert saved.final_label == card["judge_label"] != card["llm_label"]


# --------------------------------------------------------------------------- the embedder without torch
def test_numpy_embedder_matches_the_torch_model():
    import numpy as np

    from promptmix_core.embed import _embed_batches, _load, _load_torch, minilm_path
    from promptmix_core.embed_numpy import NumpyBert

    texts = ["I lost my card", "x", "When will my new card arrive? " * 30, "Ünïcode café naïve, 42 €!"]
    enc = _load(minilm_path())
    assert isinstance(enc, NumpyBert)
    got = np.concatenate([enc.embed(texts[:2]), enc.embed(texts[2:])])
    want = np.zeros_like(got)
    _embed_batches(*_load_torch(minilm_path()), texts, list(range(len(texts))), want, 64, 128, None)
    assert np.abs(got - want).max() < 1e-4
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_embedding_and_judging_never_import_torch(small_task):
    code = ("import sys; from promptmix_core.judge import EmbeddingJudge; "
            "from promptmix_core.flags import flag_texts; "
            f"t = __import__('promptmix_core.task', fromlist=['x']).Task.from_dict({small_task.to_dict()!r}); "
            "print(EmbeddingJudge(t).judge(['I lost my card'])[0].label, flag_texts(t, ['my card is gone']), "
            "'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=240)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["card_lost", "['']", "False"]


def test_the_warmer_embeds_in_the_background_and_embed_texts_then_hits_the_cache(monkeypatch):
    import numpy as np

    from promptmix_core import embed

    texts = [f"warm text number {i} about a lost card" for i in range(5)]
    w = embed.Warmer()
    w.add(texts[:3])
    w.add_examples([type("E", (), {"text": t})() for t in texts[3:]] + [type("E", (), {"text": "  "})()])
    w.close(timeout=120)
    assert w.embedded == 5  # the blank text is not embedded
    calls = []
    real = embed._embed_numpy
    monkeypatch.setattr(embed, "_embed_numpy", lambda enc, t, order, *a: (calls.append(list(order)), real(enc, t, order, *a)))
    got = embed.embed_texts(texts + ["a text nobody warmed"])
    assert calls == [[5]]  # only the one text the warmer was not given
    direct = embed.embed_texts(texts)
    assert np.allclose(got[:5], direct) and np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
