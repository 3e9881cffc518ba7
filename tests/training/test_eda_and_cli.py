"""EDA with offline synonyms; ``promptmix train`` / ``promptmix predict``."""

from __future__ import annotations

import csv
import json

import pytest

from promptmix_core.eda import STOPWORDS, augment_rows, default_synonyms, eda, random_deletion, random_swap


def test_offline_synonyms_are_whole_words_and_not_variants():
    syn = default_synonyms()
    assert "hilarious" in syn.synonyms("funny")
    assert "cash" in syn.synonyms("money")
    for w in ("film", "quickly", "happy"):
        out = syn.synonyms(w)
        assert out and all(s.isalpha() and s not in STOPWORDS for s in out)
        assert not any(s.startswith(w[:4]) for s in out)  # films, quicker, happier... skipped
    assert syn.synonyms("the") == () and syn.synonyms("qzxwv") == ()


def test_eda_operations():
    import random

    rng = random.Random(0)
    words = "a b c d e".split()
    assert sorted(random_swap(words, 2, rng)) == words
    assert random_deletion(["only"], 0.9, rng) == ["only"]
    assert len(random_deletion(words, 0.99, rng)) >= 1
    s = "What films featured the funny character Popeye Doyle ?"
    out = eda(s, num_aug=8, seed=1)
    assert 1 <= len(out) <= 8 and s not in out and len(set(out)) == len(out)
    assert eda(s, num_aug=8, seed=1) == out  # seeded
    syn = default_synonyms()
    replaced = [o for o in out if len(o.split()) == len(s.split()) and sorted(o.split()) != sorted(s.split())]
    assert any(any(b in syn.synonyms(a.lower()) for a, b in zip(s.split(), o.split())) for o in replaced)
    rows = augment_rows([{"text": s, "label": "entity"}, {"text": "Who is the president ?", "label": "human"}],
                        num_aug=4, seed=3)
    assert rows and all(r["source"] == "eda" for r in rows)
    assert {r["label"] for r in rows} == {"entity", "human"}


@pytest.mark.slow
def test_cli_train_and_predict(tmp_path, tiny_rows, tiny_val, capsys):
    from promptmix_core.cli import main

    data = tmp_path / "train.csv"
    val = tmp_path / "val.csv"
    for path, rows in ((data, tiny_rows), (val, tiny_val)):
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["text", "label"])
            w.writeheader()
            w.writerows(rows)
    model = tmp_path / "model"
    rc = main(["train", "--data", str(data), "--val", str(val), "--out", str(model), "--student", "finetune", "--epochs", "3",
               "--min-steps", "0", "--max-length", "16", "--lr", "1e-4"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "validation accuracy" in out and (model / "model.safetensors").exists()
    rc = main(["predict", str(model), "the football and the goal with team", "--out", str(tmp_path / "p.jsonl")])
    assert rc == 0
    pred = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])
    assert set(pred["probabilities"]) == {"food", "sport"} and pred["label"] in ("food", "sport")
    # a folder with only pickled weights: a clear error, exit 2
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "pytorch_model.bin").write_bytes(b"x")
    assert main(["predict", str(bad), "hello"]) == 2
    assert "pickled" in capsys.readouterr().err
